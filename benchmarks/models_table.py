"""Write ``benchmarks/results/models.md``: parameters and FLOPs of every registered model at 512x1024.

Run: ``.venv/bin/python benchmarks/models_table.py [--out PATH] [--size H W]``. Models are built on the ``meta``
device (no memory, no compute), so the whole table takes seconds on any machine.

FLOPs convention: ``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per multiply-accumulate of
convolutions and matrix products and nothing for BN, activations, pooling or resizing. MMSeg's and mmcv's
``get_flops`` tables report multiply-accumulates (MACs) under the name "GFLOPs", so compare their numbers with the
GMACs column here (= GFLOPs / 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from engine.fileio import write_atomic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.models import build, list_models  # noqa: E402

# (model, backbone) rows: every registered model on R50 (MMSeg's reference configs), plus R18 and MobileNetV2.
BACKBONES = ("resnet50", "resnet18", "mobilenetv2")


def measure(name: str, backbone: str, size: tuple[int, int], num_classes: int = 19) -> dict[str, float | int | str]:
    """Params (with and without the auxiliary head) and forward FLOPs of one model for a 1x3xHxW input."""
    with torch.device("meta"):
        m = build(name, num_classes=num_classes, backbone=backbone).eval()
        x = torch.empty(1, 3, *size)
    total = sum(p.numel() for p in m.parameters())
    aux = sum(p.numel() for p in m.auxiliary_head.parameters()) if m.auxiliary_head is not None else 0
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = m(x)
    return {"model": name, "backbone": backbone, "stride": m.output_stride, "out": "x".join(map(str, out.shape[2:])),
            "params": total, "params_infer": total - aux, "flops": counter.get_total_flops()}


def render(rows: list[dict], size: tuple[int, int]) -> str:
    """Markdown table of ``rows``."""
    h, w = size
    lines = [
        f"# Model zoo: parameters and FLOPs at {h}x{w}",
        "",
        f"Written by `benchmarks/models_table.py` (19 classes, batch 1, input 3x{h}x{w}, MMSeg default widths).",
        "FLOPs from `torch.utils.flop_counter.FlopCounterMode`: 2 FLOPs per multiply-accumulate of convs/matmuls;",
        "BN, activations, pooling and resizes are not counted. MMSeg's `get_flops` reports MACs under the name",
        "\"GFLOPs\": compare those with the GMACs column.",
        "\"Params deploy\" excludes the training-only auxiliary head (what the exported ONNX graph holds).",
        "",
        "| Model | Backbone | Output stride | Logits | Params (M) | Params deploy (M) | GFLOPs | GMACs |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['backbone']} | {r['stride']} | {r['out']} | {r['params'] / 1e6:.2f} "
            f"| {r['params_infer'] / 1e6:.2f} | {r['flops'] / 1e9:.1f} | {r['flops'] / 2e9:.1f} |"
        )
    return "\n".join(lines) + "\n"




def main(argv: list[str] | None = None) -> int:
    """Measure every registered model and write the markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "models.md")
    ap.add_argument("--size", type=int, nargs=2, default=(512, 1024), metavar=("H", "W"))
    args = ap.parse_args(argv)
    size = tuple(args.size)
    rows = [measure(name, bb, size) for bb in BACKBONES for name in list_models()]
    text = render(rows, size)
    write_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
