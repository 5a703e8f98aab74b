"""Model files for the benchmark scripts: segrt checkpoints built with their own initialisation (no pretrained
weights can be downloaded here; latency does not depend on the weight values), and segrt commands run with this
interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def write_checkpoint(path: Path, model: str, backbone: str, input_size: tuple[int, int],
                     backbone_kwargs: dict | None = None) -> Path:
    """``model`` on ``backbone``, 19 Cityscapes classes, no auxiliary head, seed 0, as a segrt checkpoint."""
    import torch

    from engine.palettes import CITYSCAPES_CLASSES
    from training.convert import save_model
    from training.models import build

    torch.manual_seed(0)
    net = build(model, num_classes=19, backbone=backbone, backbone_kwargs=backbone_kwargs, aux=False).eval()
    return save_model(net, path, classes=list(CITYSCAPES_CLASSES), input_size=input_size)


def segrt(*args: str) -> None:
    """Run ``segrt ARGS`` with this interpreter, echoing it; a failure stops the script."""
    print("+ segrt " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "engine.cli", *args], check=True)
