"""Parameters and FLOPs of registered models, measured on the ``meta`` device (no memory, no compute).

FLOPs convention: ``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per multiply-accumulate of
convolutions and matrix products and nothing for norms, activations, pooling or resizing. MMSeg's and mmcv's
``get_flops`` report multiply-accumulates (MACs) under the name "GFLOPs": compare those with ``gmacs``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .registry import build, list_models, model_info


def _aux_params(model: nn.Module) -> int:
    aux = getattr(model, "auxiliary_head", None)
    return 0 if aux is None else sum(p.numel() for p in aux.parameters())


def measure(
    name: str, size: tuple[int, int] = (512, 1024), num_classes: int = 19, **build_kwargs: Any
) -> dict[str, Any]:
    """Params (with and without the auxiliary heads), forward GFLOPs/GMACs and logits size of one model for a
    ``1 x 3 x H x W`` input; ``build_kwargs`` go to :func:`training.models.build` (``backbone=...``)."""
    with torch.device("meta"):
        m = build(name, num_classes=num_classes, **build_kwargs).eval()
        d = m.size_divisor
        h, w = (-(-v // d) * d for v in size)
        x = torch.empty(1, 3, h, w)
    total = sum(p.numel() for p in m.parameters())
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = m(x)
    backbone = build_kwargs.get("backbone") or model_info(name)["defaults"].get("backbone", "")
    flops = counter.get_total_flops()
    return {
        "model": name, "backbone": backbone, "input": f"{h}x{w}", "stride": m.output_stride,
        "logits": "x".join(str(int(s)) for s in out.shape[2:]), "params": total,
        "params_deploy": total - _aux_params(m), "gflops": flops / 1e9, "gmacs": flops / 2e9,
    }


def table(size: tuple[int, int] = (512, 1024), num_classes: int = 19, names: list[str] | None = None) -> list[dict]:
    """:func:`measure` for every registered model (or ``names``) on its default backbone."""
    return [measure(n, size, num_classes) for n in (names or list_models())]


def render_markdown(rows: list[dict], title: str) -> str:
    """A markdown table of :func:`measure` rows."""
    lines = [
        f"# {title}", "",
        "| Model | Backbone | Input | Output stride | Logits | Params (M) | Params deploy (M) | GFLOPs | GMACs |",
        "|---|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['backbone']} | {r['input']} | {r['stride']} | {r['logits']} "
            f"| {r['params'] / 1e6:.2f} | {r['params_deploy'] / 1e6:.2f} | {r['gflops']:.1f} | {r['gmacs']:.1f} |"
        )
    return "\n".join(lines) + "\n"
