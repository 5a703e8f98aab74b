"""Segmentation metrics from a confusion matrix: pixAcc, mIoU, per-class IoU, mean accuracy, Dice."""

from __future__ import annotations

from typing import Any

import numpy as np


class ConfusionMatrix:
    """Accumulates a [K,K] confusion matrix (rows: ground truth, columns: prediction)."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = np.zeros((num_classes, num_classes), np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        """Add one prediction/label pair of equal shape; ignore_index pixels are skipped."""
        pred = np.asarray(pred)
        target = np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {pred.shape} != label shape {target.shape}")
        keep = target != self.ignore_index
        t = target[keep].astype(np.int64)
        p = pred[keep].astype(np.int64)
        k = self.num_classes
        if t.size and (t.max() >= k or t.min() < 0):
            raise ValueError(f"label values must be in [0, {k}) or {self.ignore_index}, found {t.max()}")
        if p.size and (p.max() >= k or p.min() < 0):
            raise ValueError(f"predicted class ids must be in [0, {k}), found {p.max()}")
        self.mat += np.bincount(t * k + p, minlength=k * k).reshape(k, k)

    def compute(self, class_names: list[str] | None = None) -> dict:
        """pixAcc, mIoU, mAcc, mDice and per-class IoU (classes absent from labels and predictions are NaN)."""
        m = self.mat.astype(np.float64)
        tp = np.diag(m)
        gt = m.sum(1)
        pred = m.sum(0)
        union = gt + pred - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
            acc = np.where(gt > 0, tp / gt, np.nan)
            dice = np.where(gt + pred > 0, 2 * tp / (gt + pred), np.nan)
        total = m.sum()
        names = class_names or [str(i) for i in range(self.num_classes)]

        def mean(v: np.ndarray) -> float:
            return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")

        return {
            "pixAcc": float(tp.sum() / total) if total else float("nan"),
            "mIoU": mean(iou),
            "mAcc": mean(acc),
            "mDice": mean(dice),
            "per_class_IoU": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou)},
        }


def evaluate_predictor(predictor: Any, dataset: Any) -> dict:
    """pixAcc / mIoU / per-class IoU of an ``engine.Predictor`` (any deployed model file) on a dataset."""
    cm = ConfusionMatrix(dataset.num_classes, dataset.ignore_index)
    for i in range(len(dataset)):
        s = dataset[i]
        cm.update(predictor.run(s["image"]), s["mask"])
    return cm.compute(list(dataset.classes))
