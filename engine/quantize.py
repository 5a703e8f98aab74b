"""INT8 post-training static quantization of ONNX models for ONNX Runtime on CPU (``segrt quantize``).

:func:`quantize_model` pre-processes the model (``quant_pre_process``: shape inference + graph optimisation),
calibrates it on images pre-processed exactly like ``engine.Predictor`` does (:class:`engine.calibration.
CalibrationData`: ``engine.ops.preprocess`` with the model's metadata mean / std / input_size / align_corners) and
writes a QDQ model (QuantizeLinear / DequantizeLinear pairs around the quantized ops, per-channel int8 weights) that
still carries the ``segrt.*`` metadata, so ``engine.Predictor("model.int8.onnx")`` opens it unchanged.

The defaults were chosen by measurement on the demo model (``benchmarks/results/quantize_*.md``): uint8
activations + int8 weights is what ONNX Runtime's x86 kernels (AVX-512 VNNI / AVX-VNNI, u8 x s8 dot products) run
fast; int8 x int8 was ~2x slower there. MinMax calibration kept mIoU as well as Entropy / Percentile at a fraction of
their calibration time.

:func:`compare` measures fp32 against int8 (bare network and ``Predictor`` end to end, interleaved, same threads)
and the mIoU of both on a dataset split; :func:`write_report` writes it as JSON + markdown. Needs no torch.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.calibration import IMAGE_SUFFIXES, CalibrationData
from engine.fileio import atomic_path, write_atomic
from engine.metadata import PREFIX, ModelMeta

METHODS = ("minmax", "entropy", "percentile")
TYPES = ("uint8", "int8")
PROVENANCE_KEY = "quantization"  # not segrt.*: ModelMeta ignores it, it records how the file was made


def load_onnx(path: str | Path) -> Any:
    """``onnx.load`` with a clear error: FileNotFoundError / ValueError naming ``path``."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf raises DecodeError and friends for non-ONNX bytes
        raise ValueError(f"{path}: not an ONNX model ({type(e).__name__}: {e})") from None
    if not len(model.graph.node) or len(model.graph.input) == 0:
        raise ValueError(f"{path}: not an ONNX model (no graph nodes or inputs)")
    return model


def is_dataset_root(path: str | Path, split: str | None = None) -> bool:
    """Whether ``path`` is a segrt folder-dataset root (``classes.yaml`` beside ``images/``), with ``split`` when
    one is named (``images/<split>``)."""
    path = Path(path)
    return (path / "classes.yaml").is_file() and (path / "images" / (split or "")).is_dir()


def calib_folder(calib: str | Path) -> Path:
    """The image folder to calibrate on: ``calib`` itself, or ``calib/images/train`` (else ``calib/images``) when
    ``calib`` is a segrt folder-dataset root, so the validation split is never used for calibration."""
    calib = Path(calib)
    if not calib.is_dir():
        raise FileNotFoundError(f"calibration folder not found: {calib}")
    if is_dataset_root(calib):
        return calib / "images" / "train" if (calib / "images" / "train").is_dir() else calib / "images"
    return calib


def _input_info(model: Any) -> tuple[str, list[int | None]]:
    """Name and dims (None where dynamic) of the model's one graph input that is not an initializer."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ValueError(f"expected one image input, got {[i.name for i in inputs]}")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ValueError(f"expected a 4-D NCHW image input, got {len(dims)} dims for {inputs[0].name!r}")
    return inputs[0].name, dims


def calibration_data(model: Any, meta: ModelMeta, calib: str | Path, num_images: int | None,
                     input_size: tuple[int, int] | None = None) -> CalibrationData:
    """Calibration batches ``[1,3,H,W]`` at the size the model runs at: ``input_size`` when given, else the graph's
    static H x W, else the metadata ``input_size``, else the first image's size. ``num_images`` are spread evenly
    over the sorted files."""
    folder = calib_folder(calib)
    _, dims = _input_info(model)
    size = input_size or (tuple(dims[2:]) if None not in dims[2:] else None)
    if meta.input_size is None and size is None:
        from engine.calibration import read_rgb

        probe = CalibrationData(folder, meta, (1, 3, 1, 1), max_images=1)
        size = read_rgb(probe.files[0]).shape[:2]
    h, w = size or meta.input_size  # type: ignore[misc]
    data = CalibrationData(folder, meta, (1, 3, int(h), int(w)), max_images=None)
    if num_images is not None:
        if int(num_images) < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        idx = np.linspace(0, len(data.files) - 1, min(int(num_images), len(data.files))).round().astype(int)
        data.files = [data.files[i] for i in sorted(set(idx.tolist()))]
    return data


def _reader(data: CalibrationData, input_name: str) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        """Feeds ``data``'s pre-processed batches to ONNX Runtime's calibrator."""

        def __init__(self) -> None:
            self.it = data.batches()

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.it, None)
            return None if batch is None else {input_name: batch}

        def rewind(self) -> None:
            self.it = data.batches()

    return _Reader()


def _qtype(name: str, what: str) -> Any:
    from onnxruntime.quantization import QuantType

    if name not in TYPES:
        raise ValueError(f"{what} must be one of {TYPES}, got {name!r}")
    return QuantType.QUInt8 if name == "uint8" else QuantType.QInt8


def quantize_model(onnx_path: str | Path, calib: str | Path, out_path: str | Path, *, num_images: int | None = 64,
                   method: str = "minmax", per_channel: bool = True, activation_type: str = "uint8",
                   weight_type: str = "int8", reduce_range: bool = False,
                   nodes_to_exclude: Sequence[str] = (), op_types_to_quantize: Sequence[str] | None = None,
                   input_size: tuple[int, int] | None = None, extra_options: dict | None = None) -> Path:
    """Quantize ``onnx_path`` to a QDQ int8 model at ``out_path`` (written atomically) and return its path.

    ``calib`` is an image folder or a segrt dataset root (its ``images/train`` is used); ``num_images`` of it (None:
    all) are pre-processed like ``engine.Predictor`` does. ``method``: minmax, entropy or percentile.
    ``nodes_to_exclude`` (node names) stay in float. The ``segrt.*`` metadata is copied from the source model.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src = Path(onnx_path)
    model = load_onnx(src)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    props = {p.key: p.value for p in model.metadata_props}
    meta = ModelMeta.from_props(props, source=str(src))
    data = calibration_data(model, meta, calib, num_images, input_size)
    input_name, _ = _input_info(model)
    cal = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}[method]
    act, wt = _qtype(activation_type, "activation_type"), _qtype(weight_type, "weight_type")
    out_path = Path(out_path)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="segrt-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(src), str(pre))
        except Exception:  # symbolic shape inference cannot follow every graph; ONNX's own inference still runs
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        q = Path(tmp) / "q.onnx"
        opts = {"CalibTensorRangeSymmetric": False, **(extra_options or {})}
        quantize_static(str(pre), str(q), _reader(data, input_name), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(op_types_to_quantize) if op_types_to_quantize else None,
                        per_channel=per_channel, reduce_range=reduce_range, activation_type=act, weight_type=wt,
                        nodes_to_exclude=list(nodes_to_exclude), calibrate_method=cal, extra_options=opts)
        qmodel = onnx.load(str(q))
    del qmodel.metadata_props[:]
    info = {"method": method, "per_channel": per_channel, "activation_type": activation_type,
            "weight_type": weight_type, "reduce_range": reduce_range, "format": "QDQ",
            "calibration_images": len(data.files), "calibration_folder": str(data.folder),
            "nodes_to_exclude": list(nodes_to_exclude), "source": src.name,
            "seconds": round(time.perf_counter() - t0, 2)}
    for k, v in [*((k, v) for k, v in props.items() if k.startswith(PREFIX)), (PROVENANCE_KEY, json.dumps(info))]:
        e = qmodel.metadata_props.add()
        e.key, e.value = k, v
    with atomic_path(out_path) as tmp_out:
        onnx.save(qmodel, str(tmp_out))
    return out_path


def _bare_step(p: Any, x: np.ndarray) -> Any:
    """A timed step of the backend alone on the ready input ``x``."""
    def step() -> dict[str, float]:
        t0 = time.perf_counter()
        p.backend.infer(x)
        return {"end_to_end": (time.perf_counter() - t0) * 1e3}
    return step


class _Recorder:
    """A Predictor stand-in for ``evaluate_predictor`` that keeps every label map it returns."""

    def __init__(self, predictor: Any) -> None:
        self.predictor, self.labels = predictor, []

    def run(self, img: np.ndarray) -> np.ndarray:
        labels = self.predictor.run(img)
        self.labels.append(labels)
        return labels


def compare(fp32_path: str | Path, int8_path: str | Path, data_root: str | Path, *, split: str = "val",
            threads: int | None = None, runs: int = 30, warmup: int = 5, max_images: int | None = None,
            gap_s: float = 0.05) -> dict:
    """fp32 vs int8: latency (bare network and ``Predictor`` end to end, interleaved, same threads) on the split's
    first image, and pixAcc / mIoU of both on ``SegFolderDataset(data_root, split)`` (at most ``max_images``).

    Each timed step starts ``gap_s`` after the previous one: ONNX Runtime's pool threads spin for a while after a
    run, and on 2 cores the spinning threads of one session halve the speed of the other session's next run
    (measured: fp32 57 ms back to back vs 29 ms with the gap), which is an artefact of interleaving two sessions."""
    import onnxruntime as ort

    from engine.bench import measure, predictor_step
    from engine.predictor import Predictor
    from training.data import SegFolderDataset  # numpy + Pillow only
    from training.metrics import evaluate_predictor

    ds = SegFolderDataset(data_root, split)
    if max_images is not None:
        ds.images, ds.masks = ds.images[:max_images], ds.masks[:max_images]
    threads = int(threads or os.cpu_count() or 1)
    preds = {k: Predictor(p, backend="onnxruntime", device="cpu", threads=threads)
             for k, p in (("fp32", fp32_path), ("int8", int8_path))}
    img = ds[0]["image"]
    x = preds["fp32"].preprocess(img).copy()
    labels: dict[str, np.ndarray] = {}

    def paced(step: Any) -> Any:
        def run() -> dict[str, float]:
            time.sleep(gap_s)
            return step()
        return run

    steps = {}
    for k, p in preds.items():
        steps[f"{k} bare network"] = paced(_bare_step(p, x))
        steps[f"{k} end to end"] = paced(predictor_step(p, img, labels.setdefault(k, {})))  # type: ignore[arg-type]
    rows = measure(steps, runs, warmup)
    med = {k: v["end_to_end"]["median"] for k, v in rows.items()}
    quality = {}
    recs = {k: _Recorder(p) for k, p in preds.items()}
    for k, r in recs.items():
        m = evaluate_predictor(r, ds)
        quality[k] = {"mIoU": m["mIoU"], "pixAcc": m["pixAcc"], "per_class_IoU": m["per_class_IoU"]}
    agree = float(np.mean([(a == b).mean() for a, b in zip(recs["fp32"].labels, recs["int8"].labels)]))
    return {
        "fp32_model": str(fp32_path), "int8_model": str(int8_path), "data": str(data_root), "split": split,
        "images": len(ds), "image_shape": list(img.shape[:2]), "network_input": list(x.shape[2:]),
        "runs": runs, "warmup": warmup, "threads": threads,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "vnni": _cpu_flags(), "onnxruntime": ort.__version__},
        "quantization": json.loads(preds["int8"].backend.session.get_modelmeta().custom_metadata_map.get(
            PROVENANCE_KEY, "{}")),
        "latency_ms": rows,
        "speedup": {"bare network": med["fp32 bare network"] / med["int8 bare network"],
                    "end to end": med["fp32 end to end"] / med["int8 end to end"]},
        "quality": quality, "mIoU_change_points": 100 * (quality["int8"]["mIoU"] - quality["fp32"]["mIoU"]),
        "label_agreement": agree,
    }


def _cpu_flags() -> list[str]:
    """The int8 dot-product instruction sets this CPU reports (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [f for f in ("avx512_vnni", "avx_vnni", "amx_int8") if f in flags]


def markdown(r: dict, command: str | None = None) -> str:
    """The comparison as a short markdown report."""
    q = r["quantization"]
    lines = [f"# int8 quantization: {Path(r['fp32_model']).name} -> {Path(r['int8_model']).name}", ""]
    if command:
        lines += ["```", command, "```", ""]
    mach = r["machine"]
    lines += [f"ONNX Runtime {mach['onnxruntime']} (CPU), {r['threads']} threads, {mach['cores']} cores "
              f"({mach['cpu']}, {', '.join(r['machine']['vnni']) or 'no VNNI'}). QDQ, "
              f"{q.get('activation_type')} activations / {q.get('weight_type')} weights, per-channel "
              f"{q.get('per_channel')}, reduce_range {q.get('reduce_range')}, {q.get('method')} calibration on "
              f"{q.get('calibration_images')} images of `{q.get('calibration_folder')}`.", "",
              f"Latency: image {r['image_shape'][0]}x{r['image_shape'][1]}, network input "
              f"{r['network_input'][0]}x{r['network_input'][1]}, {r['runs']} interleaved runs after {r['warmup']} "
              "warm-up.", "", "| configuration | median ms | p90 ms |", "|---|---:|---:|"]
    for k, v in r["latency_ms"].items():
        lines.append(f"| {k} | {v['end_to_end']['median']:.2f} | {v['end_to_end']['p90']:.2f} |")
    lines += ["", *(f"- speed-up {k}: **{v:.2f}x**" for k, v in r["speedup"].items()), "",
              f"Quality on `{r['data']}` split `{r['split']}` ({r['images']} images):", "",
              "| model | mIoU | pixAcc |", "|---|---:|---:|"]
    for k, v in r["quality"].items():
        lines.append(f"| {k} | {100 * v['mIoU']:.2f} | {100 * v['pixAcc']:.2f} |")
    lines += ["", f"- mIoU change: **{r['mIoU_change_points']:+.2f} points**",
              f"- pixels labelled the same by fp32 and int8: {100 * r['label_agreement']:.2f}%"]
    return "\n".join(lines) + "\n"


def write_report(result: dict, out_dir: str | Path, name: str, command: str | None = None) -> list[str]:
    """Write ``name``.json and ``name``.md under ``out_dir`` atomically; returns their paths."""
    out_dir = Path(out_dir)
    result = {**result, "command": command} if command else result
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md"]
    write_atomic(paths[0], json.dumps(result, indent=2) + "\n")
    write_atomic(paths[1], markdown(result, command))
    return [str(p) for p in paths]


__all__ = ["IMAGE_SUFFIXES", "METHODS", "calib_folder", "calibration_data", "compare", "load_onnx", "markdown",
           "quantize_model", "write_report"]
