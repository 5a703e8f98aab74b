"""Sliding-window inference and multi-scale + flip test-time augmentation, averaged in logit space.

Works for any backend: everything here only needs ``infer(x: [N,3,h,w] float32) -> [N,K,h',w'] float32``.
Sliding windows follow MMSegmentation's ``slide_inference``: windows of ``crop`` every ``stride`` pixels, the last
window of a row/column shifted back to end at the border, logits of each window upsampled to the window size and
summed, then divided by how many windows covered each pixel. Windows larger than the image are zero-padded in
normalized space (the mean colour, as MMSeg's pre-processor pads after normalizing); the padded part of the
upsampled logits is dropped.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine import ops

Infer = Callable[[np.ndarray], np.ndarray]


def check_window(crop: tuple[int, int], stride: tuple[int, int]) -> None:
    """ValueError unless crop and stride are positive and the stride is at most the crop (no pixel left uncovered,
    which would be a division by zero in the overlap average)."""
    if min(*crop, *stride) <= 0:
        raise ValueError(f"crop size and stride must be positive, got crop {crop}, stride {stride}")
    if stride[0] > crop[0] or stride[1] > crop[1]:
        raise ValueError(f"stride {stride} must not exceed crop_size {crop}: pixels between windows would be "
                         f"covered by none")


def slide_windows(h: int, w: int, crop: tuple[int, int], stride: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Windows ``(y1, y2, x1, x2)`` covering an ``h x w`` image, as in MMSeg's slide_inference."""
    check_window(crop, stride)
    ch, cw = crop
    sh, sw = stride
    h_grids = max(h - ch + sh - 1, 0) // sh + 1
    w_grids = max(w - cw + sw - 1, 0) // sw + 1
    out = []
    for i in range(h_grids):
        for j in range(w_grids):
            y2, x2 = min(i * sh + ch, h), min(j * sw + cw, w)
            out.append((max(y2 - ch, 0), y2, max(x2 - cw, 0), x2))
    return out


def slide_logits(x: np.ndarray, infer: Infer, crop: tuple[int, int], stride: tuple[int, int],
                 batch: int = 4, crop_buf: np.ndarray | None = None) -> np.ndarray:
    """Overlap-averaged logits ``[1,K,H,W]`` at the full resolution of the normalized input ``x`` ``[1,3,H,W]``.

    Up to ``batch`` windows go through ``infer`` at once as one ``[n,3,crop_h,crop_w]`` batch. ``crop_buf`` (float32
    ``[batch,3,crop_h,crop_w]``) is reused when given.
    """
    _, _, h, w = x.shape
    ch, cw = crop
    windows = slide_windows(h, w, crop, stride)
    batch = max(1, int(batch))
    if crop_buf is None or crop_buf.shape != (batch, 3, ch, cw):
        crop_buf = np.empty((batch, 3, ch, cw), np.float32)
    preds: np.ndarray | None = None
    count = np.zeros((h, w), np.float32)
    for s in range(0, len(windows), batch):
        chunk = windows[s:s + batch]
        crops = crop_buf[:len(chunk)]
        for k, (y1, y2, x1, x2) in enumerate(chunk):
            if y2 - y1 < ch or x2 - x1 < cw:
                crops[k] = 0.0
            crops[k, :, :y2 - y1, :x2 - x1] = x[0, :, y1:y2, x1:x2]
        logits = np.ascontiguousarray(infer(crops), dtype=np.float32)
        if logits.ndim != 4 or logits.shape[0] != len(chunk):
            raise ValueError(f"backend returned logits of shape {logits.shape} for a batch of {len(chunk)} crops")
        up = ops.resize_bilinear(logits, ch, cw)
        if preds is None:
            preds = np.zeros((up.shape[1], h, w), np.float32)
        for k, (y1, y2, x1, x2) in enumerate(chunk):
            preds[:, y1:y2, x1:x2] += up[k, :, :y2 - y1, :x2 - x1]
            count[y1:y2, x1:x2] += 1.0
    assert preds is not None
    preds /= count
    return preds[None]


def average_logits(parts: list[np.ndarray], size: tuple[int, int], align_corners: bool = False) -> np.ndarray:
    """Resize each ``[1,K,h,w]`` logit map to ``size`` (bilinear) and average them."""
    acc = np.zeros((1, parts[0].shape[1], *size), np.float32)
    for p in parts:
        p = np.ascontiguousarray(p, dtype=np.float32)
        acc += p if p.shape[2:] == tuple(size) else ops.resize_bilinear(p, *size, align_corners=align_corners)
    acc /= len(parts)
    return acc


def scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """``(h, w) * scale``, rounded, at least 1 pixel."""
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))
