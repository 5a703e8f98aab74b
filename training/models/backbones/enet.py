"""ENet encoder (Paszke et al. 2016, "ENet: A Deep Neural Network Architecture for Real-Time Semantic Segmentation").

Layer choices follow the paper's Table 1 and the authors' Torch code (e-lab/ENet-training, ``encoder.lua``):

- initial block: a 3x3 stride-2 conv (13 filters, with bias) concatenated with a 2x2 max-pool of the image
  (3 channels) -> 16 channels, then BN and PReLU;
- bottleneck: 1x1 projection to ``out / 4`` channels (a 2x2 stride-2 conv when downsampling), BN, PReLU; the main
  conv (3x3, 3x3 dilated, or asymmetric 1x5 then 5x1), BN, PReLU; 1x1 expansion, BN; spatial dropout (0.01 in
  stage 1, 0.1 after); added to the shortcut (identity, or 2x2 max-pool + zero channel padding when
  downsampling), then PReLU. Projections have no bias, the main convs have one, as in the authors' code;
  PReLU is per channel and BN uses eps 1e-3 (Torch's ``SpatialBatchNormalization(n, 1e-3)``);
- stage 1: one downsampling bottleneck (16 -> 64) and 4 regular ones; stage 2: downsampling (64 -> 128) then
  regular, dilated 2, asymmetric 5, dilated 4, regular, dilated 8, asymmetric 5, dilated 16; stage 3: stage 2
  without its downsampling bottleneck.

The encoder returns the maps whose max-pool switches the decoder needs (the initial block at stride 2, stage 1 at
stride 4) and stage 3 (stride 8): ``(16, 64, 128)`` channels. The decoder (:class:`training.models.heads.enet.ENetHead`)
derives the switches from those maps (:func:`training.models.heads.unpool.unpool_like`: the same positions as the
2x2 max-pools' indices), so the backbone returns plain feature maps. H and W must be multiples of 8 (three stride-2
steps that concatenate or add two branches); while tracing with symbolic sizes (ONNX export with dynamic H, W) the
input is zero-padded bottom/right to multiples of 8, a no-op on valid inputs, so that torch.export can prove the
branch sizes equal (an exported graph given other sizes returns logits of the padded size).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ENET_BN_EPS = 1e-3
#: (kind, dilation) of the 8 bottlenecks of stages 2 and 3 after the downsampling one.
STAGE_PATTERN: tuple[tuple[str, int], ...] = (
    ("regular", 1), ("dilated", 2), ("asymmetric", 5), ("dilated", 4),
    ("regular", 1), ("dilated", 8), ("asymmetric", 5), ("dilated", 16),
)


def bn(channels: int) -> nn.BatchNorm2d:
    """ENet's BatchNorm (eps 1e-3, as the authors' Torch code)."""
    return nn.BatchNorm2d(channels, eps=ENET_BN_EPS)


class InitialBlock(nn.Module):
    """3x3 stride-2 conv (``out - in`` filters) concatenated with a 2x2 max-pool of the input, then BN + PReLU."""

    def __init__(self, in_channels: int = 3, out_channels: int = 16) -> None:
        super().__init__()
        if out_channels <= in_channels:
            raise ValueError(f"ENet InitialBlock: out_channels must exceed in_channels, got {out_channels}")
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.bn = bn(out_channels)
        self.act = nn.PReLU(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """Stride-2 map with ``out_channels`` channels."""
        return self.act(self.bn(torch.cat([self.conv(x), self.pool(x)], dim=1)))


class Bottleneck(nn.Module):
    """ENet encoder bottleneck: ``kind`` is ``"regular"``, ``"dilated"``, ``"asymmetric"`` or ``"downsampling"``.

    ``dilation`` is the rate of a dilated bottleneck and the kernel length of an asymmetric one (5 in ENet).
    """

    def __init__(self, in_channels: int, out_channels: int, kind: str = "regular", dilation: int = 1,
                 dropout: float = 0.1) -> None:
        super().__init__()
        if kind not in ("regular", "dilated", "asymmetric", "downsampling"):
            raise ValueError(f"ENet Bottleneck: unknown kind {kind!r}")
        if out_channels < in_channels or (kind != "downsampling" and out_channels != in_channels):
            raise ValueError(f"ENet Bottleneck: bad channels {in_channels} -> {out_channels} for {kind!r}")
        internal = max(1, out_channels // 4)
        down = kind == "downsampling"
        k = 2 if down else 1
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, internal, k, stride=k, bias=False), bn(internal),
                                    nn.PReLU(internal))
        if kind == "asymmetric":
            pad = dilation // 2
            main: list[nn.Module] = [nn.Conv2d(internal, internal, (1, dilation), padding=(0, pad), bias=False),
                                     nn.Conv2d(internal, internal, (dilation, 1), padding=(pad, 0))]
        else:
            d = dilation if kind == "dilated" else 1
            main = [nn.Conv2d(internal, internal, 3, padding=d, dilation=d)]
        self.conv = nn.Sequential(*main, bn(internal), nn.PReLU(internal))
        self.expand = nn.Sequential(nn.Conv2d(internal, out_channels, 1, bias=False), bn(out_channels))
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.act = nn.PReLU(out_channels)
        self.pool = nn.MaxPool2d(2, 2) if down else None
        self.pad_channels = out_channels - in_channels

    def forward(self, x: Tensor) -> Tensor:
        """Residual forward."""
        shortcut = x if self.pool is None else self.pool(x)
        if self.pad_channels:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.pad_channels))
        return self.act(shortcut + self.dropout(self.expand(self.conv(self.reduce(x)))))


def _pad_to_multiple(x: Tensor, d: int) -> Tensor:
    """Zero-pad H, W (bottom/right) up to multiples of ``d``: a no-op on valid inputs, used only while tracing with
    symbolic sizes (export), where it writes every later size as a multiple of ``d`` so that the branches that ENet
    adds or concatenates provably agree (torch.export cannot reason about ``floor`` chains otherwise)."""
    h, w = x.shape[2], x.shape[3]
    return F.pad(x, (0, d * ((w + d - 1) // d) - w, 0, d * ((h + d - 1) // d) - h))


class ENet(nn.Module):
    """ENet encoder (initial block, stages 1-3) returning the stride-2, -4 and -8 maps (``out_indices``).

    Args:
        in_channels: image channels.
        channels: widths of the initial block, stage 1 and stages 2-3 (16, 64, 128 in the paper).
        depths: bottlenecks after the downsampling one in stages 1, 2 and 3 (4, 8, 8 in the paper); stages 2
            and 3 take the first ``depth`` entries of :data:`STAGE_PATTERN` (cycling).
        dropouts: spatial dropout of stage 1 and of stages 2-3 (0.01, 0.1).
        out_indices: which of (initial, stage 1, stage 2, stage 3) to return; the ENet decoder needs (0, 1, 3).
    """

    #: Layer of each pyramid level ENet has (strides 4 and 8).
    level_indices: tuple[int, ...] = (1, 3)
    #: H and W must be multiples of this (three stride-2 steps that concatenate or add two branches).
    size_divisor: int = 8

    def __init__(
        self,
        in_channels: int = 3,
        channels: Sequence[int] = (16, 64, 128),
        depths: Sequence[int] = (4, 8, 8),
        dropouts: Sequence[float] = (0.01, 0.1),
        out_indices: Sequence[int] = (0, 1, 3),
    ) -> None:
        super().__init__()
        if len(channels) != 3 or len(depths) != 3 or len(dropouts) != 2:
            raise ValueError(f"ENet: need 3 channels, 3 depths and 2 dropouts, got {tuple(channels)}, "
                             f"{tuple(depths)}, {tuple(dropouts)}")
        if not out_indices or any(not 0 <= i < 4 for i in out_indices):
            raise ValueError(f"ENet: out_indices must be a non-empty subset of 0..3, got {tuple(out_indices)}")
        c0, c1, c2 = channels
        self.in_channels = in_channels
        self.width_scale = c0 / 16
        self.out_indices = tuple(out_indices)
        self.initial = InitialBlock(in_channels, c0)
        self.stage1 = nn.Sequential(Bottleneck(c0, c1, "downsampling", dropout=dropouts[0]),
                                    *[Bottleneck(c1, c1, dropout=dropouts[0]) for _ in range(depths[0])])
        self.stage2 = nn.Sequential(Bottleneck(c1, c2, "downsampling", dropout=dropouts[1]),
                                    *self._pattern(c2, depths[1], dropouts[1]))
        self.stage3 = nn.Sequential(*self._pattern(c2, depths[2], dropouts[1]))
        layer_channels, layer_strides = (c0, c1, c2, c2), (2, 4, 8, 8)
        self.out_channels: tuple[int, ...] = tuple(layer_channels[i] for i in self.out_indices)
        self.out_strides: tuple[int, ...] = tuple(layer_strides[i] for i in self.out_indices)
        self.output_stride = 8
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @staticmethod
    def _pattern(channels: int, depth: int, dropout: float) -> list[Bottleneck]:
        kinds = [STAGE_PATTERN[i % len(STAGE_PATTERN)] for i in range(depth)]
        return [Bottleneck(channels, channels, kind, d, dropout) for kind, d in kinds]

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Maps of the layers in ``out_indices`` (initial, stage 1, stage 2, stage 3)."""
        h, w = x.shape[2], x.shape[3]
        if isinstance(h, int) and isinstance(w, int):
            if h % 8 or w % 8:
                raise ValueError(f"ENet: input H and W must be multiples of 8, got {(h, w)}")
        else:
            x = _pad_to_multiple(x, 8)
        outs = [self.initial(x)]
        for stage in (self.stage1, self.stage2, self.stage3):
            outs.append(stage(outs[-1]))
        return tuple(outs[i] for i in self.out_indices)
