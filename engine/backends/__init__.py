"""Inference backends: one small class per runtime, same interface (see base.Backend)."""

from __future__ import annotations

from pathlib import Path

from engine.backends.base import Backend

SUFFIXES = {".onnx": "onnxruntime", ".plan": "tensorrt", ".engine": "tensorrt", ".pt": "torch", ".pth": "torch",
            ".pt2": "torch"}
BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")


def open_backend(path: str | Path, backend: str = "auto", device: str = "auto", threads: int | None = None,
                 spin: bool | None = None, **options: object) -> Backend:
    """Open ``path`` with the backend its suffix (or ``backend``) names.

    ``spin``: whether ONNX Runtime's idle threads spin-wait (None: its default); the other runtimes have no
    such setting and ignore it.

    ``options`` go to the torch backend (``precision``, ``compile``, ``cuda_graphs``); the other runtimes take
    none (a TensorRT engine's precision is fixed when it is built).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"model file not found: {p}")
    if not p.is_file():
        raise ValueError(f"model path is not a file: {p}")
    name = backend
    if name == "auto":
        suffix = p.suffix.lower()
        if suffix not in SUFFIXES:
            raise ValueError(f"{p}: cannot tell the backend from the suffix {suffix!r} "
                             f"(supported: {', '.join(SUFFIXES)}; or pass backend=)")
        name = SUFFIXES[suffix]
    if options and name not in ("torch", "pytorch"):
        raise ValueError(f"options {sorted(options)} apply to the torch backend only, not {name}")
    if name in ("onnxruntime", "ort"):
        from engine.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(p, device=device, threads=threads, spin=spin)
    if name in ("tensorrt", "trt"):
        from engine.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(p, device=device, threads=threads)
    if name in ("torch", "pytorch"):
        from engine.backends.torch import TorchBackend  # imports torch itself, lazily (ImportError names the extra)

        return TorchBackend(p, device=device, threads=threads, **options)  # type: ignore[arg-type]
    raise ValueError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")


__all__ = ["Backend", "open_backend"]
