"""Export a trained segmentor as a ``torch.export`` program (``.pt2``) for the engine's torch backend.

The program takes ``[B,3,H,W]`` float32 with dynamic batch, height and width and returns the decode head's
low-resolution logits, like the ONNX export. The segrt ModelMeta travels inside the archive as the JSON extra file
``engine.backends.torch.META_FILE``, so ``engine.Predictor("model.pt2")`` needs nothing else.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from engine.backends.torch import META_FILE
from engine.fileio import atomic_path
from engine.metadata import ModelMeta, round_up


def save_program(model: torch.nn.Module, meta: dict[str, Any] | ModelMeta, out: str | Path,
                 sample_size: tuple[int, int] = (256, 512)) -> Path:
    """``torch.export`` ``model`` (eval mode) with dynamic batch/H/W and write ``out`` atomically with its metadata."""
    out = Path(out)
    meta = meta if isinstance(meta, ModelMeta) else ModelMeta(**meta)
    meta.size_divisor = int(getattr(model, "size_divisor", 1))
    sample_size = round_up(sample_size, meta.size_divisor)
    model = model.eval()
    # Batch 2: a sample batch of 1 would be specialised (0/1 specialisation) and the batch could not vary.
    x = torch.randn(2, 3, *sample_size)
    dyn = torch.export.Dim.DYNAMIC
    with torch.no_grad():
        program = torch.export.export(model, (x,), dynamic_shapes=({0: dyn, 2: dyn, 3: dyn},))
    extra = {META_FILE: json.dumps(asdict(meta))}
    with atomic_path(out) as tmp:  # the temporary name keeps the .pt2 suffix torch.export.save expects
        torch.export.save(program, str(tmp), extra_files=extra)
    return out


def export_program(ckpt: str | Path, out_path: str | Path) -> Path:
    """Checkpoint -> ``.pt2`` exported program with segrt metadata; sample size from the training input size."""
    from training.export import load_trained

    model, meta = load_trained(ckpt)
    size = tuple(meta.get("input_size") or (256, 512))  # any size works: H and W are dynamic
    return save_program(model, meta, out_path, sample_size=size)
