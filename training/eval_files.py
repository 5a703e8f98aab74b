"""``segrt eval``: the same metrics for a training checkpoint and for any model file the engine opens.

Every model goes through ``engine.Predictor`` (ONNX Runtime for ``.onnx``/int8 ``.onnx``, TensorRT for ``.plan``, the
torch backend for ``.pt``/``.pt2``), so whole-image, sliding-window and multi-scale + flip evaluation work the
same for all of them, and the accuracy cost of export, fp16 or int8 is measured on one code path. Datasets are
read in their own on-disk formats (``training.data.build_dataset``: folder, voc, voc-aug, cityscapes, camvid,
ade20k, stanford, ...). Model files are evaluated without importing torch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from training.data import build_dataset
from training.metrics import ConfusionMatrix


def evaluate_file(
    model: str | Path, data: str | Path, *, dataset: str = "folder", split: str = "val", mode: str = "whole",
    crop_size: tuple[int, int] | None = None, stride: tuple[int, int] | None = None,
    scales: tuple[float, ...] = (1.0,), flip: bool = False, input_size: tuple[int, int] | None = None,
    threads: int | None = None, device: str = "auto", limit: int | None = None, **predictor_kw: Any,
) -> dict[str, Any]:
    """pixAcc, mIoU, per-class IoU, mean accuracy and Dice of ``model`` on ``split`` of ``data``.

    ``mode``/``crop_size``/``stride``/``scales``/``flip``/``input_size`` are ``engine.Predictor``'s; ``limit``
    evaluates only the first N samples. Raises ``ValueError`` when the model's classes and the dataset's differ
    in number (naming both).
    """
    import engine

    ds = build_dataset(dataset, data, split)
    p = engine.Predictor(model, device=device, threads=threads, mode=mode, crop_size=crop_size, stride=stride,
                         scales=scales, flip=flip, input_size=input_size, **predictor_kw)
    if p.meta.num_classes != ds.num_classes:
        raise ValueError(f"{model}: the model predicts {p.meta.num_classes} classes but {dataset} dataset {data} has "
                         f"{ds.num_classes}")
    cm = ConfusionMatrix(ds.num_classes, ds.ignore_index)
    n = len(ds) if limit is None else min(len(ds), int(limit))
    if n == 0:
        raise ValueError(f"{dataset} dataset {data} has no samples in split {split!r}")
    t0 = time.perf_counter()
    for i in range(n):
        s = ds[i]
        cm.update(p.run(s["image"]), s["mask"])
    metrics = cm.compute(list(ds.classes))
    metrics.update({"model": str(model), "dataset": dataset, "split": split, "samples": n, "mode": mode,
                    "scales": list(scales), "flip": bool(flip), "seconds": round(time.perf_counter() - t0, 3)})
    return metrics
