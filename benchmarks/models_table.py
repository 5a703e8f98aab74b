"""Write ``benchmarks/results/models.md``: parameters and FLOPs of every registered model at 512x1024.

Run: ``.venv/bin/python benchmarks/models_table.py [--out PATH] [--size H W]`` (or ``segrt models`` for a quick look).
Models are built on the ``meta`` device (no memory, no compute), so the whole table takes seconds on any machine.
The FLOPs convention is :mod:`training.models.summary`'s: 2 FLOPs per multiply-accumulate of convs/matmuls; MMSeg's
``get_flops`` reports MACs under the name "GFLOPs", so compare those with the GMACs column.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.fileio import write_atomic  # noqa: E402
from training.models import list_models  # noqa: E402
from training.models.summary import measure, render_markdown  # noqa: E402

#: Extra rows beside each model's default backbone: the CNN classics on ResNet-18/101 and MobileNetV2, and the
#: other sizes of the transformer families, where those backbones are registered.
VARIANTS: dict[str, tuple[str, ...]] = {
    "fcn": ("resnet18", "resnet101", "mobilenetv2"),
    "pspnet": ("resnet18", "resnet101", "mobilenetv2"),
    "deeplabv3": ("resnet18", "resnet101", "mobilenetv2"),
    "deeplabv3plus": ("resnet18", "resnet101", "mobilenetv2"),
    "upernet": ("resnet18", "resnet101", "convnext-tiny", "convnext-small", "convnext-base"),
    "segformer": ("mit-b1", "mit-b2", "mit-b3", "mit-b4", "mit-b5"),
    "segmenter_mask": ("vit-small", "vit-base", "vit-large"),
    "segmenter_linear": ("vit-tiny", "vit-base"),
    "setr_naive": ("vit-base",),
    "lraspp": ("mobilenetv3-small",),
    "stdc": ("stdc2",),
    "bisenetv1": ("resnet50-v1b",),
    "linknet": ("resnet34-v1b",),
    "ccnet": ("resnet101",),
    "danet": ("resnet101",),
    "tv_fcn": ("resnet101-v1b",),
    "tv_deeplabv3": ("resnet101-v1b", "mobilenetv3-large"),
}


def rows(size: tuple[int, int]) -> list[dict]:
    """Every model on its default backbone, then the :data:`VARIANTS` whose backbones are registered."""
    names = list_models()
    out = [measure(name, size) for name in names]
    for name, backbones in VARIANTS.items():
        for bb in backbones if name in names else ():
            try:
                out.append(measure(name, size, backbone=bb))
            except ValueError as err:  # backbone family not registered (yet)
                if "unknown backbone" not in str(err):
                    raise
    return out


def main(argv: list[str] | None = None) -> int:
    """Measure every registered model and write the markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "models.md")
    ap.add_argument("--size", type=int, nargs=2, default=(512, 1024), metavar=("H", "W"))
    args = ap.parse_args(argv)
    size = tuple(args.size)
    h, w = size
    text = render_markdown(rows(size), f"Model zoo: parameters and FLOPs at {h}x{w}")
    text += (
        f"\nWritten by `benchmarks/models_table.py` (19 classes, batch 1, input 3x{h}x{w}, rounded up to the "
        "model's size divisor; MMSeg's default widths).\nFLOPs from `torch.utils.flop_counter.FlopCounterMode`: "
        "2 FLOPs per multiply-accumulate of convs/matmuls; norms, activations, pooling and resizes are not "
        "counted. MMSeg's `get_flops` reports MACs under the name \"GFLOPs\": compare those with the GMACs column. "
        "\"Params deploy\" excludes the training-only auxiliary heads (what the exported ONNX graph holds).\n"
    )
    write_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
