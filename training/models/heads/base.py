"""Base decode head holding the logic every head shares (MMSeg 1.x ``BaseDecodeHead`` layout)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..layers import ALIGN_CORNERS


class BaseDecodeHead(nn.Module):
    """Shared part of decode heads: input selection, dropout and the 1x1 classifier ``conv_seg``.

    Subclasses build their layers in ``__init__`` and implement ``forward(inputs) -> logits`` as
    ``self.cls_seg(...)`` over ``self._select(inputs)`` (one feature map) or ``self._select_all(inputs)``
    (MMSeg's ``input_transform='multiple_select'``, for heads that fuse several levels).

    Args:
        in_channels: channels of the selected feature map, or one entry per map when ``in_index`` is a sequence.
        channels: channels of the head's last feature map (input of ``conv_seg``).
        num_classes: number of output classes.
        in_index: which backbone output(s) to use.
        dropout_ratio: ``Dropout2d`` probability before ``conv_seg`` (0 disables it).
        align_corners: bilinear-resize policy of the head; segrt uses False everywhere.

    Attributes:
        output_index: index (into the backbone's outputs) of the feature map whose resolution the logits have;
            the segmentor's output stride is that map's stride. Defaults to ``in_index`` (the first one for
            multi-level heads); heads that decode at another level override it.
    """

    def __init__(
        self,
        in_channels: int | Sequence[int],
        channels: int,
        *,
        num_classes: int,
        in_index: int | Sequence[int] = -1,
        dropout_ratio: float = 0.1,
        align_corners: bool = ALIGN_CORNERS,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if num_classes < 1:
            raise ValueError(f"{name}: num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= dropout_ratio < 1.0:
            raise ValueError(f"{name}: dropout_ratio must be in [0, 1), got {dropout_ratio}")
        multi = not isinstance(in_index, int)
        if multi != (not isinstance(in_channels, int)) or (multi and len(in_index) != len(in_channels)):
            raise ValueError(f"{name}: in_index {in_index} and in_channels {in_channels} must match in kind and length")
        self.in_channels = tuple(in_channels) if multi else in_channels
        self.channels = channels
        self.num_classes = num_classes
        self.in_index = tuple(in_index) if multi else in_index
        self.output_index: int = self.in_index[0] if multi else self.in_index
        self.dropout_ratio = dropout_ratio
        self.align_corners = align_corners
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else None
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)
        nn.init.normal_(self.conv_seg.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def _pick(self, inputs: Sequence[Tensor], index: int, channels: int) -> Tensor:
        """Feature map ``inputs[index]``, checked to be NCHW with ``channels`` channels."""
        if not -len(inputs) <= index < len(inputs):
            raise ValueError(f"{type(self).__name__}: input index {index} out of range for {len(inputs)} inputs")
        x = inputs[index]
        if x.dim() != 4 or x.shape[1] != channels:
            raise ValueError(
                f"{type(self).__name__}: expected input {index} with {channels} channels (NCHW), "
                f"got shape {tuple(x.shape)}"
            )
        return x

    def _select(self, inputs: Sequence[Tensor]) -> Tensor:
        """Pick the feature map this single-input head consumes and check its channel count."""
        return self._pick(inputs, self.in_index, self.in_channels)

    def _select_all(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        """Pick the feature maps of a multi-input head (MMSeg ``multiple_select``), checking each."""
        return [self._pick(inputs, i, c) for i, c in zip(self.in_index, self.in_channels)]

    def cls_seg(self, feat: Tensor) -> Tensor:
        """Dropout, then the per-pixel classifier."""
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.conv_seg(feat)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:  # pragma: no cover - abstract
        """Return logits ``[B, num_classes, h, w]`` at the resolution of ``inputs[self.output_index]``."""
        raise NotImplementedError
