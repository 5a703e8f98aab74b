"""Criss-cross attention (CCNet) over ``engine._C``: NumPy in and out, no torch needed.

The op only (no 1x1 convolutions, no gamma), with the semantics of mmcv's ``CrissCrossAttention`` written down in
``docs/criss_cross_attention.md``: ``q, k`` are ``[B, Cq, H, W]``, ``v`` is ``[B, C, H, W]``; every pixel attends to
the ``H - 1`` other pixels of its column and the ``W`` pixels of its row (itself included once) with one joint
softmax. Arrays are never copied or converted silently: pass C-contiguous float32 (or float64) arrays.
"""

from __future__ import annotations

import numpy as np

from engine.ops import _array as ops_array
from engine.ops import _native

__all__ = [
    "criss_cross_attention",
    "criss_cross_attention_backward",
    "criss_cross_attention_reference",
]

def _array(where: str, name: str, a: object, ndim: int, layout: str, dtype: np.dtype | None) -> np.ndarray:
    """engine.ops' array check, float32/float64; with ``dtype``, also equal to q's."""
    if dtype is not None and isinstance(a, np.ndarray) and a.dtype != dtype:
        raise ValueError(f"{where}: {name} must have the dtype of q ({dtype}), got {a.dtype}")
    return ops_array(where, name, a, (np.float32, np.float64), ndim, layout)


def _check_qkv(where: str, q: object, k: object, v: object) -> None:
    """q, k ``[B, Cq, H, W]`` and v ``[B, C, H, W]`` of one float dtype with matching B, H, W and Cq."""
    q = _array(where, "q", q, 4, "[B, Cq, H, W]", None)
    k = _array(where, "k", k, 4, "[B, Cq, H, W]", q.dtype)
    v = _array(where, "v", v, 4, "[B, C, H, W]", q.dtype)
    b, cq, h, w = q.shape
    if (k.shape[0], k.shape[2], k.shape[3]) != (b, h, w):
        raise ValueError(f"{where}: k must match q in B, H, W: q {q.shape}, k {k.shape}")
    if k.shape[1] != cq:
        raise ValueError(f"{where}: k must have the channels Cq of q: q {q.shape}, k {k.shape}")
    if (v.shape[0], v.shape[2], v.shape[3]) != (b, h, w):
        raise ValueError(f"{where}: v must match q in B, H, W: q {q.shape}, v {v.shape}")


def criss_cross_attention(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, *, return_lse: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Criss-cross attention ``[B, C, H, W]`` of ``q, k [B, Cq, H, W]`` over ``v [B, C, H, W]`` (native, OpenMP).

    With ``return_lse`` also returns the log-sum-exp of each pixel's ``H + W - 1`` energies, ``[B, H, W]``, which
    :func:`criss_cross_attention_backward` can reuse instead of recomputing.
    """
    _check_qkv("criss_cross_attention", q, k, v)
    out, lse = _native().criss_cross_attention_forward(q, k, v)
    return (out, lse) if return_lse else out


def criss_cross_attention_backward(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    out: np.ndarray,
    grad_out: np.ndarray,
    lse: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(grad_q, grad_k, grad_v)`` of :func:`criss_cross_attention` given its ``out`` and ``grad_out``.

    ``lse`` is the forward's second output (``return_lse=True``); when None it is recomputed (one cheap pass).
    """
    where = "criss_cross_attention_backward"
    _check_qkv(where, q, k, v)
    for name, a in (("out", out), ("grad_out", grad_out)):
        _array(where, name, a, 4, "[B, C, H, W]", q.dtype)
        if a.shape != v.shape:
            raise ValueError(f"{where}: {name} must have the shape of v {v.shape}, got {a.shape}")
    if lse is not None:
        _array(where, "lse", lse, 3, "[B, H, W]", q.dtype)
        want = (q.shape[0], q.shape[2], q.shape[3])
        if lse.shape != want:
            raise ValueError(f"{where}: lse must have shape {want}, got {lse.shape}")
    return _native().criss_cross_attention_backward(q, k, v, out, grad_out, lse)


def criss_cross_attention_reference(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Plain NumPy (einsum) reference of the same op, computed in float64; returns the dtype of ``q``."""
    q64, k64, v64 = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    h = q64.shape[2]
    e_h = np.einsum("bciw,bckw->biwk", q64, k64)  # [B, H, W, H]: pixel (i, w) against (k, w)
    e_h[:, np.arange(h), :, np.arange(h)] = -np.inf  # the centre is counted once, in the row branch
    e_w = np.einsum("bchw,bchl->bhwl", q64, k64)  # [B, H, W, W]: pixel (h, w) against (h, l)
    e = np.concatenate([e_h, e_w], axis=-1)
    a = np.exp(e - e.max(axis=-1, keepdims=True))
    a /= a.sum(axis=-1, keepdims=True)
    out = np.einsum("biwk,bckw->bciw", a[..., :h], v64) + np.einsum("bhwl,bchl->bchw", a[..., h:], v64)
    return out.astype(q.dtype)
