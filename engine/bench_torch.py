"""``segrt bench``'s ``torch eager`` row: PyTorch doing the engine's work on the engine's device.

torch (and the training package, for ``load_trained``) is imported only inside these functions, so that
``engine.bench`` stays importable without torch.
"""

from __future__ import annotations

import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine.backends.torch import CHECKPOINT_SUFFIXES, read_program_meta

Step = Callable[[], dict[str, float]]


def is_checkpoint_file(path: str | Path) -> bool:
    """True when ``path`` looks like a segrt training checkpoint (``.pt``/``.pth``, not a torch.export archive);
    reads no tensors and needs no torch."""
    p = Path(path)
    if p.suffix.lower() not in CHECKPOINT_SUFFIXES or not p.is_file():
        return False
    return not (zipfile.is_zipfile(p) and read_program_meta(p) is not None)


def load_eager(ckpt: str | Path) -> tuple[Any, dict]:
    """The PyTorch module and metadata of a segrt checkpoint (``training.export.load_trained``)."""
    try:
        from training.export import load_trained
    except ImportError as e:
        raise ImportError(f"the torch eager row needs PyTorch and the segrt training package ({e}); "
                          f"pip install 'segrt[train]'") from None
    return load_trained(ckpt)


def eager_device(device: str) -> str:
    """The torch device the eager row runs on: ``device`` (an engine row's, or the ``--device`` asked for) with
    ``auto`` resolved; RuntimeError when it names CUDA and torch sees none."""
    import torch

    from engine.backends.torch import torch_device

    return str(torch_device(torch, device))


def torch_threads() -> int | None:
    """torch's intra-op thread count now (None when torch was never imported: no torch row ran)."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def torch_versions(devices: list[str]) -> dict[str, str]:
    """torch's version and, for the first CUDA device among ``devices``, the GPU's name (when torch is loaded)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    out = {"torch": str(torch.__version__)}
    cuda = [d for d in devices if str(d).startswith("cuda")]
    if cuda and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(torch.device(cuda[0]))
    return out


def torch_step(model: Any, meta: dict, img: np.ndarray, shape: tuple[int, int], out: dict[str, np.ndarray],
               threads: int | None = None, device: str = "cpu") -> Step:
    """PyTorch eager doing the engine's work on ``device``: resize to the network size ``shape`` + normalize,
    forward, ``F.interpolate`` + argmax, labels back on the host. On CUDA each stage ends with a synchronize.

    ``threads``: ``torch.set_num_threads`` (process-wide), so that torch and ONNX Runtime run with the same count.
    In ``segrt bench`` torch is imported after the engine, so its OpenMP runs with the engine's
    ``OMP_WAIT_POLICY=PASSIVE``: on the demo model at 512x1024 (2 cores) that cost torch ~3% against its default
    policy (separate processes: 346-354 vs 362-364 ms end to end).
    """
    import torch
    import torch.nn.functional as F

    if threads:
        torch.set_num_threads(int(threads))
    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    mean = torch.tensor(meta.get("mean", (123.675, 116.28, 103.53)), dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(meta.get("std", (58.395, 57.12, 57.375)), dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    align = bool(meta.get("align_corners", False))
    h, w = img.shape[:2]
    model = model.to(dev).eval()

    def step() -> dict[str, float]:
        with torch.inference_mode():
            t0 = time.perf_counter()
            x = torch.from_numpy(img).to(dev).permute(2, 0, 1)[None].float()
            if (h, w) != tuple(shape):
                x = F.interpolate(x, size=tuple(shape), mode="bilinear", align_corners=align)
            x = ((x - mean) / std).contiguous()
            sync()
            t1 = time.perf_counter()
            logits = model(x)
            if isinstance(logits, list | tuple):
                logits = logits[0]
            sync()
            t2 = time.perf_counter()
            up = F.interpolate(logits.float(), size=(h, w), mode="bilinear", align_corners=align)
            labels = up.argmax(1)[0]
            out["labels"] = labels.to(torch.uint8 if logits.shape[1] <= 255 else torch.int32).cpu().numpy()
            t3 = time.perf_counter()
        return {"pre": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "post": (t3 - t2) * 1e3,
                "end_to_end": (t3 - t0) * 1e3}

    return step
