"""``segrt bench``: latency of the engine per stage and end to end, beside the bare network and PyTorch eager.

Rows, all on the same HxW image with the network run at HxW, measured interleaved in one process:

* ``segrt (<backend>)``: ``Predictor.run`` split into pre (native resize+normalize+layout), infer, post (native fused
  upsample+argmax), and end to end;
* ``bare <backend>``: the network alone on a ready input tensor (what the backend costs without our code);
* ``segrt (onnxruntime, FILE)`` and ``bare onnxruntime (FILE)`` for every other ONNX model given with ``--also``
  (e.g. the int8 model of ``segrt quantize``), so that variants of one model are compared in the same run;
* ``torch eager`` (with ``--torch CKPT``): the same work in PyTorch: resize+normalize in torch, forward,
  ``F.interpolate`` + argmax. torch is imported only in this path.

Writes ``<name>.json``, ``<name>.md`` and ``<name>.png`` (matplotlib, Agg) under the output folder.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine.fileio import atomic_path, write_atomic
from engine.pipeline import summarize
from engine.predictor import Predictor

STAGES = ("pre", "infer", "post", "end_to_end")
MAIN, BARE, TORCH = "segrt (onnxruntime)", "bare onnxruntime", "torch eager"
TORCH_TARGET = 3.5  # the engine issue's target: torch eager fp32 / fastest segrt end to end


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


def also_rows(label: str) -> tuple[str, str]:
    """The (engine, bare network) row names of an ``--also`` model."""
    return f"segrt (onnxruntime, {label})", f"bare onnxruntime ({label})"


def parse_shape(text: str) -> tuple[int, int]:
    """``"512x1024"`` -> ``(512, 1024)``; ValueError otherwise."""
    try:
        h, w = (int(v) for v in text.lower().replace("*", "x").split("x"))
    except ValueError:
        raise ValueError(f"shape must look like HxW (e.g. 512x1024), got {text!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"shape must be positive, got {text!r}")
    return h, w


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
    """The backend alone on a ready normalized input tensor."""
    x = np.random.default_rng(1).standard_normal((1, 3, *shape)).astype(np.float32)

    def step() -> dict[str, float]:
        t0 = time.perf_counter()
        p.backend.infer(x)
        ms = (time.perf_counter() - t0) * 1e3
        return {"infer": ms, "end_to_end": ms}

    return step


def bench_torch_model(model: Any, meta: dict, img: np.ndarray, shape: tuple[int, int], runs: int, warmup: int,
                      threads: int | None = None) -> tuple[dict, np.ndarray]:
    """PyTorch eager doing the engine's work, measured alone; also its labels."""
    out: dict[str, np.ndarray] = {}
    return measure({"x": torch_step(model, meta, img, shape, out, threads)}, runs, warmup)["x"], out["labels"]


def torch_step(model: Any, meta: dict, img: np.ndarray, shape: tuple[int, int], out: dict[str, np.ndarray],
               threads: int | None = None) -> Step:
    """PyTorch eager doing the engine's work: resize+normalize, forward, ``F.interpolate`` + argmax.

    In ``segrt bench`` torch is imported after the engine, so its OpenMP runs with the engine's
    ``OMP_WAIT_POLICY=PASSIVE``: on the demo model at 512x1024 (2 cores) that cost torch ~3% against its default
    policy (separate processes: 346-354 vs 362-364 ms end to end).
    """
    import torch
    import torch.nn.functional as F

    if threads:
        torch.set_num_threads(int(threads))
    mean = torch.tensor(meta.get("mean", (123.675, 116.28, 103.53)), dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(meta.get("std", (58.395, 57.12, 57.375)), dtype=torch.float32).view(1, 3, 1, 1)
    align = bool(meta.get("align_corners", False))
    h, w = img.shape[:2]
    model = model.eval()

    def step() -> dict[str, float]:
        with torch.inference_mode():
            t0 = time.perf_counter()
            x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
            if (h, w) != tuple(shape):
                x = F.interpolate(x, size=shape, mode="bilinear", align_corners=align)
            x = ((x - mean) / std).contiguous()
            t1 = time.perf_counter()
            logits = model(x)
            t2 = time.perf_counter()
            up = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=align)
            out["labels"] = up.argmax(1)[0].to(torch.uint8).numpy()
            t3 = time.perf_counter()
        return {"pre": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "post": (t3 - t2) * 1e3,
                "end_to_end": (t3 - t0) * 1e3}

    return step


def run_bench(model: str | Path, shape: tuple[int, int], *, backends: tuple[str, ...] = ("onnxruntime",),
              torch_ckpt: str | Path | None = None, also: tuple[str | Path, ...] | list[str | Path] = (),
              runs: int = 50, warmup: int = 5, threads: int | None = None,
              out_dir: str | Path | None = "benchmarks/results", name: str | None = None,
              command: str | None = None) -> dict:
    """Measure and (when ``out_dir``) write JSON + markdown + PNG; returns the result dictionary.

    ``also``: more ONNX models (e.g. ``model.int8.onnx``) measured beside ``model`` in the same interleaved runs.
    ``command``: the command line that produced the result, recorded in the report.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    unknown = [b for b in backends if b not in ("onnxruntime", "torch")]
    if unknown:
        raise ValueError(f"unknown backend(s) {unknown} (known: onnxruntime, torch)")
    if "torch" in backends and torch_ckpt is None:
        raise ValueError("backend 'torch' needs a checkpoint: --torch CKPT")
    also = list(also)
    if also and "onnxruntime" not in backends:
        raise ValueError("--also runs more ONNX models beside the main one; it needs the onnxruntime backend")
    labels_also = also_labels(model, also)
    for path in (model, *also, *([torch_ckpt] if torch_ckpt is not None else [])):
        if not Path(path).is_file():
            raise FileNotFoundError(f"model file not found: {path}")
    img = bench_image(shape)
    steps: dict[str, Step] = {}
    outs: dict[str, dict[str, np.ndarray]] = {}
    import onnxruntime as ort

    if "onnxruntime" in backends:
        for path, label in zip((model, *also), (None, *labels_also)):
            row, bare = (MAIN, BARE) if label is None else also_rows(label)
            p = Predictor(path, backend="onnxruntime", device="cpu", threads=threads, input_size=shape)
            steps[row] = predictor_step(p, img, outs.setdefault(row, {}))
            steps[bare] = bare_step(p, shape)
    if torch_ckpt is not None:
        from training.export import load_trained  # torch is needed only here

        tmodel, meta = load_trained(torch_ckpt)
        steps[TORCH] = torch_step(tmodel, meta, img, shape, outs.setdefault(TORCH, {}), threads)
    rows = measure(steps, runs, warmup)
    labels = {k: v["labels"] for k, v in outs.items() if "labels" in v}
    result = {
        "model": str(model), "also": [str(a) for a in also], "also_labels": labels_also, "shape": list(shape),
        "runs": runs, "warmup": warmup, "settle_s": SETTLE_S if len(steps) > 1 else 0.0,
        "threads": threads or os.cpu_count(),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "onnxruntime": ort.__version__},
        "results_ms": rows, "ratios": ratios(rows, labels_also), "label_agreement": agreement(labels, labels_also),
    }
    if command:
        result["command"] = command
    if MAIN in labels and TORCH in labels:
        result["label_agreement_torch_vs_ours"] = float((labels[MAIN] == labels[TORCH]).mean())
    if out_dir is not None:
        name = name or f"engine_bench_{Path(model).stem}_{shape[0]}x{shape[1]}"
        result["files"] = write_report(result, Path(out_dir), name)
    return result


def ratios(rows: dict[str, dict[str, dict[str, float]]], labels_also: list[str]) -> dict[str, float]:
    """Ratios of end-to-end medians: engine over bare network, torch eager over each engine row, and the main
    model over each ``--also`` model (its speed-up)."""
    e2e = {k: v["end_to_end"]["median"] for k, v in rows.items()}
    out: dict[str, float] = {}
    if MAIN not in e2e:
        return out
    out["end_to_end / bare network"] = e2e[MAIN] / e2e[BARE]
    if TORCH in e2e:
        out["torch eager / segrt"] = e2e[TORCH] / e2e[MAIN]
    for label in labels_also:
        row, bare = also_rows(label)
        out[f"end_to_end / bare network ({label})"] = e2e[row] / e2e[bare]
        out[f"segrt / segrt ({label})"] = e2e[MAIN] / e2e[row]
        out[f"bare onnxruntime / bare onnxruntime ({label})"] = e2e[BARE] / e2e[bare]
        if TORCH in e2e:
            out[f"torch eager / segrt ({label})"] = e2e[TORCH] / e2e[row]
    return out


def agreement(labels: dict[str, np.ndarray], labels_also: list[str]) -> dict[str, float]:
    """Share of pixels labelled alike: each ``--also`` model vs the main one, torch eager vs each engine row."""
    engines = [r for r in (MAIN, *(also_rows(a)[0] for a in labels_also)) if r in labels]
    pairs = [(r, MAIN) for r in engines[1:]] + [(TORCH, r) for r in engines if TORCH in labels]
    return {f"{a} vs {b}": float((labels[a] == labels[b]).mean()) for a, b in pairs}


def markdown(result: dict) -> str:
    """The result as a markdown table of medians (p90, p99) per stage, then the ratios."""
    h, w = result["shape"]
    names = ", ".join(Path(m).name for m in (result["model"], *result.get("also", [])))
    lines = [f"# segrt bench: {names} at {h}x{w}", ""]
    if result.get("command"):
        lines += ["```", result["command"], "```", ""]
    settle = result.get("settle_s", 0.0)
    lines += [f"{result['runs']} interleaved runs after {result['warmup']} warm-up"
              f"{f' (each step {settle * 1e3:.0f} ms after the previous one)' if settle else ''}, "
              f"{result['threads']} threads, "
              f"{result['machine']['cores']} cores ({result['machine']['cpu']}), "
              f"onnxruntime {result['machine']['onnxruntime']}. `segrt (onnxruntime)` is "
              f"{Path(result['model']).name}.", "",
              "| configuration | " + " | ".join(f"{s} ms (p90 / p99)" for s in STAGES) + " |",
              "|---|" + "---:|" * len(STAGES)]
    for row, stages in result["results_ms"].items():
        cells = [f"{stages[s]['median']:.2f} ({stages[s]['p90']:.2f} / {stages[s]['p99']:.2f})" if s in stages
                 else "" for s in STAGES]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {k}: **{v:.3f}x**" for k, v in result["ratios"].items()]
    if "label_agreement" in result:
        lines += [f"- pixels labelled alike, {k}: {100 * v:.3f}%" for k, v in result["label_agreement"].items()]
    elif "label_agreement_torch_vs_ours" in result:  # reports written before --also
        lines.append(f"- labels equal to torch eager's: {100 * result['label_agreement_torch_vs_ours']:.3f}%")
    best = {k: v for k, v in result["ratios"].items() if k.startswith("torch eager / segrt")}
    if best:
        k = max(best, key=best.get)
        verdict = "met" if best[k] >= TORCH_TARGET else "not met"
        lines.append(f"- target torch eager fp32 / segrt >= {TORCH_TARGET}x: {verdict} ({k}: {best[k]:.2f}x)")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """Stacked bars of median pre/infer/post per configuration, with the end-to-end p90 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(result["results_ms"].items())
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.7 * len(rows)))
    colours = {"pre": "#4c72b0", "infer": "#dd8452", "post": "#55a868"}
    for i, (_, stages) in enumerate(rows):
        left = 0.0
        for s in ("pre", "infer", "post"):
            if s in stages:
                v = stages[s]["median"]
                ax.barh(i, v, left=left, color=colours[s], label=s if i == 0 or s != "infer" else None)
                left += v
        ax.plot(stages["end_to_end"]["p90"], i, "k|", markersize=18)
    ax.set_yticks(range(len(rows)), [r for r, _ in rows])
    ax.invert_yaxis()
    h, w = result["shape"]
    ax.set_xlabel("latency, ms (bars: medians per stage; |: end-to-end p90)")
    names_ = ", ".join(Path(m).name for m in (result["model"], *result.get("also", [])))
    ax.set_title(f"{names_} at {h}x{w}")
    handles, names = ax.get_legend_handles_labels()
    uniq = dict(zip(names, handles))
    ax.legend(uniq.values(), uniq.keys(), loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png", bbox_inches="tight")
    plt.close(fig)


def write_report(result: dict, out_dir: Path, name: str) -> list[str]:
    """Write ``name``.json/.md/.png atomically under ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md", out_dir / f"{name}.png"]
    for path, text in ((paths[0], json.dumps(result, indent=2) + "\n"), (paths[1], markdown(result))):
        write_atomic(path, text)
    plot(result, paths[2])
    return [str(p) for p in paths]
