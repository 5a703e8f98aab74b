"""Python face of the native kernels in ``engine._C`` (no torch needed).

Every function validates its arguments here and raises ``ValueError`` (``TypeError`` for a non-array) naming the
argument and the problem, so a bad call never reaches native code. Arrays are never copied or converted silently:
pass C-contiguous arrays of the documented dtype (``numpy.ascontiguousarray(x, dtype=...)``).

Align-corners policy of the project: ``align_corners=False`` by default everywhere; every op that resizes takes the
flag. Bilinear sampling is that of ``torch.nn.functional.interpolate(mode="bilinear", antialias=False)``.
"""

from __future__ import annotations

import ctypes
import math
import operator
import os
from collections.abc import Sequence
from types import ModuleType

import numpy as np

__all__ = [
    "colorize",
    "cuda_device_count",
    "has_cuda",
    "overlay",
    "preprocess",
    "resize_argmax",
    "resize_bilinear",
    "resize_bilinear_backward",
    "rgb_to_yuv420p",
    "set_num_threads",
]

MAX_SIDE = 1 << 20  # largest accepted output height / width (same bound as the native checks)
LABEL_DTYPES = (np.uint8, np.int32, np.int64)
RESIZE_DTYPES = (np.float32, np.float64)  # resize_bilinear and its backward: the output has the input's dtype


def _native() -> ModuleType:
    """The compiled extension, imported on first use so that ``import engine`` works without it."""
    try:
        from engine import _C
    except ImportError as err:  # pragma: no cover - depends on the build
        raise ImportError(
            "engine._C is not built; run `pip install --no-build-isolation --no-deps -e .` in the repository"
        ) from err
    return _C


_OPENMP_LIBS = ("libgomp.so.1", "libomp.so", "libomp.so.5", "libiomp5.so", "libomp.dylib", "libgomp.1.dylib")


def _openmp() -> ctypes.CDLL | None:
    """The OpenMP runtime engine._C is linked with (already loaded with it), or None where none is found."""
    _native()
    for name in _OPENMP_LIBS:
        try:
            return ctypes.CDLL(name, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_LOCAL)
        except OSError:
            continue
    return None


def set_num_threads(n: int) -> int:
    """Let the native kernels use at most ``n`` OpenMP threads when called from the *calling* thread; returns the
    previous value (0 where the OpenMP runtime cannot be reached, and nothing is changed).

    OpenMP keeps this setting per thread, so one thread of a pipeline can run its kernels single-threaded while
    another keeps every core (the default, from ``OMP_NUM_THREADS`` or the core count).
    """
    if isinstance(n, bool) or operator.index(n) < 1:
        raise ValueError(f"set_num_threads: n must be an int >= 1, got {n!r}")
    lib = _openmp()
    if lib is None:  # pragma: no cover - depends on how engine._C was built
        return 0
    prev = int(lib.omp_get_max_threads())
    lib.omp_set_num_threads(ctypes.c_int(int(n)))
    return prev


def _shape(a: np.ndarray) -> str:
    return str(tuple(a.shape))


def _array(where: str, name: str, a: object, dtypes: tuple[type, ...], ndim: int, layout: str) -> np.ndarray:
    """Check that ``a`` is a non-empty C-contiguous ndarray of one of ``dtypes`` with ``ndim`` dimensions."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{where}: {name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype not in [np.dtype(d) for d in dtypes]:
        names = " or ".join(np.dtype(d).name for d in dtypes)
        raise ValueError(f"{where}: {name} must have dtype {names}, got {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{where}: {name} must be {ndim}-D {layout}, got shape {_shape(a)}")
    if a.size == 0:
        raise ValueError(f"{where}: {name} must not be empty, got shape {_shape(a)}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{where}: {name} must be C-contiguous (use numpy.ascontiguousarray)")
    return a


def _side(where: str, name: str, v: object) -> int:
    """An output height or width: an integer in [1, MAX_SIDE]."""
    if isinstance(v, bool):
        raise TypeError(f"{where}: {name} must be an int, got bool")
    try:
        n = operator.index(v)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{where}: {name} must be an int, got {type(v).__name__}") from None
    if not 1 <= n <= MAX_SIDE:
        raise ValueError(f"{where}: {name} must be in [1, {MAX_SIDE}], got {n}")
    return n


def _triple(where: str, name: str, v: Sequence[float], nonzero: bool) -> list[float]:
    try:
        vals = [float(x) for x in np.asarray(v, dtype=np.float64).reshape(-1)]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} must be 3 numbers (R, G, B), got {v!r}") from None
    if len(vals) != 3:
        raise ValueError(f"{where}: {name} must have 3 values (R, G, B), got {len(vals)}")
    for x in vals:
        if not math.isfinite(x) or (nonzero and x == 0.0):
            raise ValueError(f"{where}: {name} values must be finite{' and nonzero' if nonzero else ''}, got {x}")
    return vals


def _out(where: str, out: np.ndarray | None, dtype: type, shape: tuple[int, ...],
         name: str = "out") -> np.ndarray | None:
    """Check a caller-provided output buffer: exact dtype and shape, C-contiguous, writeable."""
    if out is None:
        return None
    _array(where, name, out, (dtype,), len(shape), "buffer")
    if out.shape != shape:
        raise ValueError(f"{where}: {name} must have shape {shape}, got {_shape(out)}")
    if not out.flags.writeable:
        raise ValueError(f"{where}: {name} must be writeable")
    return out


def _labels_palette(where: str, labels: np.ndarray, palette: np.ndarray) -> None:
    _array(where, "labels", labels, LABEL_DTYPES, 2, "[H, W]")
    _array(where, "palette", palette, (np.uint8,), 2, "[K, 3]")
    if palette.shape[1] != 3:
        raise ValueError(f"{where}: palette must have shape (K, 3), got {_shape(palette)}")


def preprocess(
    img: np.ndarray,
    out_h: int,
    out_w: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    bgr: bool = False,
    align_corners: bool = False,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """uint8 ``[H, W, 3]`` image -> float32 ``[1, 3, out_h, out_w]`` network input, in one native pass.

    Bilinear resize of the float image (skipped when the size already matches), BGR->RGB when ``bgr``,
    ``(x - mean) / std`` with mean/std per RGB channel in 0..255 pixel units, and HWC -> CHW. ``out`` (float32
    ``[1, 3, out_h, out_w]``, C-contiguous) is written in place and returned, so a caller can reuse one buffer.
    """
    where = "preprocess"
    _array(where, "img", img, (np.uint8,), 3, "[H, W, 3]")
    if img.shape[2] != 3:
        raise ValueError(f"{where}: img must have 3 channels (H, W, 3), got shape {_shape(img)}")
    oh, ow = _side(where, "out_h", out_h), _side(where, "out_w", out_w)
    m, s = _triple(where, "mean", mean, False), _triple(where, "std", std, True)
    buf = _out(where, out, np.float32, (1, 3, oh, ow))
    return _native().preprocess(img, oh, ow, m, s, bool(bgr), bool(align_corners), buf)


def resize_bilinear(x: np.ndarray, out_h: int, out_w: int, *, align_corners: bool = False) -> np.ndarray:
    """float32/float64 ``[N, C, H, W]`` -> ``[N, C, out_h, out_w]`` of the same dtype, equal to
    ``F.interpolate(mode="bilinear")`` (float64 computes its weights and sums in float64, like PyTorch)."""
    where = "resize_bilinear"
    _array(where, "x", x, RESIZE_DTYPES, 4, "[N, C, H, W]")
    oh, ow = _side(where, "out_h", out_h), _side(where, "out_w", out_w)
    return _native().resize_bilinear(x, oh, ow, bool(align_corners))


def resize_bilinear_backward(grad_out: np.ndarray, in_h: int, in_w: int, *, align_corners: bool = False) -> np.ndarray:
    """Gradient of :func:`resize_bilinear`: float32/float64 ``[N, C, out_h, out_w]`` -> ``[N, C, in_h, in_w]``
    of the same dtype."""
    where = "resize_bilinear_backward"
    _array(where, "grad_out", grad_out, RESIZE_DTYPES, 4, "[N, C, H_out, W_out]")
    ih, iw = _side(where, "in_h", in_h), _side(where, "in_w", in_w)
    return _native().resize_bilinear_backward(grad_out, ih, iw, bool(align_corners))


def resize_argmax(
    logits: np.ndarray,
    out_h: int,
    out_w: int,
    *,
    align_corners: bool = False,
    return_scores: bool = False,
    out: np.ndarray | None = None,
    scores_out: np.ndarray | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Fused bilinear resize + argmax: float32 ``[B, C, H, W]`` -> labels ``[B, out_h, out_w]``.

    Labels are uint8 when ``C <= 255``, else int32. Same result as ``F.interpolate(...).argmax(1)`` (ties keep the
    first channel) without materialising the ``[C, out_h, out_w]`` logits. With ``return_scores`` also returns the
    winning interpolated logit as float32 ``[B, out_h, out_w]``. ``out`` (labels, that dtype) and ``scores_out``
    (float32) are C-contiguous ``[B, out_h, out_w]`` buffers written in place and returned, for callers that reuse
    their buffers.
    """
    where = "resize_argmax"
    _array(where, "logits", logits, (np.float32,), 4, "[B, C, H, W]")
    oh, ow = _side(where, "out_h", out_h), _side(where, "out_w", out_w)
    shape = (logits.shape[0], oh, ow)
    out = _out(where, out, np.uint8 if logits.shape[1] <= 255 else np.int32, shape)
    if scores_out is not None and not return_scores:
        raise ValueError(f"{where}: scores_out is only written with return_scores=True")
    scores_out = _out(where, scores_out, np.float32, shape, "scores_out")
    return _native().resize_argmax(logits, oh, ow, bool(align_corners), bool(return_scores), out, scores_out)


def overlay(
    frame: np.ndarray,
    labels: np.ndarray,
    palette: np.ndarray,
    alpha: float = 0.5,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Blend class colours onto a frame: ``floor((1 - alpha) * frame + alpha * palette[label] + 0.5)``.

    ``frame`` uint8 ``[H, W, 3]``; ``labels`` ``[H, W]`` uint8/int32/int64; ``palette`` uint8 ``[K, 3]``. Labels
    outside ``[0, K)`` (e.g. 255 = ignore) leave the pixel unchanged. ``out`` (may be ``frame`` itself) is reused.
    """
    where = "overlay"
    _array(where, "frame", frame, (np.uint8,), 3, "[H, W, 3]")
    if frame.shape[2] != 3:
        raise ValueError(f"{where}: frame must have 3 channels (H, W, 3), got shape {_shape(frame)}")
    _labels_palette(where, labels, palette)
    if labels.shape != frame.shape[:2]:
        raise ValueError(f"{where}: labels shape {_shape(labels)} must equal the frame's (H, W) = {frame.shape[:2]}")
    a = float(alpha)
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"{where}: alpha must be in [0, 1], got {alpha}")
    buf = _out(where, out, np.uint8, frame.shape)
    return _native().overlay(frame, labels, palette, a, buf)


def rgb_to_yuv420p(img: np.ndarray, y: np.ndarray | None = None, u: np.ndarray | None = None,
                   v: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 ``[H, W, 3]`` RGB (even H and W) -> I420 planes ``y [H, W]``, ``u`` and ``v [H/2, W/2]`` for encoders.

    BT.601 limited range (FFmpeg's swscale default, what decoders assume for untagged video), chroma from the mean of
    each 2x2 block, within 1 of the exact values. ``y``/``u``/``v``: uint8 planes to write (rows may be padded, as
    the planes of an ``av.VideoFrame``); allocated when None. 4-5x faster than swscale's rgb24 -> yuv420p.
    """
    where = "rgb_to_yuv420p"
    _array(where, "img", img, (np.uint8,), 3, "[H, W, 3]")
    h, w = img.shape[:2]
    if img.shape[2] != 3:
        raise ValueError(f"{where}: img must have 3 channels (H, W, 3), got shape {_shape(img)}")
    if h % 2 or w % 2:
        raise ValueError(f"{where}: img height and width must be even for 4:2:0, got shape {_shape(img)}")
    planes = [np.empty(shape, np.uint8) if a is None else a
              for a, shape in ((y, (h, w)), (u, (h // 2, w // 2)), (v, (h // 2, w // 2)))]
    for name, a, shape in zip("yuv", planes, ((h, w), (h // 2, w // 2), (h // 2, w // 2))):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{where}: {name} must be a numpy.ndarray, got {type(a).__name__}")
        if a.dtype != np.uint8 or a.shape != shape:
            raise ValueError(f"{where}: {name} must be uint8 with shape {shape}, got {a.dtype} {_shape(a)}")
        if a.strides[1] != 1 or not a.flags.writeable:
            raise ValueError(f"{where}: {name} must be writeable with contiguous rows")
    _native().rgb_to_yuv420p(img, *planes)
    return planes[0], planes[1], planes[2]


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """``palette[labels]`` as uint8 ``[H, W, 3]``; labels outside ``[0, K)`` become black."""
    _labels_palette("colorize", labels, palette)
    return _native().colorize(labels, palette)


def has_cuda() -> bool:
    """True when ``engine._C`` was compiled with the CUDA kernels (``engine._C.cuda``)."""
    return bool(_native().has_cuda())


def cuda_device_count() -> int:
    """Number of visible CUDA devices; 0 without a driver or GPU (never raises)."""
    return int(_native().cuda_device_count())
