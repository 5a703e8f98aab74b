"""Base decode head holding the logic every head shares (MMSeg 1.x ``BaseDecodeHead`` layout)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..layers import ALIGN_CORNERS


class BaseDecodeHead(nn.Module):
    """Shared part of decode heads: input selection, dropout and the 1x1 classifier ``conv_seg``.

    Subclasses build their layers in ``__init__`` and implement ``forward(inputs) -> logits`` as
    ``self.cls_seg(self._features(self._select(inputs)))``-style code.

    Args:
        in_channels: channels of the selected backbone feature map.
        channels: channels of the head's last feature map (input of ``conv_seg``).
        num_classes: number of output classes.
        in_index: which backbone output to use.
        dropout_ratio: ``Dropout2d`` probability before ``conv_seg`` (0 disables it).
        align_corners: bilinear-resize policy of the head; segrt uses False everywhere.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        *,
        num_classes: int,
        in_index: int = -1,
        dropout_ratio: float = 0.1,
        align_corners: bool = ALIGN_CORNERS,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"{type(self).__name__}: num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= dropout_ratio < 1.0:
            raise ValueError(f"{type(self).__name__}: dropout_ratio must be in [0, 1), got {dropout_ratio}")
        self.in_channels = in_channels
        self.channels = channels
        self.num_classes = num_classes
        self.in_index = in_index
        self.dropout_ratio = dropout_ratio
        self.align_corners = align_corners
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else None
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)
        nn.init.normal_(self.conv_seg.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def _select(self, inputs: Sequence[Tensor]) -> Tensor:
        """Pick the feature map this head consumes and check its channel count."""
        x = inputs[self.in_index]
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__}: expected input {self.in_index} with {self.in_channels} channels (NCHW), "
                f"got shape {tuple(x.shape)}"
            )
        return x

    def cls_seg(self, feat: Tensor) -> Tensor:
        """Dropout, then the per-pixel classifier."""
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.conv_seg(feat)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:  # pragma: no cover - abstract
        """Return logits ``[B, num_classes, h, w]`` at the resolution of the selected feature map."""
        raise NotImplementedError
