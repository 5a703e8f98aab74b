"""Fit a batch to what a backend accepts: split it into chunks of at most ``max`` and pad chunks below ``min``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Infer = Callable[[np.ndarray], np.ndarray]
Alloc = Callable[[str, tuple[int, ...]], np.ndarray]


def _alloc(key: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.empty(shape, np.float32)


def infer_in_chunks(infer: Infer, x: np.ndarray, batch: tuple[int, int | None], alloc: Alloc = _alloc,
                    check: Callable[[np.ndarray, tuple[int, ...]], np.ndarray] | None = None) -> np.ndarray:
    """``infer(x)`` for a ``[N,...]`` batch, calling ``infer`` only on batches within ``batch = (min, max)``.

    Chunks of at most ``max`` rows run in turn; a chunk below ``min`` is padded with zero rows whose logits are
    dropped. ``infer`` may return a buffer it reuses: every chunk is copied out before the next call. The result is
    ``alloc("logits", shape)`` (storage the caller may reuse) unless ``x`` fits as it is, when it is ``infer``'s own
    output. ``check(logits, chunk_shape)`` validates each chunk's output and returns it (C-contiguous float32).
    """
    lo, hi = batch
    n = x.shape[0]
    check = check or (lambda y, _: y)
    if lo <= n and (hi is None or n <= hi):
        return check(infer(x), x.shape)
    step = hi or n
    out: np.ndarray | None = None
    for s in range(0, n, step):
        part = x[s:s + step]
        m = part.shape[0]
        if m < lo:
            padded = alloc("pad", (lo, *part.shape[1:]))
            padded[:m] = part
            padded[m:] = 0.0
            part = padded
        y = check(infer(part), part.shape)
        if out is None:
            out = alloc("logits", (n, *y.shape[1:]))
        elif y.shape[1:] != out.shape[1:]:
            raise ValueError(f"backend returned logits of shape {y.shape} for chunk {s // step}, but "
                             f"{out.shape[1:]} for the first chunk of the same input")
        out[s:s + m] = y[:m]
    assert out is not None
    return out
