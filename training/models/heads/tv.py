"""torchvision's segmentation heads (``torchvision.models.segmentation``) as decode heads of ours.

They differ from MMSeg's heads of the same name, so torchvision checkpoints need these layouts (renamed by
``training.convert.torchvision``): its ``FCNHead`` (3x3 conv to ``in // 4`` + BN + ReLU, ``Dropout(0.1)``, 1x1
classifier), its ``DeepLabHead`` (ASPP whose image-pool branch comes last, a 1x1 ``project`` + BN + ReLU +
``Dropout(0.5)``, then a 3x3 conv + BN + ReLU and the classifier, no dropout) and its ``LRASPPHead`` (``cbr``
gated by ``scale``, upsampled and added to a 1x1 classifier of the low-level map). All BatchNorms have eps 1e-5.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..layers import ConvModule, GlobalAvgPool2d, resize
from .aspp import ASPPModule
from .base import BaseDecodeHead
from .fcn import FCNHead


class TVFCNHead(FCNHead):
    """torchvision ``FCNHead``: MMSeg's FCNHead with one 3x3 conv, no concat, and element-wise ``Dropout(0.1)``.

    ``classifier.0/1/4`` are ``convs.0.conv``, ``convs.0.bn`` and ``conv_seg``.
    """

    def __init__(self, in_channels: int, channels: int, **kwargs) -> None:
        kwargs.setdefault("dropout_ratio", 0.1)
        super().__init__(in_channels, channels, num_convs=1, kernel_size=3, concat_input=False, **kwargs)
        if self.dropout is not None:
            self.dropout = nn.Dropout(self.dropout_ratio)


class TVDeepLabHead(BaseDecodeHead):
    """torchvision ``DeepLabHead`` (DeepLabV3): ``aspp_modules`` (1x1 + one 3x3 per rate), ``image_pool``
    (global mean + 1x1 ConvModule, broadcast back), concatenated in that order, ``project`` (1x1, then
    ``Dropout(project_dropout)``), ``bottleneck`` (3x3) and ``conv_seg``.

    Args:
        dilations: atrous rates of the 3x3 branches; torchvision's (12, 24, 36) at every output stride.
        project_dropout: element-wise dropout after ``project`` (torchvision: 0.5).
        **kwargs: see :class:`BaseDecodeHead` (``dropout_ratio`` defaults to 0: no dropout before the classifier).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        *,
        dilations: Sequence[int] = (12, 24, 36),
        project_dropout: float = 0.5,
        **kwargs,
    ) -> None:
        kwargs.setdefault("dropout_ratio", 0.0)
        super().__init__(in_channels, channels, **kwargs)
        if not dilations or any(d < 1 for d in dilations):
            raise ValueError(f"TVDeepLabHead: dilations must be positive ints, got {tuple(dilations)}")
        self.dilations = tuple(dilations)
        self.aspp_modules = ASPPModule((1, *self.dilations), in_channels, channels)
        self.image_pool = nn.Sequential(GlobalAvgPool2d(), ConvModule(in_channels, channels, 1))
        self.project = ConvModule((len(self.dilations) + 2) * channels, channels, 1)
        self.project_dropout = nn.Dropout(project_dropout) if project_dropout > 0 else nn.Identity()
        self.bottleneck = ConvModule(channels, channels, 3, padding=1)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Logits at the resolution of the selected feature map."""
        x = self._select(inputs)
        pooled = self.image_pool(x).expand(-1, -1, x.shape[2], x.shape[3])
        x = self.project(torch.cat([*self.aspp_modules(x), pooled], dim=1))
        return self.cls_seg(self.bottleneck(self.project_dropout(x)))


class TVLRASPPHead(BaseDecodeHead):
    """torchvision ``LRASPPHead``: ``cbr`` (1x1 + BN + ReLU) of the high-level map times ``scale`` (global mean,
    1x1 conv, sigmoid), bilinearly upsampled to the low-level map, through ``conv_seg`` (torchvision's
    ``high_classifier``), plus ``low_classifier`` of the low-level map. Logits at the low-level resolution.

    Args:
        in_channels: (low, high) channels; ``in_index``: their (low, high) indices.
        channels: torchvision's ``inter_channels`` (128).
        **kwargs: see :class:`BaseDecodeHead` (``dropout_ratio`` defaults to 0, as torchvision has none).
    """

    def __init__(self, in_channels: Sequence[int], channels: int, **kwargs) -> None:
        kwargs.setdefault("dropout_ratio", 0.0)
        super().__init__(in_channels, channels, **kwargs)
        if len(self.in_channels) != 2:
            raise ValueError(f"TVLRASPPHead: needs (low, high) inputs, got in_channels {in_channels}")
        low, high = self.in_channels
        self.cbr = ConvModule(high, channels, 1)
        self.scale = nn.Sequential(GlobalAvgPool2d(), nn.Conv2d(high, channels, 1, bias=False), nn.Sigmoid())
        self.low_classifier = nn.Conv2d(low, self.num_classes, 1)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Logits at the resolution of the low-level map."""
        low, high = self._select_all(inputs)
        x = resize(self.cbr(high) * self.scale(high), low.shape[2:], self.align_corners)
        return self.low_classifier(low) + self.cls_seg(x)
