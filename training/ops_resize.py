"""Torch custom op for bilinear resize over ``engine._C``, with autograd, ``torch.compile``, ``torch.export`` and ONNX.

``resize_bilinear(x, size, align_corners=False)`` runs ``segrt::resize_bilinear`` and equals
``F.interpolate(x, size, mode="bilinear", align_corners=align_corners, antialias=False)``.

- CPU: the OpenMP kernel of ``csrc/kernels/resize.h`` through NumPy views of the tensors (no copy of a contiguous
  input). float32 and float64 run natively (float64 computes its weights and sums in float64, like PyTorch, so
  ``torch.autograd.gradcheck`` applies); float16/bfloat16 are computed in float32 and cast back.
- CUDA: the launchers of ``csrc/kernels/resize.cuh`` on the current stream. float32 and float16 run natively (float
  arithmetic); other float dtypes (float64, bfloat16) are computed in float32 and cast back.
- Backward: a second custom op, ``segrt::resize_bilinear_backward`` (CPU: deterministic scatter per plane; CUDA: an
  atomic-free gather). It is itself differentiable (its gradient is the forward resize), so double backward works.
- ONNX: under ``torch.onnx.export`` the function calls ``F.interpolate``, which exports as a standard ``Resize`` node
  that every runtime executes.

Align-corners policy of the project: ``align_corners=False`` by default everywhere (``ALIGN_CORNERS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.ops import MAX_SIDE

__all__ = ["ALIGN_CORNERS", "resize_bilinear"]

ALIGN_CORNERS = False  # the project's default for every op that resizes
_WHERE = "resize_bilinear"


def _native() -> Any:
    from engine import _C

    return _C


def _check(where: str, name: str, t: Tensor, h: Any, w: Any, hw_names: tuple[str, str]) -> None:
    """Rank, dtype and non-empty sizes of ``t`` and the target height/width; ValueError naming what was wrong.

    Sizes may be SymInts (torch.compile / export with dynamic shapes): those checks become runtime asserts. While
    Dynamo traces the Python function itself they are left to the op's fake implementation, which runs this check.
    """
    if not isinstance(t, Tensor):
        raise ValueError(f"{where}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 4:
        raise ValueError(f"{where}: {name} must be 4-D [N, C, H, W], got shape {tuple(t.shape)}")
    if not t.dtype.is_floating_point:
        raise ValueError(f"{where}: {name} must be a floating-point tensor, got {t.dtype}")
    for side, v in zip(hw_names, (h, w)):
        if isinstance(v, bool) or not isinstance(v, (int, torch.SymInt)):
            raise ValueError(f"{where}: {side} must be an int, got {type(v).__name__}")
    if torch.compiler.is_dynamo_compiling():
        return
    for i in range(4):
        torch._check_with(ValueError, t.shape[i] > 0,
                          lambda: f"{where}: {name} must not be empty, got shape {tuple(t.shape)}")
    for side, v in zip(hw_names, (h, w)):
        torch._check_with(ValueError, v >= 1, lambda: f"{where}: {side} must be >= 1, got {v}")  # noqa: B023
        torch._check_with(ValueError, v <= MAX_SIDE, lambda: f"{where}: {side} must be <= {MAX_SIDE}, got {v}")  # noqa: B023


def _host(t: Tensor) -> Any:
    """A NumPy view (float32, or float64 for float64) of a CPU tensor; copies only to convert or make contiguous."""
    dt = torch.float64 if t.dtype == torch.float64 else torch.float32
    return t.detach().to(dt).contiguous().numpy()


def _cuda(t: Tensor) -> tuple[Tensor, str]:
    """``t`` as a contiguous float16 or float32 tensor for the CUDA kernels, and the dtype name they take."""
    _require_cuda_build()
    if t.dtype == torch.float16:
        return t.contiguous(), "float16"
    return t.to(torch.float32).contiguous(), "float32"


def _require_cuda_build() -> None:
    if not hasattr(_native(), "cuda"):
        raise RuntimeError(f"{_WHERE}: engine._C was built without CUDA; rebuild it where nvcc is installed")


def _require_device(t: Tensor, where: str) -> None:
    if t.device.type not in ("cpu", "cuda"):
        raise ValueError(f"{where}: tensors on {t.device.type} are not supported (cpu or cuda)")


@torch.library.custom_op("segrt::resize_bilinear", mutates_args=())
def _resize(x: Tensor, out_h: int, out_w: int, align_corners: bool) -> Tensor:
    _check(_WHERE, "x", x, out_h, out_w, ("out_h", "out_w"))
    _require_device(x, _WHERE)
    if x.device.type == "cuda":
        x_, name = _cuda(x)
        n, c, h, w = x.shape
        out = torch.empty((n, c, out_h, out_w), dtype=x_.dtype, device=x.device)
        with torch.cuda.device(x.device):
            stream = torch.cuda.current_stream(x.device).cuda_stream
            _native().cuda.resize_bilinear(x_.data_ptr(), n, c, h, w, out.data_ptr(), out_h, out_w, align_corners,
                                           name, stream)
        return out.to(x.dtype)
    out = _native().resize_bilinear(_host(x), out_h, out_w, align_corners)
    return torch.from_numpy(out).to(x.dtype)


@_resize.register_fake
def _resize_fake(x: Tensor, out_h: int, out_w: int, align_corners: bool) -> Tensor:
    _check(_WHERE, "x", x, out_h, out_w, ("out_h", "out_w"))
    return x.new_empty((x.shape[0], x.shape[1], out_h, out_w))


@torch.library.custom_op("segrt::resize_bilinear_backward", mutates_args=())
def _resize_backward(grad: Tensor, in_h: int, in_w: int, align_corners: bool) -> Tensor:
    where = "resize_bilinear_backward"
    _check(where, "grad", grad, in_h, in_w, ("in_h", "in_w"))
    _require_device(grad, where)
    if grad.device.type == "cuda":
        g_, name = _cuda(grad)
        n, c, oh, ow = grad.shape
        out = torch.empty((n, c, in_h, in_w), dtype=g_.dtype, device=grad.device)
        with torch.cuda.device(grad.device):
            stream = torch.cuda.current_stream(grad.device).cuda_stream
            _native().cuda.resize_bilinear_backward(g_.data_ptr(), n, c, oh, ow, out.data_ptr(), in_h, in_w,
                                                    align_corners, name, stream)
        return out.to(grad.dtype)
    out = _native().resize_bilinear_backward(_host(grad), in_h, in_w, align_corners)
    return torch.from_numpy(out).to(grad.dtype)


@_resize_backward.register_fake
def _resize_backward_fake(grad: Tensor, in_h: int, in_w: int, align_corners: bool) -> Tensor:
    _check("resize_bilinear_backward", "grad", grad, in_h, in_w, ("in_h", "in_w"))
    return grad.new_empty((grad.shape[0], grad.shape[1], in_h, in_w))


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    # The op is linear: the backward needs only the other side's size and the sampling flag, no tensors.
    t, ctx.align_corners = inputs[0], inputs[3]
    ctx.hw = (t.shape[2], t.shape[3])


def _backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
    g = torch.ops.segrt.resize_bilinear_backward(grad.contiguous(), *ctx.hw, ctx.align_corners)
    return g, None, None, None


def _backward_backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
    g = torch.ops.segrt.resize_bilinear(grad.contiguous(), *ctx.hw, ctx.align_corners)
    return g, None, None, None


_resize.register_autograd(_backward, setup_context=_setup_context)
_resize_backward.register_autograd(_backward_backward, setup_context=_setup_context)


def _size(size: int | Sequence[int]) -> tuple[Any, Any]:
    if isinstance(size, (int, torch.SymInt)) and not isinstance(size, bool):
        return size, size
    if isinstance(size, Sequence) and not isinstance(size, str) and len(size) == 2:
        return size[0], size[1]
    raise ValueError(f"{_WHERE}: size must be an int or a pair (out_h, out_w), got {size!r}")


def resize_bilinear(x: Tensor, size: int | Sequence[int], align_corners: bool = ALIGN_CORNERS) -> Tensor:
    """Bilinear resize of ``x [N, C, H, W]`` to ``size`` (``out_h, out_w`` or one int for both) on native kernels.

    Equals ``F.interpolate(x, size, mode="bilinear", align_corners=align_corners, antialias=False)``; differentiable
    (also twice); works under ``torch.compile(fullgraph=True)`` and ``torch.export`` (one ``segrt.resize_bilinear``
    node). Under ``torch.onnx.export`` it is ``F.interpolate``, i.e. a standard ONNX ``Resize``. Bad input (rank,
    non-float dtype, empty tensor, size < 1) raises ``ValueError`` naming it.
    """
    out_h, out_w = _size(size)
    _check(_WHERE, "x", x, out_h, out_w, ("out_h", "out_w"))
    if not isinstance(align_corners, bool):
        raise ValueError(f"{_WHERE}: align_corners must be a bool, got {type(align_corners).__name__}")
    if torch.onnx.is_in_onnx_export():
        return F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=align_corners)
    return torch.ops.segrt.resize_bilinear(x, out_h, out_w, align_corners)
