"""Exceptions shared across the engine's modules."""

from __future__ import annotations


class MissingDependencyError(RuntimeError):
    """An optional runtime (TensorRT, CUDA) that a command needs is not installed on this machine."""
