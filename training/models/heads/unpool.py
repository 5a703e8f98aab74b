"""Max-unpooling with the switches of an encoder map, for the SegNet and ENet decoders.

The decoder recomputes the encoder's 2x2 stride-2 max-pool on the pre-pool map ``skip`` with
``return_indices=True`` (the same op on the same tensor gives the same switches) and scatters ``x`` to those
positions with ``max_unpool2d``, ``output_size`` being the skip's size, so odd sizes unpool like the encoder pooled.
Both export to standard ONNX ops with symbolic H, W: ``MaxPool`` with its ``Indices`` output and a
``ScatterND`` over a zero tensor (checked against ONNX Runtime by ``tests/test_model_matrix.py``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def unpool_like(x: Tensor, skip: Tensor) -> Tensor:
    """Place ``x`` (``[B, C, h, w]``, ``h = H // 2``) at the max positions of the 2x2 windows of ``skip``
    (``[B, C, H, W]``); every other position is zero (``nn.MaxUnpool2d`` with the encoder's indices)."""
    if x.shape[1] != skip.shape[1]:
        raise ValueError(f"unpool_like: x has {x.shape[1]} channels but the switch map has {skip.shape[1]}")
    _, indices = F.max_pool2d(skip, kernel_size=2, stride=2, return_indices=True)
    return F.max_unpool2d(x, indices, kernel_size=2, stride=2, output_size=skip.shape[2:])
