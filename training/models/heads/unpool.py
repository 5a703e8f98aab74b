"""Max-unpooling with the switches of an encoder map, for the SegNet and ENet decoders.

``unpool_like(x, skip)`` equals ``nn.MaxUnpool2d(2, 2)(x, indices, output_size=skip.shape[2:])`` where
``indices`` come from the encoder's 2x2 stride-2 ``max_pool2d(skip, return_indices=True)`` (ties: the first
maximum in row-major window order, as torch's indices), so the backbone returns plain feature maps and the decoder
derives the switches from the pre-pool map. It is written with strided slices, comparisons, ``where``, ``stack`` and
reshapes instead of indices and a scatter: the ONNX graph then has only elementwise/shape ops (no ``MaxPool``
``Indices`` output, no ``ScatterND``, which not every runtime or TensorRT version supports), H and W stay
symbolic, and ``torch.compile`` fuses it. Odd sizes unpool like the encoder pooled (the last row/column is zero).
In eager mode it costs about 2x torch's native ``max_unpool2d`` (1-2% of a SegNet forward pass).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def unpool_like(x: Tensor, skip: Tensor) -> Tensor:
    """Place ``x`` (``[B, C, h, w]``, ``h = H // 2``) at the max positions of the 2x2 windows of ``skip``
    (``[B, C, H, W]``); every other position is zero (``nn.MaxUnpool2d`` with the encoder's indices)."""
    if x.shape[1] != skip.shape[1]:
        raise ValueError(f"unpool_like: x has {x.shape[1]} channels but the switch map has {skip.shape[1]}")
    b, c, h, w = skip.shape
    ph, pw = x.shape[2], x.shape[3]
    if all(isinstance(v, int) for v in (h, w, ph, pw)) and (ph != h // 2 or pw != w // 2):
        raise ValueError(f"unpool_like: x of size {(ph, pw)} does not match the 2x2 pooling of a {(h, w)} map")
    s = skip[:, :, : 2 * ph, : 2 * pw]
    corners = [s[:, :, i::2, j::2] for i in (0, 1) for j in (0, 1)]  # window positions in row-major order
    top = torch.maximum(torch.maximum(corners[0], corners[1]), torch.maximum(corners[2], corners[3]))
    taken = corners[0] == top  # the first maximum of each window wins, as in max_pool2d's indices
    parts = [torch.where(taken, x, 0.0)]
    for k in (1, 2):
        hit = (corners[k] == top) & ~taken
        parts.append(torch.where(hit, x, 0.0))
        taken = taken | hit
    parts.append(torch.where(taken, 0.0, x))
    rows = [torch.stack(parts[2 * i: 2 * i + 2], dim=-1).reshape(b, c, ph, 2 * pw) for i in (0, 1)]
    out = torch.stack(rows, dim=3).reshape(b, c, 2 * ph, 2 * pw)
    return F.pad(out, (0, w - 2 * pw, 0, h - 2 * ph))
