"""Torch custom ops over ``engine._C``: criss-cross attention (CCNet) with autograd, compile, export and ONNX.

``criss_cross_attention(q, k, v)`` runs ``segrt::criss_cross_attention`` (CPU: the OpenMP kernel through NumPy views
of the tensors, no copies; CUDA: the pointer launchers on the current stream). Its backward is a second custom op,
``segrt::criss_cross_attention_backward``, that recomputes the attention weights instead of storing the
``[B, H, W, H + W - 1]`` matrix. Semantics: ``docs/criss_cross_attention.md``; ``criss_cross_attention_reference`` is
the pure-PyTorch twin (and the baseline the kernels are measured against).

ONNX: under ``torch.onnx.export`` the function decomposes into the reference (standard ONNX ops, dynamic H/W), so
the model runs in any runtime. ``export_onnx(..., target="tensorrt")`` instead keeps the op and emits one node
``segrt::CrissCrossAttention(q, k, v)`` for our TensorRT plugin.

Bilinear resize (``segrt::resize_bilinear``) lives in :mod:`training.ops_resize` and is re-exported here as
``resize_bilinear``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from training.ops_resize import ALIGN_CORNERS, resize_bilinear

__all__ = [
    "ALIGN_CORNERS",
    "ONNX_DOMAIN",
    "criss_cross_attention",
    "criss_cross_attention_reference",
    "export_onnx",
    "onnx_target",
    "onnx_translation_table",
    "resize_bilinear",
]

ONNX_DOMAIN = "segrt"
_TARGETS = ("onnx", "tensorrt")
_state = {"target": "onnx"}


def _check(q: Tensor, k: Tensor, v: Tensor) -> None:
    """Shapes, dtypes and devices of the op's inputs; ValueError naming the argument."""
    where = "criss_cross_attention"
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 4:
            raise ValueError(f"{where}: {name} must be 4-D [B, C, H, W], got shape {tuple(t.shape)}")
        if not t.dtype.is_floating_point:
            raise ValueError(f"{where}: {name} must be a floating-point tensor, got {t.dtype}")
        if t.dtype != q.dtype or t.device != q.device:
            raise ValueError(f"{where}: {name} must have the dtype and device of q ({q.dtype}, {q.device}), "
                             f"got {t.dtype}, {t.device}")
    torch._check_with(ValueError, k.shape[0] == q.shape[0] and k.shape[2:] == q.shape[2:],
                      lambda: f"{where}: k must match q in B, H, W: q {tuple(q.shape)}, k {tuple(k.shape)}")
    torch._check_with(ValueError, k.shape[1] == q.shape[1],
                      lambda: f"{where}: k must have the channels Cq of q: q {tuple(q.shape)}, k {tuple(k.shape)}")
    torch._check_with(ValueError, v.shape[0] == q.shape[0] and v.shape[2:] == q.shape[2:],
                      lambda: f"{where}: v must match q in B, H, W: q {tuple(q.shape)}, v {tuple(v.shape)}")


def _native() -> Any:
    from engine import _C

    return _C


def _host_dtype(t: Tensor) -> torch.dtype:
    """float64 stays float64 (gradcheck); every other float dtype runs the float32 kernel on the CPU."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _np(t: Tensor, dtype: torch.dtype) -> Any:
    return t.detach().to(dtype).contiguous().numpy()


def _cuda_dtype(t: Tensor) -> tuple[torch.dtype, str]:
    return (torch.float16, "float16") if t.dtype == torch.float16 else (torch.float32, "float32")


def _dims(q: Tensor, v: Tensor) -> tuple[int, int, int, int, int]:
    return q.shape[0], q.shape[1], v.shape[1], q.shape[2], q.shape[3]


@torch.library.custom_op("segrt::criss_cross_attention", mutates_args=())
def _cca(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    _check(q, k, v)
    if q.numel() == 0 or v.numel() == 0:
        raise ValueError(f"criss_cross_attention: inputs must not be empty, got q {tuple(q.shape)}, v {tuple(v.shape)}")
    if q.device.type == "cuda":
        dt, name = _cuda_dtype(q)
        q_, k_, v_ = (t.to(dt).contiguous() for t in (q, k, v))
        b, cq, c, h, w = _dims(q, v)
        out = torch.empty_like(v_)
        lse = torch.empty((b, h, w), dtype=torch.float32, device=q.device)
        with torch.cuda.device(q.device):
            stream = torch.cuda.current_stream(q.device).cuda_stream
            _native().cuda.criss_cross_attention_forward(q_.data_ptr(), k_.data_ptr(), v_.data_ptr(), out.data_ptr(),
                                                         lse.data_ptr(), b, cq, c, h, w, name, stream)
        return out.to(v.dtype)
    dt = _host_dtype(q)
    out, _ = _native().criss_cross_attention_forward(_np(q, dt), _np(k, dt), _np(v, dt))
    return torch.from_numpy(out).to(v.dtype)


@_cca.register_fake
def _cca_fake(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    _check(q, k, v)
    return torch.empty_like(v, memory_format=torch.contiguous_format)


@register_flop_formula(torch.ops.segrt.criss_cross_attention)
def _cca_flops(q_shape: Any, k_shape: Any, v_shape: Any, *args: Any, **kwargs: Any) -> int:
    """FLOPs (2 per multiply-accumulate) of criss-cross attention: each pixel scores its H + W - 1 neighbours with
    ``Cq``-channel dot products and sums as many ``C``-channel values."""
    b, cq, h, w = q_shape
    return 2 * b * h * w * (h + w - 1) * (cq + v_shape[1])


@torch.library.custom_op("segrt::criss_cross_attention_backward", mutates_args=())
def _cca_backward(grad: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    if q.device.type == "cuda":
        dt, name = _cuda_dtype(q)
        g_, q_, k_, v_, o_ = (t.to(dt).contiguous() for t in (grad, q, k, v, out))
        b, cq, c, h, w = _dims(q, v)
        gq, gk, gv = torch.empty_like(q_), torch.empty_like(k_), torch.empty_like(v_)
        ws = torch.empty((2, b, h, w), dtype=torch.float32, device=q.device)
        with torch.cuda.device(q.device):
            stream = torch.cuda.current_stream(q.device).cuda_stream
            _native().cuda.criss_cross_attention_backward(
                q_.data_ptr(), k_.data_ptr(), v_.data_ptr(), o_.data_ptr(), 0, g_.data_ptr(), gq.data_ptr(),
                gk.data_ptr(), gv.data_ptr(), ws.data_ptr(), b, cq, c, h, w, name, stream)
        return gq.to(q.dtype), gk.to(k.dtype), gv.to(v.dtype)
    dt = _host_dtype(q)
    gq, gk, gv = _native().criss_cross_attention_backward(_np(q, dt), _np(k, dt), _np(v, dt), _np(out, dt),
                                                          _np(grad, dt), None)
    return torch.from_numpy(gq).to(q.dtype), torch.from_numpy(gk).to(k.dtype), torch.from_numpy(gv).to(v.dtype)


@_cca_backward.register_fake
def _cca_backward_fake(grad: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return tuple(torch.empty_like(t, memory_format=torch.contiguous_format) for t in (q, k, v))


def _setup_context(ctx: Any, inputs: tuple[Tensor, ...], output: Tensor) -> None:
    ctx.save_for_backward(*inputs, output)


def _backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    q, k, v, out = ctx.saved_tensors
    return torch.ops.segrt.criss_cross_attention_backward(grad, q, k, v, out)


_cca.register_autograd(_backward, setup_context=_setup_context)


def criss_cross_attention_reference(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Pure-PyTorch criss-cross attention (mmcv's einsum formulation); exports to standard ONNX ops, dynamic H/W."""
    h = q.shape[2]
    idx = torch.arange(h, device=q.device)
    centre = (idx[:, None] == idx[None, :])[None, None]  # [1, 1, H(i), H(k)], built from the shape
    energy_h = torch.einsum("bchw,bciw->bwhi", q, k).masked_fill(centre, float("-inf"))  # [B, W, H, H]
    energy_w = torch.einsum("bchw,bchj->bhwj", q, k)  # [B, H, W, W]
    attn = torch.softmax(torch.cat([energy_h.permute(0, 2, 1, 3), energy_w], dim=-1), dim=-1)
    attn_h = attn[..., :h].permute(0, 2, 1, 3)  # [B, W, H, H]
    attn_w = attn[..., h:]  # [B, H, W, W]
    return torch.einsum("bciw,bwhi->bchw", v, attn_h) + torch.einsum("bchj,bhwj->bchw", v, attn_w)


def criss_cross_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Criss-cross attention of ``q, k [B, Cq, H, W]`` over ``v [B, C, H, W]`` -> ``[B, C, H, W]`` (native kernels).

    Differentiable; works under ``torch.compile(fullgraph=True)`` and ``torch.export``. Under ``torch.onnx.export``
    it decomposes into :func:`criss_cross_attention_reference` unless the target is ``"tensorrt"``.
    """
    if _state["target"] != "tensorrt" and torch.onnx.is_in_onnx_export():
        return criss_cross_attention_reference(q, k, v)
    return torch.ops.segrt.criss_cross_attention(q, k, v)


@contextlib.contextmanager
def onnx_target(target: str) -> Iterator[None]:
    """Within the block, ONNX export emits criss-cross attention for ``target``: ``"onnx"`` or ``"tensorrt"``."""
    if target not in _TARGETS:
        raise ValueError(f"onnx_target: target must be one of {_TARGETS}, got {target!r}")
    previous, _state["target"] = _state["target"], target
    try:
        yield
    finally:
        _state["target"] = previous


def _trt_schema() -> Any:
    """OpSchema of ``segrt::CrissCrossAttention``: (q, k, v) -> out, T in float/float16 (not registered globally)."""
    from onnx.defs import OpSchema

    param = OpSchema.FormalParameter
    return OpSchema(
        "CrissCrossAttention", ONNX_DOMAIN, 1,
        doc="Criss-cross attention (CCNet); semantics in docs/criss_cross_attention.md.",
        inputs=[param("q", "T"), param("k", "T"), param("v", "T")], outputs=[param("out", "T")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "float tensors")],
    )


def _trt_criss_cross_attention(q: Any, k: Any, v: Any) -> Any:
    import onnxscript

    op = onnxscript.values.Op(onnxscript.values.Opset(ONNX_DOMAIN, 1), "CrissCrossAttention", _trt_schema())
    return op(q, k, v)


def onnx_translation_table() -> dict[Any, Any]:
    """``custom_translation_table`` for ``torch.onnx.export``: our op -> node ``segrt::CrissCrossAttention``."""
    return {torch.ops.segrt.criss_cross_attention.default: _trt_criss_cross_attention}


def export_onnx(model: torch.nn.Module, args: tuple[Any, ...], f: str | Path | None = None, *, target: str = "onnx",
                **kwargs: Any) -> Any:
    """``torch.onnx.export(model, args, f, dynamo=True, opset_version=18, **kwargs)`` for ``target``.

    ``"onnx"``: standard ONNX ops only (runs everywhere). ``"tensorrt"``: criss-cross attention becomes the custom
    node ``segrt::CrissCrossAttention`` (domain ``segrt``), which only a TensorRT engine with our plugin can run.
    Returns the ``ONNXProgram``.
    """
    if target not in _TARGETS:
        raise ValueError(f"export_onnx: target must be one of {_TARGETS}, got {target!r}")
    kwargs.setdefault("opset_version", 18)
    if target == "tensorrt":
        table = dict(kwargs.pop("custom_translation_table", None) or {})
        table.update(onnx_translation_table())
        kwargs["custom_translation_table"] = table
    with onnx_target(target):
        return torch.onnx.export(model, args, f, dynamo=True, **kwargs)
