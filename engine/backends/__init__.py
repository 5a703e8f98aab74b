"""Inference backends: one small class per runtime, same interface (see base.Backend)."""

from __future__ import annotations

from pathlib import Path

from engine.backends.base import Backend


def open_backend(path: str | Path, backend: str = "auto", device: str = "auto", threads: int | None = None) -> Backend:
    """Open ``path`` with the backend its suffix (or ``backend``) names."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"model file not found: {p}")
    if not p.is_file():
        raise ValueError(f"model path is not a file: {p}")
    name = backend
    if name == "auto":
        suffix = p.suffix.lower()
        if suffix == ".onnx":
            name = "onnxruntime"
        elif suffix in (".plan", ".engine"):
            name = "tensorrt"
        else:
            raise ValueError(f"{p}: cannot tell the backend from the suffix {suffix!r} (supported: .onnx)")
    if name in ("onnxruntime", "ort"):
        from engine.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(p, device=device, threads=threads)
    if name in ("tensorrt", "trt"):
        from engine.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(p, device=device, threads=threads)
    raise ValueError(f"unknown backend {backend!r} (known: auto, onnxruntime)")


__all__ = ["Backend", "open_backend"]
