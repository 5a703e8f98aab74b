"""Threads and OS priority of the video pipeline's stages around inference (see ``engine.pipeline``)."""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from engine.video import PRESET, VideoWriter


@dataclass(frozen=True)
class StageThreads:
    """Threads of the stages around inference (0: the library's own choice, about one per core).

    ``decode``: FFmpeg decoder threads; ``native``: OpenMP threads of the native kernels (pre, post and the
    writer's colour conversion; set for those stage threads only); ``encode``: encoder threads; ``preset``: the
    libx264 preset of the output; ``nice``: how much to lower the OS priority of the pipeline's stage threads
    around inference (Linux, per thread; 0: unchanged; see :func:`default_threads`).
    """

    decode: int = 1
    native: int = 1
    encode: int = 1
    preset: str | None = PRESET
    nice: int = 0

    def __post_init__(self) -> None:
        for k in ("decode", "native", "encode"):
            if int(getattr(self, k)) < 0:
                raise ValueError(f"StageThreads.{k} must be >= 0, got {getattr(self, k)}")

    def apply_nice(self) -> None:
        """Lower the OS priority of the calling thread by ``nice`` (Linux: per thread; elsewhere nothing). Called
        from the pipeline's own stage threads around inference only, which end with the run."""
        if self.nice > 0 and hasattr(os, "setpriority") and sys.platform.startswith("linux"):
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(
                    os.PRIO_PROCESS, threading.get_native_id()) + int(self.nice))
            except OSError:  # not allowed here: run at the normal priority
                pass

    def apply_native(self) -> None:
        """Limit the native kernels called from the current thread to ``native`` threads (0: leave as is)."""
        if self.native > 0:
            from engine import ops

            ops.set_num_threads(self.native)

    def apply_decode(self, source: object) -> None:
        """Set the decoder threads of ``source`` (before its first frame; sources without a decoder are skipped)."""
        set_threads = getattr(source, "set_threads", None)
        if set_threads is not None:
            set_threads(self.decode)

    def writer(self, path: str | Path, fps: float | Fraction, width: int, height: int) -> VideoWriter:
        """A :class:`VideoWriter` with these encoder settings."""
        return VideoWriter(path, fps, width, height, preset=self.preset, threads=self.encode)


NICE = 10  # how much lower the stages around inference run, where inference threads block when idle


def default_threads(predictor: object) -> StageThreads:
    """The stage threads :class:`VideoPipeline` uses unless given some: one thread each, and the stages around
    inference at a lower OS priority (``nice`` +10) when inference blocks while it waits (ONNX Runtime with
    ``spin=False``, as ``segrt video`` builds it, TensorRT and torch on a GPU). Then the scheduler runs those short
    stages in the gaps inference leaves instead of in the middle of its parallel sections: measured on 2 cores,
    pipeline / inference alone 0.97x against 0.89x at the normal priority. Threads that spin-wait (ONNX Runtime's
    default, torch's OpenMP on the CPU) leave no gaps, so there the priority stays normal."""
    be = getattr(predictor, "backend", None)
    name = getattr(be, "name", "")
    spins = (name == "onnxruntime" and getattr(be, "spin", None) is not False) or (
        name == "torch" and str(getattr(be, "device", "cpu")) == "cpu")
    return StageThreads(nice=0 if spins else NICE)


__all__ = ["NICE", "StageThreads", "default_threads"]
