"""ConvNeXt backbone (Liu et al., 2022) laid out like mmpretrain's ``ConvNeXt`` as MMSeg's ``upernet_convnext`` uses it.

State-dict names follow mmpretrain so MMSeg checkpoints load unchanged: ``downsample_layers.0`` (stem: ``0`` a 4x4
stride-4 conv, ``1`` a channel LayerNorm), ``downsample_layers.{1,2,3}`` (``0`` LayerNorm, ``1`` a 2x2 stride-2
conv), ``stages.{i}.{j}`` blocks (``depthwise_conv``, ``norm``, ``pointwise_conv1``, ``pointwise_conv2`` as Linear
layers, ``gamma`` layer scale) and one output LayerNorm ``norm{i}`` per returned stage. Every LayerNorm has eps 1e-6;
the activation is exact GELU. Segmentation settings are fixed: ``gap_before_final_norm=False``, ``linear_pw_conv``.

The patchify stem and the 2x2 downsampling convs have no padding, so H and W must be multiples of the output stride
(32 with the default stem): ``size_divisor`` says so and the forward pass raises otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LN_EPS = 1e-6

#: (depths, channels) of mmpretrain's ``arch_settings`` that MMSeg's ConvNeXt configs use.
ARCH: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "small": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "large": ((3, 3, 27, 3), (192, 384, 768, 1536)),
    "xlarge": ((3, 3, 27, 3), (256, 512, 1024, 2048)),
}


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (mmpretrain's ``LN2d``), eps 1e-6."""

    def __init__(self, channels: int, eps: float = LN_EPS) -> None:
        super().__init__(channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        """Normalise each pixel's channel vector."""
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2).contiguous()


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a sample's residual branch with probability ``p`` and rescale the kept
    ones by ``1 / (1 - p)`` (mmcv's ``DropPath``); the identity in eval mode."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"DropPath: p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """Drop whole samples of ``x`` (training only)."""
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.floor(keep + torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device))
        return x.div(keep) * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ConvNeXtBlock(nn.Module):
    """7x7 depthwise conv -> LayerNorm -> Linear (x4) -> GELU -> Linear -> layer scale, plus the residual."""

    def __init__(self, channels: int, drop_path: float = 0.0, layer_scale_init_value: float = 1.0) -> None:
        super().__init__()
        self.depthwise_conv = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.norm = LayerNorm2d(channels)  # applied channel-last here, so only its parameters matter
        self.pointwise_conv1 = nn.Linear(channels, 4 * channels)
        self.act = nn.GELU()
        self.pointwise_conv2 = nn.Linear(4 * channels, channels)
        self.gamma = (nn.Parameter(torch.full((channels,), float(layer_scale_init_value)))
                      if layer_scale_init_value > 0 else None)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """Residual block forward on an NCHW map."""
        y = self.depthwise_conv(x).permute(0, 2, 3, 1)  # NHWC for the norm and the Linear layers
        y = F.layer_norm(y, self.norm.normalized_shape, self.norm.weight, self.norm.bias, self.norm.eps)
        y = self.pointwise_conv2(self.act(self.pointwise_conv1(y)))
        if self.gamma is not None:
            y = y * self.gamma
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class ConvNeXt(nn.Module):
    """ConvNeXt backbone returning the LayerNorm'd outputs of the stages in ``out_indices`` (NCHW).

    Args:
        depths: blocks per stage (tiny: 3, 3, 9, 3).
        channels: channels per stage (tiny: 96, 192, 384, 768).
        in_channels: image channels.
        stem_patch_size: kernel and stride of the patchify stem (stage strides are p, 2p, 4p, 8p).
        drop_path_rate: stochastic depth, rising linearly from 0 over all blocks to this value (MMSeg: 0.4, small 0.3).
        layer_scale_init_value: initial ``gamma`` (MMSeg's configs: 1.0); 0 or less drops ``gamma``.
        out_indices: stages to return (each gets its ``norm{i}``).
        reference_width: stage-0 width at which the heads' MMSeg default widths apply (``width_scale`` is
            ``channels[0] / reference_width``); ``None``: ``channels[0]`` (scale 1).
    """

    #: stage index of each pyramid level (strides 4, 8, 16, 32).
    level_indices: tuple[int, ...] = (0, 1, 2, 3)

    def __init__(
        self,
        depths: Sequence[int] = ARCH["tiny"][0],
        channels: Sequence[int] = ARCH["tiny"][1],
        in_channels: int = 3,
        stem_patch_size: int = 4,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1.0,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        reference_width: int | None = None,
    ) -> None:
        super().__init__()
        depths, channels, out_indices = tuple(depths), tuple(channels), tuple(out_indices)
        if len(depths) != 4 or len(channels) != 4 or min(depths) < 1 or min(channels) < 1:
            raise ValueError(f"ConvNeXt: depths and channels need 4 positive entries, got {depths}, {channels}")
        if not out_indices or any(not 0 <= i < 4 for i in out_indices) or list(out_indices) != sorted(set(out_indices)):
            raise ValueError(f"ConvNeXt: out_indices must be increasing stage indices in 0..3, got {out_indices}")
        if stem_patch_size < 1 or in_channels < 1:
            raise ValueError(f"ConvNeXt: need stem_patch_size >= 1 and in_channels >= 1, got {stem_patch_size}, "
                             f"{in_channels}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"ConvNeXt: drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.depths, self.channels = depths, channels
        self.in_channels = in_channels
        self.out_indices = out_indices
        self.drop_path_rate = drop_path_rate
        self.width_scale = channels[0] / (reference_width or channels[0])
        strides = tuple(stem_patch_size * 2**i for i in range(4))
        self.out_channels: tuple[int, ...] = tuple(channels[i] for i in out_indices)
        self.out_strides: tuple[int, ...] = tuple(strides[i] for i in out_indices)
        self.output_stride: int = strides[-1]
        self.size_divisor: int = strides[-1]

        stem = nn.Sequential(nn.Conv2d(in_channels, channels[0], stem_patch_size, stride=stem_patch_size),
                             LayerNorm2d(channels[0]))
        self.downsample_layers = nn.ModuleList([stem])
        self.downsample_layers.extend(
            nn.Sequential(LayerNorm2d(channels[i - 1]), nn.Conv2d(channels[i - 1], channels[i], 2, stride=2))
            for i in range(1, 4)
        )
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()  # also under a meta device
        starts = [sum(depths[:i]) for i in range(4)]
        self.stages = nn.ModuleList(
            nn.Sequential(*(ConvNeXtBlock(channels[i], rates[starts[i] + j], layer_scale_init_value)
                            for j in range(depths[i])))
            for i in range(4)
        )
        for i in out_indices:
            self.add_module(f"norm{i}", LayerNorm2d(channels[i]))
        self._init_weights()

    def _init_weights(self) -> None:
        # mmpretrain's init_cfg: truncated normal (std 0.02) for convs and Linear layers, bias 0; LayerNorm 1, 0.
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ConvNeXt: expected an input of shape [B, {self.in_channels}, H, W], "
                             f"got {tuple(x.shape)}")
        h, w, d = x.shape[2], x.shape[3], self.size_divisor
        if isinstance(h, int) and isinstance(w, int) and (h % d or w % d):  # symbolic sizes (export) are not checked
            raise ValueError(f"ConvNeXt: input H and W must be multiples of {d}, got {(h, w)}")

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Return the normalised feature maps of the stages in ``out_indices``."""
        self._check_input(x)
        outs = []
        for i in range(4):
            x = self.stages[i](self.downsample_layers[i](x))
            if i in self.out_indices:
                outs.append(getattr(self, f"norm{i}")(x))
        return tuple(outs)
