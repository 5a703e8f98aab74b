"""Whole-image evaluation of a torch model on a dataset split (same resize policy as the engine)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from training.data.transforms import normalize, resize_image, to_tensor
from training.metrics import ConfusionMatrix, evaluate_predictor

__all__ = ["evaluate_model", "evaluate_predictor", "predict_labels"]


@torch.no_grad()
def predict_labels(model: torch.nn.Module, img: Any, input_size: tuple[int, int] | None, mean: tuple,
                   std: tuple) -> torch.Tensor:
    """Class ids [H,W] for one HxWx3 uint8 image: resize to ``input_size``, infer, upsample logits, argmax."""
    x = to_tensor(img)
    h, w = x.shape[-2:]
    if input_size is not None:
        x = resize_image(x, tuple(input_size))
    logits = model(normalize(x, mean, std)[None])
    logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    return logits.argmax(1)[0]


def evaluate_model(model: torch.nn.Module, dataset: Any, input_size: tuple[int, int] | None, mean: tuple,
                   std: tuple, confusion: ConfusionMatrix | None = None) -> dict[str, Any]:
    """pixAcc / mIoU / per-class IoU of ``model`` on every sample of ``dataset``; pass an empty ``confusion`` to
    also get the accumulated matrix."""
    model.eval()
    cm = confusion if confusion is not None else ConfusionMatrix(dataset.num_classes, dataset.ignore_index)
    for i in range(len(dataset)):
        s = dataset[i]
        cm.update(predict_labels(model, s["image"], input_size, mean, std).numpy(), s["mask"])
    return cm.compute(list(dataset.classes))
