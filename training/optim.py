"""Optimizers and learning-rate schedules: SGD / AdamW, head LR multiplier, layer-wise LR decay, poly or cosine with
linear warm-up."""

from __future__ import annotations

import math
import re

import torch

# Where a backbone parameter sits in depth, for layer-wise LR decay: transformer blocks (ViT ``layers.i``, MiT
# ``layers.s.1.b``, ConvNeXt ``stages.s.b``) are numbered in order; embeddings (patch embedding, position
# embedding, class token, the ConvNeXt stem) are depth 0.
_EMBED = re.compile(r"^backbone\.(patch_embed|pos_embed|cls_token|downsample_layers\.0\.|layers\.0\.0\.)")
_BLOCK = re.compile(r"^backbone\.(?:layers\.(\d+)\.1\.(\d+)|layers\.(\d+)|stages\.(\d+)\.(\d+))\.")


def layer_depths(model: torch.nn.Module) -> dict[str, int]:
    """Depth of every parameter: 0 for embeddings, 1..N for the backbone's blocks in order, N + 1 for the rest of
    the backbone (final norms, downsampling between stages takes the depth of the block after it) and the heads."""
    names = [n for n, _ in model.named_parameters()]
    keys: list[tuple[int, ...]] = []
    for n in names:
        m = _BLOCK.match(n)
        if m:
            parts = tuple(int(g) for g in m.groups() if g is not None)
            if parts not in keys:
                keys.append(parts)
    order = {k: i + 1 for i, k in enumerate(sorted(keys))}
    top = len(order) + 1
    depths = {}
    for n in names:
        m = _BLOCK.match(n)
        if _EMBED.match(n):
            depths[n] = 0
        elif m:
            depths[n] = order[tuple(int(g) for g in m.groups() if g is not None)]
        else:
            ds = re.match(r"^backbone\.downsample_layers\.(\d+)\.", n)  # ConvNeXt: before stage s's first block
            first = [order[k] for k in order if len(k) == 2 and ds and k[0] == int(ds.group(1))]
            depths[n] = min(first) if first else top
    return depths


def param_groups(model: torch.nn.Module, lr: float, weight_decay: float, head_lr_mult: float = 1.0,
                 no_decay_norm: bool = False, layer_decay: float | None = None) -> list[dict]:
    """Backbone and head parameters as separate groups (heads at ``lr * head_lr_mult``); optionally no weight
    decay on normalisation and bias parameters, and layer-wise LR decay (BEiT/ConvNeXt fine-tuning): a backbone
    parameter at depth ``d`` of ``N + 1`` (:func:`layer_depths`) gets ``layer_decay ** (N + 1 - d)``. Each group
    remembers its ``lr_mult`` for the schedule."""
    if layer_decay is not None and not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    depths = layer_depths(model) if layer_decay is not None else {}
    top = max(depths.values(), default=0)
    groups: dict[tuple[bool, float, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = not name.startswith("backbone.")
        decay = not (no_decay_norm and (p.ndim <= 1))
        mult = head_lr_mult if is_head else 1.0
        if layer_decay is not None and not is_head:
            mult *= layer_decay ** (top - depths[name])
        groups.setdefault((is_head, mult, decay), []).append(p)
    return [{"params": params, "lr": lr * mult, "lr_mult": mult, "weight_decay": weight_decay if decay else 0.0}
            for (_, mult, decay), params in groups.items()]


def build_optimizer(model: torch.nn.Module, name: str, lr: float, weight_decay: float, momentum: float = 0.9,
                    head_lr_mult: float = 1.0, layer_decay: float | None = None) -> torch.optim.Optimizer:
    """``sgd`` (momentum) or ``adamw`` over backbone/head parameter groups (see :func:`param_groups`)."""
    if name == "sgd":
        return torch.optim.SGD(param_groups(model, lr, weight_decay, head_lr_mult, layer_decay=layer_decay), lr=lr,
                               momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        groups = param_groups(model, lr, weight_decay, head_lr_mult, no_decay_norm=True, layer_decay=layer_decay)
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r} (known: sgd, adamw)")


def lr_at(it: int, total: int, base: float, schedule: str = "poly", power: float = 0.9, min_lr: float = 1e-4,
          warmup_iters: int = 0, warmup_ratio: float = 1e-6) -> float:
    """Learning rate at iteration ``it``: linear warm-up from ``base*warmup_ratio``, then poly or cosine decay."""
    if schedule not in ("poly", "cosine"):
        raise ValueError(f"unknown lr schedule {schedule!r} (known: poly, cosine)")
    frac = min(it, total) / max(total, 1)
    if schedule == "poly":
        lr = (base - min_lr) * (1 - frac) ** power + min_lr
    else:
        lr = min_lr + 0.5 * (base - min_lr) * (1 + math.cos(math.pi * frac))
    if it < warmup_iters:
        k = (1 - it / warmup_iters) * (1 - warmup_ratio)
        lr *= 1 - k
    return lr


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Apply ``lr`` to every group, scaled by the group's ``lr_mult``."""
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)
