"""Segmentation losses: cross-entropy (class weights, ignore_index), OHEM, Dice, Lovász-softmax, focal.

Every loss takes low-resolution logits [B,K,h,w] and a full-resolution label map [B,H,W]; logits are
resized to the labels first (bilinear, align_corners=False, the project policy).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F


def resize_to(logits: torch.Tensor, size: tuple[int, int], align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize of logits to a label map's size (project policy: align_corners=False)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=align_corners)


def _prepare(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if target.dim() != 3 or logits.dim() != 4 or logits.shape[0] != target.shape[0]:
        raise ValueError(f"expected logits [B,K,h,w] and labels [B,H,W], got {tuple(logits.shape)} and "
                         f"{tuple(target.shape)}")
    return resize_to(logits, tuple(target.shape[-2:])), target.long()


def seg_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
                      weight: torch.Tensor | None = None) -> torch.Tensor:
    """Pixel-wise cross-entropy with optional class weights; ignore_index pixels do not count."""
    logits, target = _prepare(logits, target)
    return F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index)


def ohem_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
                       thresh: float = 0.7, min_kept: int = 100_000,
                       weight: torch.Tensor | None = None) -> torch.Tensor:
    """Online hard example mining: CE over pixels whose probability of the true class is below ``thresh``,
    keeping at least the ``min_kept`` hardest valid pixels (the MMSegmentation OHEM pixel sampler's rule)."""
    logits, target = _prepare(logits, target)
    pixel_loss = F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction="none")
    valid = target != ignore_index
    n_valid = int(valid.sum())
    if n_valid == 0:
        return pixel_loss.sum() * 0.0
    with torch.no_grad():
        prob = logits.softmax(1).gather(1, target.clamp(0, logits.shape[1] - 1)[:, None])[:, 0]
        prob = torch.where(valid, prob, torch.ones_like(prob))
        k = min(max(min_kept, 1), n_valid)
        kth = prob.flatten().kthvalue(k).values
        keep = valid & (prob <= torch.maximum(kth, torch.tensor(thresh, dtype=prob.dtype)))
    return pixel_loss[keep].mean()


def dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255, smooth: float = 1.0,
              exponent: int = 2) -> torch.Tensor:
    """Soft Dice loss averaged over classes: 1 - (2 sum(p*g) + s) / (sum(p^e) + sum(g^e) + s)."""
    logits, target = _prepare(logits, target)
    k = logits.shape[1]
    valid = (target != ignore_index)[:, None].to(logits.dtype)
    prob = logits.softmax(1) * valid
    onehot = F.one_hot(target.clamp(0, k - 1), k).permute(0, 3, 1, 2).to(logits.dtype) * valid
    dims = (0, 2, 3)
    num = 2 * (prob * onehot).sum(dims) + smooth
    den = prob.pow(exponent).sum(dims) + onehot.pow(exponent).sum(dims) + smooth
    return (1 - num / den).mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255, gamma: float = 2.0,
               alpha: float | None = None) -> torch.Tensor:
    """Softmax focal loss: mean over valid pixels of -alpha (1-p_t)^gamma log p_t."""
    logits, target = _prepare(logits, target)
    valid = target != ignore_index
    if not valid.any():
        return logits.sum() * 0.0
    logp = logits.log_softmax(1).gather(1, target.clamp(0, logits.shape[1] - 1)[:, None])[:, 0][valid]
    loss = -((1 - logp.exp()) ** gamma) * logp
    return (loss * alpha if alpha is not None else loss).mean()


def _lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss w.r.t. sorted errors."""
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if len(gt_sorted) > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def lovasz_softmax(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
                   classes: str = "present") -> torch.Tensor:
    """Lovász-softmax (Berman et al. 2018) over all valid pixels of the batch, averaged over the classes
    present in the labels (``classes="present"``) or all classes (``"all"``)."""
    logits, target = _prepare(logits, target)
    k = logits.shape[1]
    prob = logits.softmax(1).permute(0, 2, 3, 1).reshape(-1, k)
    lab = target.reshape(-1)
    keep = lab != ignore_index
    prob, lab = prob[keep], lab[keep]
    if lab.numel() == 0:
        return logits.sum() * 0.0
    losses = []
    for c in range(k):
        fg = (lab == c).to(prob.dtype)
        if classes == "present" and fg.sum() == 0:
            continue
        errors = (fg - prob[:, c]).abs()
        errors_sorted, perm = errors.sort(descending=True)
        losses.append(torch.dot(errors_sorted, _lovasz_grad(fg[perm])))
    return torch.stack(losses).mean() if losses else logits.sum() * 0.0


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "ce": seg_cross_entropy, "ohem": ohem_cross_entropy, "dice": dice_loss, "focal": focal_loss,
    "lovasz": lovasz_softmax,
}


def build_loss(specs: list[dict[str, Any]] | None, ignore_index: int = 255,
               num_classes: int | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A weighted sum of losses from ``[{"name": "ce", "weight": 1.0, ...kwargs}]`` (default: plain CE).

    ``class_weight`` (a list, one per class) becomes the ``weight`` tensor of ce/ohem.
    """
    specs = specs or [{"name": "ce"}]
    parts = []
    for spec in specs:
        spec = dict(spec)
        name = spec.pop("name", None)
        if name not in LOSSES:
            raise ValueError(f"unknown loss {name!r} (known: {', '.join(LOSSES)})")
        w = float(spec.pop("weight", 1.0))
        if "class_weight" in spec:
            cw = torch.tensor(spec.pop("class_weight"), dtype=torch.float32)
            if num_classes is not None and cw.numel() != num_classes:
                raise ValueError(f"loss {name!r}: class_weight has {cw.numel()} values for {num_classes} classes")
            spec["weight"] = cw
        fn = LOSSES[name]
        options = set(inspect.signature(fn).parameters) - {"logits", "target", "ignore_index"}
        for key in spec:
            if key not in options:
                raise ValueError(f"loss {name!r}: unknown option {key!r} (known: {', '.join(sorted(options))})")
        parts.append((w, fn, spec))

    def total(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * fn(logits, target, ignore_index, **kw) for w, fn, kw in parts)

    return total
