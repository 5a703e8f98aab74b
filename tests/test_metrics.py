"""Confusion-matrix metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.metrics import ConfusionMatrix


def test_known_values() -> None:
    cm = ConfusionMatrix(3)
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 1]])
    cm.update(pred, target)
    r = cm.compute(["a", "b", "c"])
    # tp: a=1, b=3, c=1; gt: a=2, b=3, c=2; pred (non-ignored): a=2, b=4, c=1
    assert r["pixAcc"] == pytest.approx(5 / 7)
    ious = [1 / 3, 3 / 4, 1 / 2]
    assert r["per_class_IoU"] == pytest.approx(dict(zip("abc", ious)))
    assert r["mIoU"] == pytest.approx(sum(ious) / 3)
    assert r["mAcc"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)


def test_absent_class_is_excluded_and_errors() -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8))
    r = cm.compute()
    assert r["per_class_IoU"]["1"] is None and r["mIoU"] == 1.0
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="label values"):
        cm.update(np.zeros((1, 1)), np.full((1, 1), 7))
    assert math.isnan(ConfusionMatrix(2).compute()["pixAcc"])
