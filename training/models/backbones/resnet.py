"""ResNet v1b / v1c backbones with dilation, laid out like MMSegmentation 1.x ``ResNet`` / ``ResNetV1c``.

State-dict names follow MMSeg so its checkpoints load unchanged: ``stem.{0,1,3,4,6,7}`` (deep stem, v1c) or
``conv1``/``bn1`` (v1b), ``layer1..layer4``, blocks with ``conv1/bn1/conv2/bn2[/conv3/bn3]`` and
``downsample.{0,1}``. Style is always 'pytorch' (stride on the 3x3 conv) and ``avg_down=False``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from ..layers import BN_EPS


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual; as in MMSeg, only the first conv is strided and dilated."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = _bn(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def last_norm(self) -> nn.BatchNorm2d:
        """The BN that closes the residual branch (zero-initialised for identity-like start)."""
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        """Residual forward."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided, dilated) -> 1x1 bottleneck with a 4x channel expansion ('pytorch' style)."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = _bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = _bn(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def last_norm(self) -> nn.BatchNorm2d:
        """The BN that closes the residual branch (zero-initialised for identity-like start)."""
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        """Residual forward."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


ARCH: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


class ResNet(nn.Module):
    """Dilated ResNet backbone returning a tuple of stage outputs (MMSeg ``ResNet``/``ResNetV1c`` layout).

    Args:
        depth: 18, 34, 50 or 101.
        in_channels: image channels.
        stem_channels: channels after the stem (the deep stem uses ``stem_channels // 2`` inside).
        base_channels: width of the first stage; stage i has ``base_channels * 2**i`` (x4 for bottlenecks).
        deep_stem: True for v1c (three 3x3 convs), False for v1b (one 7x7 conv ``conv1``/``bn1``).
        strides, dilations: per stage; (1,2,1,1)/(1,1,2,4) gives output stride 8, (1,2,2,1)/(1,1,1,2) gives 16.
        out_indices: which stages to return.
        contract_dilation: the first block of a stage with dilation d > 1 uses d // 2 (MMSeg v1c configs).
        zero_init_residual: start each block's last BN at gamma=0 (only affects fresh, untrained weights).
    """

    #: stage index of each pyramid level (strides 4, 8, 16, 32 in the undilated network).
    level_indices: tuple[int, ...] = (0, 1, 2, 3)

    def __init__(
        self,
        depth: int = 50,
        in_channels: int = 3,
        stem_channels: int = 64,
        base_channels: int = 64,
        deep_stem: bool = True,
        strides: Sequence[int] = (1, 2, 1, 1),
        dilations: Sequence[int] = (1, 1, 2, 4),
        out_indices: Sequence[int] = (0, 1, 2, 3),
        contract_dilation: bool = True,
        zero_init_residual: bool = True,
    ) -> None:
        super().__init__()
        if depth not in ARCH:
            raise ValueError(f"ResNet: unsupported depth {depth}; choose one of {sorted(ARCH)}")
        if len(strides) != 4 or len(dilations) != 4:
            raise ValueError(f"ResNet: strides and dilations need 4 entries, got {tuple(strides)}, {tuple(dilations)}")
        if not out_indices or any(not 0 <= i < 4 for i in out_indices):
            raise ValueError(f"ResNet: out_indices must be a non-empty subset of 0..3, got {tuple(out_indices)}")
        if deep_stem and stem_channels % 2:
            raise ValueError(f"ResNet: deep stem needs even stem_channels, got {stem_channels}")
        block, blocks_per_stage = ARCH[depth]
        self.depth = depth
        self.in_channels = in_channels
        self.deep_stem = deep_stem
        self.strides = tuple(strides)
        self.dilations = tuple(dilations)
        self.out_indices = tuple(out_indices)
        self.width_scale = base_channels / 64

        if deep_stem:
            half = stem_channels // 2
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, half, 3, stride=2, padding=1, bias=False),
                _bn(half),
                nn.ReLU(inplace=True),
                nn.Conv2d(half, half, 3, padding=1, bias=False),
                _bn(half),
                nn.ReLU(inplace=True),
                nn.Conv2d(half, stem_channels, 3, padding=1, bias=False),
                _bn(stem_channels),
                nn.ReLU(inplace=True),
            )
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_channels, 7, stride=2, padding=3, bias=False)
            self.bn1 = _bn(stem_channels)
            self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        inplanes = stem_channels
        stage_channels = []
        for i, num_blocks in enumerate(blocks_per_stage):
            planes = base_channels * 2**i
            layer = self._make_stage(block, inplanes, planes, num_blocks, strides[i], dilations[i], contract_dilation)
            self.add_module(f"layer{i + 1}", layer)
            inplanes = planes * block.expansion
            stage_channels.append(inplanes)
        self.out_channels: tuple[int, ...] = tuple(stage_channels[i] for i in self.out_indices)
        stage_strides = [4 * math.prod(strides[: i + 1]) for i in range(4)]
        self.out_strides: tuple[int, ...] = tuple(stage_strides[i] for i in self.out_indices)
        self.output_stride: int = stage_strides[-1]
        self._init_weights(zero_init_residual)

    @staticmethod
    def _make_stage(
        block: type[BasicBlock] | type[Bottleneck],
        inplanes: int,
        planes: int,
        num_blocks: int,
        stride: int,
        dilation: int,
        contract_dilation: bool,
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                _bn(planes * block.expansion),
            )
        first_dilation = dilation // 2 if contract_dilation and dilation > 1 else dilation
        layers = [block(inplanes, planes, stride=stride, dilation=first_dilation, downsample=downsample)]
        layers += [block(planes * block.expansion, planes, dilation=dilation) for _ in range(1, num_blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock | Bottleneck):
                    nn.init.zeros_(m.last_norm().weight)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Return the feature maps of the stages in ``out_indices``."""
        if self.deep_stem:
            x = self.stem(x)
        else:
            x = self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(x)
        outs = []
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
