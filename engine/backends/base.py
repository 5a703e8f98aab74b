"""The interface every inference backend implements, and the input limits a backend can declare."""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from engine.metadata import ModelMeta

Range = tuple[int, int | None]  # (min, max); max None = unbounded


def _check_range(name: str, r: Range) -> Range:
    lo, hi = int(r[0]), None if r[1] is None else int(r[1])
    if lo < 1 or (hi is not None and hi < lo):
        raise ValueError(f"Limits.{name} must be (min >= 1, max >= min or None), got {r!r}")
    return lo, hi


@dataclass(frozen=True)
class Limits:
    """Input shapes a backend accepts: ``[B,3,H,W]`` with each of B, H, W within its ``(min, max)`` range.

    ``max`` None means unbounded. ONNX models with static dims, TensorRT plans (their optimization profile) and
    other fixed-shape runtimes declare them; the Predictor splits (or pads) batches and picks network sizes to fit.
    """

    batch: Range = (1, None)
    height: Range = (1, None)
    width: Range = (1, None)

    def __post_init__(self) -> None:
        for name in ("batch", "height", "width"):
            object.__setattr__(self, name, _check_range(name, getattr(self, name)))

    @classmethod
    def from_dims(cls, dims: list[int | None]) -> Limits:
        """Limits of a ``[B,3,H,W]`` input whose static dims are ints and dynamic ones None (ONNX style)."""
        b, _, h, w = ((d, d) if isinstance(d, int) and d > 0 else (1, None) for d in dims)
        return cls(b, h, w)

    @classmethod
    def from_profile(cls, mn: tuple[int, ...], mx: tuple[int, ...]) -> Limits:
        """Limits of a TensorRT profile's ``min`` and ``max`` ``[B,3,H,W]`` shapes."""
        return cls((mn[0], mx[0]), (mn[2], mx[2]), (mn[3], mx[3]))

    @property
    def max_batch(self) -> int | None:
        """Largest batch the backend takes in one call (None: any)."""
        return self.batch[1]

    @property
    def min_batch(self) -> int:
        """Smallest batch the backend takes (a TensorRT profile may start above 1)."""
        return self.batch[0]

    @property
    def fixed_hw(self) -> tuple[int, int] | None:
        """``(H, W)`` when the network input size is fixed (static dims, static profile), else None."""
        (hl, hh), (wl, wh) = self.height, self.width
        return (hl, wl) if hl == hh and wl == wh else None

    @property
    def unlimited(self) -> bool:
        """True when any ``[B,3,H,W]`` is accepted."""
        return self == Limits()

    def hw_error(self, h: int, w: int) -> str | None:
        """Why a network input of ``h x w`` is not accepted, or None when it is."""
        for name, v, (lo, hi) in (("height", h, self.height), ("width", w, self.width)):
            if v < lo or (hi is not None and v > hi):
                return f"network input {h}x{w}: {name} {v} is outside the model's range {lo}..{hi or 'any'}"
        return None

    def describe(self) -> str:
        """Human-readable ``B 1..1, H 512..512, W 1024..1024``."""
        return ", ".join(f"{n} {lo}..{hi or 'any'}" for n, (lo, hi) in zip("BHW", (self.batch, self.height,
                                                                                   self.width)))


def parse_device(device: str) -> tuple[str, int | None]:
    """``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` -> (kind, GPU index or None); ValueError otherwise. Each
    backend then checks what it can run on (a plan: CUDA only; torch and ONNX Runtime: whether CUDA is there)."""
    kind, colon, idx = str(device).partition(":")
    if kind not in ("auto", "cpu", "cuda") or (colon and (kind != "cuda" or not idx.isdigit())):
        raise ValueError(f"unknown device {device!r} (known: auto, cpu, cuda, cuda:N)")
    return kind, int(idx) if colon else None


def generic_classes(n: int) -> list[str]:
    """``["class0", ..., "class{n-1}"]``: names for a model file that carries none."""
    return [f"class{i}" for i in range(int(n))]


def reconcile_classes(meta: ModelMeta, channels: int | None, source: str, warn: bool = True) -> None:
    """Check the model's logit channel count against its metadata classes (in place).

    No classes in the metadata: generic names ``class0..N-1`` from ``channels`` (with a warning when ``warn``). A
    count that differs: ValueError naming both numbers. ``channels`` None (not known before a run): nothing to do.
    """
    if channels is None or channels <= 0:
        return
    if not meta.classes:
        if warn:
            warnings.warn(f"{source}: the model's metadata names no classes; using class0..class{channels - 1} "
                          f"from its {channels} output channels", stacklevel=3)
        meta.classes = generic_classes(channels)
    elif len(meta.classes) != channels:
        raise ValueError(f"{source}: the model outputs {channels} logit channels but its metadata lists "
                         f"{len(meta.classes)} classes; export it again with matching classes")


class Backend(ABC):
    """Runs the network only: normalized NCHW float32 in, low-resolution logits NCHW float32 out.

    ``limits`` says which ``[B,3,H,W]`` the backend accepts (default: any); ``out_channels`` is the logit
    channel count when the file states it (None: known after a run).
    """

    name: str = "base"
    meta: ModelMeta
    limits: Limits = Limits()
    out_channels: int | None = None

    @abstractmethod
    def infer(self, x: np.ndarray) -> np.ndarray:
        """Run the network on a [B,3,H,W] float32 batch and return fresh [B,K,h,w] float32 logits the caller owns."""

    def infer_scratch(self, x: np.ndarray) -> np.ndarray:
        """Like :meth:`infer`, but the result may be an output buffer the backend reuses.

        It is valid until the next call on this backend (which may overwrite it): use it at once or copy it.
        Backends with reusable output buffers (ONNX Runtime IO binding, TensorRT host buffers) override this.
        """
        return self.infer(x)

    def warmup(self, shape: tuple[int, int, int, int]) -> None:
        """Run once on zeros so that first-call costs are not measured."""
        self.infer(np.zeros(shape, np.float32))
