"""Atomic checkpoint writes and safe loads (weights_only=True: checkpoint files are untrusted)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from engine.fileio import atomic_path


def save_atomic(obj: Any, path: str | Path) -> Path:
    """torch.save into a temporary file beside ``path``, then rename it into place."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True``; clear errors for missing or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a segrt checkpoint (no 'state_dict' entry)")
    return ckpt
