"""Optimizers and learning-rate schedules: SGD / AdamW, head LR multiplier, poly or cosine with linear warm-up."""

from __future__ import annotations

import math

import torch


def param_groups(model: torch.nn.Module, lr: float, weight_decay: float, head_lr_mult: float = 1.0,
                 no_decay_norm: bool = False) -> list[dict]:
    """Backbone and head parameters as separate groups (heads at ``lr * head_lr_mult``); optionally no weight
    decay on normalisation and bias parameters. Each group remembers its ``lr_mult`` for the schedule."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = not name.startswith("backbone.")
        decay = not (no_decay_norm and (p.ndim <= 1))
        groups.setdefault((is_head, decay), []).append(p)
    out = []
    for (is_head, decay), params in groups.items():
        mult = head_lr_mult if is_head else 1.0
        out.append({"params": params, "lr": lr * mult, "lr_mult": mult,
                    "weight_decay": weight_decay if decay else 0.0})
    return out


def build_optimizer(model: torch.nn.Module, name: str, lr: float, weight_decay: float, momentum: float = 0.9,
                    head_lr_mult: float = 1.0) -> torch.optim.Optimizer:
    """``sgd`` (momentum) or ``adamw`` over backbone/head parameter groups."""
    if name == "sgd":
        return torch.optim.SGD(param_groups(model, lr, weight_decay, head_lr_mult), lr=lr, momentum=momentum,
                               weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(param_groups(model, lr, weight_decay, head_lr_mult, no_decay_norm=True), lr=lr,
                                 weight_decay=weight_decay)
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
