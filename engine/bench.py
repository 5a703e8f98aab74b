"""``segrt bench``: latency of the engine per stage and end to end, beside the bare network and PyTorch eager.

``MODEL`` is any file ``engine.Predictor`` opens: ``.onnx`` (ONNX Runtime, on the CPU or its CUDA provider),
``.plan``/``.engine`` (TensorRT), ``.pt``/``.pth``/``.pt2`` (the torch backend, with ``precision``, ``compile``
and ``cuda_graphs``), opened with the same options as ``segrt predict``. Rows, all on the same HxW image and at
the same network size (HxW rounded up to the model's ``size_divisor``, as the Predictor runs it), measured
interleaved in one process:

* ``segrt (<backend>[, options])``: ``Predictor.run`` split into pre (native resize+normalize+layout), infer, post
  (native fused upsample+argmax), and end to end; e.g. ``segrt (onnxruntime)`` (ONNX Runtime on the CPU) or
  ``segrt (torch, fp16, cuda graphs)``;
* ``bare <backend>[ (options)]``: the backend alone (``backend.infer``) on a ready input tensor (what the runtime
  costs without our code), e.g. ``bare onnxruntime``, ``bare torch (fp16, cuda graphs)``;
* ``segrt (<backend>, ..., FILE)`` and ``bare <backend> (..., FILE)`` for every other model given with ``--also``
  (e.g. the int8 model of ``segrt quantize``), opened with the same options, so that variants of one model are
  compared in the same run;
* ``torch eager`` (with ``--torch CKPT``, or ``rows`` with ``torch`` when MODEL is a segrt checkpoint): the same
  work in PyTorch fp32 on the engine's device: resize+normalize in torch, forward, ``F.interpolate`` + argmax.
  torch is imported only for this row and the torch backend.

Without ``threads`` every row gets ``os.cpu_count()`` intra-op threads (ONNX Runtime's session, and
``torch.set_num_threads`` for torch); the count each row ran with is recorded in ``configs``.
Writes ``<name>.json``, ``<name>.md`` and ``<name>.png`` (matplotlib, Agg) under the output folder.
"""

from __future__ import annotations

import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine.bench_report import (  # noqa: F401  (re-exported: the report's face of this module)
    BARE,
    MAIN,
    STAGES,
    TORCH,
    TORCH_TARGET,
    agreement,
    also_rows,
    describe,
    engine_rows,
    markdown,
    plot,
    ratios,
    row_tags,
    write_report,
)
from engine.bench_torch import eager_device, is_checkpoint_file, load_eager, torch_step, torch_threads, torch_versions
from engine.metadata import round_up
from engine.pipeline import summarize
from engine.predictor import Predictor

PRECISIONS = ("fp32", "fp16", "bf16")
ROWS = ("segrt", "torch")  # the engine rows (MODEL and --also, each with its bare network), torch eager
ROW_ALIASES = {"engine": "segrt", "eager": "torch", "onnxruntime": "segrt"}  # onnxruntime: the old --backends name


def also_labels(model: str | Path, also: list[str | Path] | tuple[str | Path, ...]) -> list[str]:
    """Row labels of the ``--also`` models: their file names, with the parent folder where two names clash;
    ValueError for a model given twice (or equal to the main one)."""
    paths = [Path(model), *(Path(a) for a in also)]
    resolved = [p.resolve() for p in paths]
    for i, r in enumerate(resolved):
        if r in resolved[:i]:
            raise ValueError(f"--also: {paths[i]} is given twice (the main model is {paths[0]})")
    labels = [p.name for p in paths]
    labels = [str(Path(p.parent.name) / p.name) if labels.count(n) > 1 else n for p, n in zip(paths, labels)]
    if len(set(labels)) != len(labels):
        labels = [str(p) for p in paths]
    return labels[1:]


def parse_shape(text: str) -> tuple[int, int]:
    """``"512x1024"`` -> ``(512, 1024)``; ValueError otherwise."""
    try:
        h, w = (int(v) for v in text.lower().replace("*", "x").split("x"))
    except ValueError:
        raise ValueError(f"shape must look like HxW (e.g. 512x1024), got {text!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"shape must be positive, got {text!r}")
    return h, w


def parse_rows(rows: str | tuple[str, ...] | list[str]) -> tuple[set[str], bool]:
    """``"segrt,torch"`` (or a sequence) -> ({"segrt", "torch"}, whether the old name ``onnxruntime`` was used,
    which asks for MODEL through ONNX Runtime); ValueError naming an unknown row."""
    items = rows.split(",") if isinstance(rows, str) else list(rows)
    out: set[str] = set()
    old = False
    for item in (str(i).strip().lower() for i in items):
        if not item:
            continue
        old = old or item == "onnxruntime"
        name = ROW_ALIASES.get(item, item)
        if name not in ROWS:
            raise ValueError(f"unknown bench row {item!r} (known: segrt, torch; 'onnxruntime' is the old name of "
                             f"segrt for ONNX models)")
        out.add(name)
    if not out:
        raise ValueError(f"no bench rows asked for (got {rows!r}; known: segrt, torch)")
    return out, old


def predictor_options(backend: str = "auto", device: str = "auto", threads: int | None = None,
                      precision: str | None = "fp32", compile: bool = False, cuda_graphs: bool = False) -> dict:
    """``engine.Predictor`` keywords as ``segrt predict`` passes them: the torch-only options (``precision`` other
    than fp32, ``compile``, ``cuda_graphs``) only when asked for, so that other model files reject them clearly."""
    if precision not in (None, *PRECISIONS):
        raise ValueError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    kw: dict[str, Any] = {"backend": backend, "device": device, "threads": threads}
    if precision not in (None, "fp32"):
        kw["precision"] = precision
    if compile:
        kw["compile"] = True
    if cuda_graphs:
        kw["cuda_graphs"] = True
    return kw


def engine_config(p: Predictor, network_shape: tuple[int, int]) -> dict[str, Any]:
    """What a Predictor runs with, as recorded per row: model, backend, device, precision (the torch backend's
    autocast; None for .onnx/.plan files, whose precision is fixed in the file), compile, cuda_graphs, threads
    (the intra-op count the runtime uses; None for TensorRT) and the network size."""
    be = p.backend
    name = str(getattr(be, "name", type(be).__name__))
    precision, threads = None, None
    if name == "onnxruntime":
        device = str(be.device)
        threads = int(be.session.get_session_options().intra_op_num_threads)
    elif name == "torch":
        device, precision, threads = str(be.device), be.precision or "fp32", torch_threads()
    elif name == "tensorrt":
        device = f"cuda:{be.device_index}"
    else:
        device = str(getattr(be, "device", "cpu"))
    return {"model": str(p.path), "backend": name, "device": device, "precision": precision,
            "compile": bool(getattr(be, "compiled", False)), "cuda_graphs": bool(getattr(be, "cuda_graphs", False)),
            "threads": threads, "network_shape": list(network_shape)}


def bench_image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A deterministic street-like test image (smooth gradients + noise), HxWx3 uint8."""
    h, w = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w * 200, yy / h * 200, (xx + yy) / (h + w) * 255], axis=2)
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


Step = Callable[[], dict[str, float]]


SETTLE_S = 0.1  # pause before each step of an interleaved run (see measure)


def measure(steps: dict[str, Step], runs: int, warmup: int,
            settle_s: float = SETTLE_S) -> dict[str, dict[str, dict[str, float]]]:
    """Warm every configuration up, then run them interleaved (run 1 of each, run 2 of each, ...), so that load
    from other processes hits all of them alike; ``{config: {stage: summary}}``.

    With several configurations each step starts ``settle_s`` after the previous one ended: ONNX Runtime's
    intra-op threads keep spin-waiting for tens of milliseconds after a run, and a configuration run right after
    another one would pay for them (a 170 ms fp32 run took 195 ms right after the int8 model's, 171 ms 50 ms later).
    """
    pause = settle_s if len(steps) > 1 else 0.0
    for step in steps.values():
        for _ in range(warmup):
            step()
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in steps}
    for _ in range(runs):
        for name, step in steps.items():
            if pause:
                time.sleep(pause)
            for k, v in step().items():
                samples[name].setdefault(k, []).append(v)
    return {name: {k: summarize(v) for k, v in st.items()} for name, st in samples.items()}


def bench_predictor(p: Predictor, img: np.ndarray, runs: int, warmup: int) -> tuple[dict, np.ndarray]:
    """Per-stage and end-to-end latency of ``p`` on ``img``; also the labels it produced."""
    out: dict[str, np.ndarray] = {}
    return measure({"x": predictor_step(p, img, out)}, runs, warmup)["x"], out["labels"]


def predictor_step(p: Predictor, img: np.ndarray, out: dict[str, np.ndarray]) -> Step:
    """One timed ``Predictor`` pass split into stages; the labels land in ``out["labels"]``."""
    h, w = img.shape[:2]

    def step() -> dict[str, float]:
        t0 = time.perf_counter()
        x = p.preprocess(img)
        t1 = time.perf_counter()
        logits = p.infer(x)
        t2 = time.perf_counter()
        out["labels"] = p.postprocess(logits, h, w)[0]
        t3 = time.perf_counter()
        return {"pre": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "post": (t3 - t2) * 1e3,
                "end_to_end": (t3 - t0) * 1e3}

    return step


def bare_step(p: Predictor, shape: tuple[int, int]) -> Step:
    """The backend alone (``backend.infer``) on a ready normalized input tensor of the network size ``shape``."""
    x = np.random.default_rng(1).standard_normal((1, 3, *shape)).astype(np.float32)

    def step() -> dict[str, float]:
        t0 = time.perf_counter()
        p.backend.infer(x)
        ms = (time.perf_counter() - t0) * 1e3
        return {"infer": ms, "end_to_end": ms}

    return step


def bench_torch_model(model: Any, meta: dict, img: np.ndarray, shape: tuple[int, int], runs: int, warmup: int,
                      threads: int | None = None, device: str = "cpu") -> tuple[dict, np.ndarray]:
    """PyTorch eager doing the engine's work (network at ``shape``), measured alone; also its labels."""
    out: dict[str, np.ndarray] = {}
    return measure({"x": torch_step(model, meta, img, shape, out, threads, device)}, runs, warmup)["x"], out["labels"]


def _check_arguments(model: str | Path, also: list, torch_ckpt: str | Path | None, runs: int, warmup: int,
                     threads: int | None) -> None:
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    if threads is not None and int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    for path in (model, *also, *([torch_ckpt] if torch_ckpt is not None else [])):
        if not Path(path).is_file():
            raise FileNotFoundError(f"model file not found: {path}")


def run_bench(model: str | Path, shape: tuple[int, int], *, rows: str | tuple[str, ...] = ("segrt",),
              backend: str = "auto", device: str = "auto", precision: str | None = "fp32", compile: bool = False,
              cuda_graphs: bool = False, torch_ckpt: str | Path | None = None,
              also: tuple[str | Path, ...] | list[str | Path] = (), runs: int = 50, warmup: int = 5,
              threads: int | None = None, out_dir: str | Path | None = "benchmarks/results", name: str | None = None,
              command: str | None = None, backends: str | tuple[str, ...] | None = None) -> dict:
    """Measure and (when ``out_dir``) write JSON + markdown + PNG; returns the result dictionary.

    ``rows``: ``segrt`` (MODEL and each ``also`` model through ``engine.Predictor``, each beside its bare network)
    and/or ``torch`` (PyTorch eager from ``torch_ckpt``, or from MODEL when it is a segrt checkpoint);
    ``torch_ckpt`` adds the torch row. ``backend``, ``device``, ``precision``, ``compile``, ``cuda_graphs``: as
    for ``engine.Predictor`` (the torch-only ones are passed only when asked for). ``also``: more model files
    (e.g. ``model.int8.onnx``) opened with the same options and measured in the same interleaved runs.
    ``command``: the command line that produced the result, recorded in the report. ``backends``: the old name of
    ``rows`` (deprecated; a warning).
    """
    if backends is not None:
        warnings.warn("run_bench(backends=...) is now rows=...", DeprecationWarning, stacklevel=2)
        rows = backends
    wanted, old_name = parse_rows(rows)
    if torch_ckpt is not None:
        wanted.add("torch")
    also = list(also)
    if also and "segrt" not in wanted:
        raise ValueError("--also runs more models beside the main one through the engine; it needs the segrt rows")
    _check_arguments(model, also, torch_ckpt, runs, warmup, threads)
    kw = predictor_options(backend, device, None, precision, compile, cuda_graphs)  # validates the precision
    eager_src = torch_ckpt if torch_ckpt is not None else model
    if "torch" in wanted and torch_ckpt is None and not is_checkpoint_file(model):
        raise ValueError(f"the torch eager row needs a segrt checkpoint: --torch CKPT ({model} is not a .pt/.pth "
                         f"training checkpoint)")
    labels_also = also_labels(model, also)
    threads = int(threads or os.cpu_count() or 1)
    kw["threads"] = threads
    img = bench_image(shape)
    steps: dict[str, Step] = {}
    outs: dict[str, dict[str, np.ndarray]] = {}
    configs: dict[str, dict[str, Any]] = {}
    names: dict[str, Any] = {"also": {}}
    main_config: dict[str, Any] | None = None
    if "segrt" in wanted:
        for path, label in zip((model, *also), (None, *labels_also)):
            p = Predictor(path, input_size=shape, **kw)
            if old_name and p.backend.name != "onnxruntime":
                raise ValueError(f"rows 'onnxruntime' measure the model through ONNX Runtime, but {path} opens with "
                                 f"the {p.backend.name} backend: ask for the rows 'segrt' (--rows segrt)")
            net = p.input_size_for(*shape)
            config = engine_config(p, net)
            row, bare = engine_rows(config, label)
            steps[row] = predictor_step(p, img, outs.setdefault(row, {}))
            steps[bare] = bare_step(p, net)
            configs[row], configs[bare] = config, dict(config)
            if label is None:
                names["segrt"], names["bare"], main_config = row, bare, config
            else:
                names["also"][label] = [row, bare]
    if "torch" in wanted:
        tmodel, meta = load_eager(eager_src)
        net = (tuple(main_config["network_shape"]) if main_config else
               round_up(shape, int(getattr(tmodel, "size_divisor", 0) or meta.get("size_divisor", 1) or 1)))
        tdev = eager_device(main_config["device"] if main_config else device)
        steps[TORCH] = torch_step(tmodel, meta, img, net, outs.setdefault(TORCH, {}), threads, tdev)
        configs[TORCH] = {"model": str(eager_src), "backend": "torch", "mode": "eager", "device": tdev,
                          "precision": "fp32", "compile": False, "cuda_graphs": False, "threads": None,
                          "network_shape": list(net)}
    if (compile or cuda_graphs) and warmup < 1:  # checked once the model files took the options
        raise ValueError("--compile and --cuda-graphs compile / capture on the first call: use --warmup >= 1 so "
                         "that it is not measured")
    results = measure(steps, runs, warmup)
    for config in configs.values():  # torch's count is process-wide: read it as the runs left it
        if config["backend"] == "torch":
            config["threads"] = torch_threads()
    labels = {k: v["labels"] for k, v in outs.items() if "labels" in v}
    head = main_config or configs[TORCH]
    result = {
        "model": str(model), "also": [str(a) for a in also], "also_labels": labels_also, "shape": list(shape),
        "network_shape": head["network_shape"], "backend": head["backend"], "device": head["device"],
        "precision": head["precision"], "options": {"compile": head["compile"], "cuda_graphs": head["cuda_graphs"]},
        "runs": runs, "warmup": warmup, "settle_s": SETTLE_S if len(steps) > 1 else 0.0, "threads": threads,
        "machine": machine_info([c["device"] for c in configs.values()]),
        "configs": configs, "row_names": names if main_config else {"also": {}},
        "results_ms": results,
        "ratios": ratios(results, labels_also, names) if main_config else {},
        "label_agreement": agreement(labels, labels_also, names) if main_config else {},
    }
    if command:
        result["command"] = command
    if main_config and names["segrt"] in labels and TORCH in labels:
        result["label_agreement_torch_vs_ours"] = float((labels[names["segrt"]] == labels[TORCH]).mean())
    if out_dir is not None:
        result["files"] = write_report(result, Path(out_dir), name or default_name(model, shape, main_config))
    return result


def default_name(model: str | Path, shape: tuple[int, int], config: dict[str, Any] | None) -> str:
    """``engine_bench_MODEL_HxW`` for ONNX Runtime on the CPU (and torch-only runs); other configurations add their
    backend and options (``engine_bench_model_torch_fp16_cuda-graphs_1024x2048``), so that they do not overwrite
    each other's files."""
    parts = [Path(model).stem]
    if config is not None and (config["backend"] != "onnxruntime" or row_tags(config)):
        parts += [config["backend"], *(t.replace(" ", "-").replace(":", "") for t in row_tags(config))]
    return f"engine_bench_{'_'.join(parts)}_{shape[0]}x{shape[1]}"


def machine_info(devices: list[str]) -> dict[str, Any]:
    """CPU, core count, runtime versions and (for rows on CUDA, when torch is loaded) the GPU's name."""
    info: dict[str, Any] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
    except ImportError:
        pass
    info.update(torch_versions(devices))
    return info
