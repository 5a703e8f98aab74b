"""U-Net backbone (Ronneberger et al. 2015) laid out like MMSegmentation 1.x ``UNet`` (``mmseg/models/backbones``).

The "backbone" is the whole U: an encoder of ``BasicConvBlock`` s (max-pool between stages) and a decoder of
``UpConvBlock`` s (``InterpConv``: bilinear x2 upsample then a 1x1 ConvModule, concatenation with the skip, then a
``BasicConvBlock``). It returns the decoder outputs from coarse to fine, as MMSeg does: for the S5-D16 default
``(stride 16: 1024 ch, 8: 512, 4: 256, 2: 128, 1: 64)``; MMSeg's configs decode index 4 (full resolution) with an
FCN/ASPP/PSP head and put the auxiliary FCN head on index 3.

State-dict names follow MMSeg: ``encoder.{i}.{j}.convs.{k}.conv/bn`` (``encoder.{i}.0`` is the max-pool for
``i > 0``), ``decoder.{i}.conv_block.convs.{k}.conv/bn`` and ``decoder.{i}.upsample.interp_upsample.1.conv/bn``.
Only the ``InterpConv`` upsampler of the S5-D16 configs is implemented (not ``DeconvModule``).

Inputs must have H and W divisible by :attr:`UNet.size_divisor` (16 for S5-D16), as MMSeg asserts; the decoder
resizes to the skip's size (exactly x2 there), which keeps H and W symbolic in an ONNX export.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import ConvModule


class BasicConvBlock(nn.Module):
    """``num_convs`` 3x3 ConvModules (conv, BN, ReLU); only the first is strided, the others dilated."""

    def __init__(self, in_channels: int, out_channels: int, num_convs: int = 2, stride: int = 1,
                 dilation: int = 1) -> None:
        super().__init__()
        self.convs = nn.Sequential(*[
            ConvModule(in_channels if i == 0 else out_channels, out_channels, 3, stride=stride if i == 0 else 1,
                       padding=1 if i == 0 else dilation, dilation=1 if i == 0 else dilation)
            for i in range(num_convs)
        ])

    def forward(self, x: Tensor) -> Tensor:
        """Apply the convs."""
        return self.convs(x)


class Upsample(nn.Module):
    """Parameter-free bilinear resize (``align_corners=False``) to a given size (mmseg's ``Upsample`` at x2)."""

    def forward(self, x: Tensor, size: Sequence[int]) -> Tensor:
        """Resize ``x`` to ``size``."""
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class InterpConv(nn.Module):
    """MMSeg's ``InterpConv``: bilinear upsample, then a 1x1 ConvModule (``interp_upsample.0`` / ``.1``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.interp_upsample = nn.Sequential(Upsample(), ConvModule(in_channels, out_channels, 1))

    def forward(self, x: Tensor, size: Sequence[int]) -> Tensor:
        """Upsample ``x`` to ``size`` (twice its size in the U-Net) and project it."""
        up, conv = self.interp_upsample
        return conv(up(x, size))


class UpConvBlock(nn.Module):
    """Decoder stage: upsample the coarse map to the skip's size, concatenate ``[skip, up]``, then convs.

    Without upsampling (a stage whose encoder neither pooled nor strided) ``upsample`` is a 1x1 ConvModule,
    as in MMSeg.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, num_convs: int = 2,
                 dilation: int = 1, upsample: bool = True) -> None:
        super().__init__()
        self.conv_block = BasicConvBlock(2 * skip_channels, out_channels, num_convs, dilation=dilation)
        self.upsample = InterpConv(in_channels, skip_channels) if upsample else ConvModule(in_channels,
                                                                                            skip_channels, 1)

    def forward(self, skip: Tensor, x: Tensor) -> Tensor:
        """Fuse the encoder skip with the coarser decoder map."""
        x = self.upsample(x, skip.shape[2:]) if isinstance(self.upsample, InterpConv) else self.upsample(x)
        return self.conv_block(torch.cat([skip, x], dim=1))


def _check_len(name: str, value: Sequence, n: int) -> tuple:
    if len(value) != n:
        raise ValueError(f"UNet: {name} needs {n} entries, got {tuple(value)}")
    return tuple(value)


class UNet(nn.Module):
    """U-Net encoder-decoder returning its decoder outputs from coarse to fine (MMSeg ``UNet``, S5-D16 defaults).

    Args:
        in_channels: image channels.
        base_channels: channels of the first encoder stage; stage ``i`` has ``base_channels * 2**i``.
        num_stages: encoder stages (5 in S5-D16).
        strides: per encoder stage, 1 or 2 (a strided first conv instead of the max-pool).
        enc_num_convs, dec_num_convs: convs per encoder / decoder block.
        downsamples: per stage after the first, max-pool 2x2 before it (when its stride is 1).
        enc_dilations, dec_dilations: dilation of the non-first convs of each block.
        out_indices: which decoder outputs (0 = coarsest ... num_stages - 1 = full resolution) to return.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 64,
        num_stages: int = 5,
        strides: Sequence[int] = (1, 1, 1, 1, 1),
        enc_num_convs: Sequence[int] = (2, 2, 2, 2, 2),
        dec_num_convs: Sequence[int] = (2, 2, 2, 2),
        downsamples: Sequence[bool] = (True, True, True, True),
        enc_dilations: Sequence[int] = (1, 1, 1, 1, 1),
        dec_dilations: Sequence[int] = (1, 1, 1, 1),
        out_indices: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if num_stages < 2 or base_channels < 1:
            raise ValueError(f"UNet: need num_stages >= 2 and base_channels >= 1, got {num_stages}, {base_channels}")
        strides = _check_len("strides", strides, num_stages)
        if any(s not in (1, 2) for s in strides):
            raise ValueError(f"UNet: strides must be 1 or 2, got {strides}")
        enc_num_convs = _check_len("enc_num_convs", enc_num_convs, num_stages)
        enc_dilations = _check_len("enc_dilations", enc_dilations, num_stages)
        dec_num_convs = _check_len("dec_num_convs", dec_num_convs, num_stages - 1)
        dec_dilations = _check_len("dec_dilations", dec_dilations, num_stages - 1)
        downsamples = _check_len("downsamples", downsamples, num_stages - 1)
        self.in_channels = in_channels
        self.num_stages = num_stages
        self.width_scale = base_channels / 64
        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        stage_strides = [1]
        ch_in = in_channels
        for i in range(num_stages):
            block: list[nn.Module] = []
            if i > 0:
                down = strides[i] == 2 or downsamples[i - 1]
                if strides[i] == 1 and downsamples[i - 1]:
                    block.append(nn.MaxPool2d(kernel_size=2))
                stage_strides.append(stage_strides[-1] * (2 if down else 1))
                self.decoder.append(UpConvBlock(base_channels * 2**i, base_channels * 2 ** (i - 1),
                                                base_channels * 2 ** (i - 1), dec_num_convs[i - 1],
                                                dec_dilations[i - 1], upsample=down))
            block.append(BasicConvBlock(ch_in, base_channels * 2**i, enc_num_convs[i], strides[i], enc_dilations[i]))
            self.encoder.append(nn.Sequential(*block))
            ch_in = base_channels * 2**i
        #: H and W must be multiples of this (MMSeg's "whole downsample rate"): 16 for S5-D16.
        self.size_divisor: int = stage_strides[-1]
        self.output_stride: int = stage_strides[-1]
        all_channels = [base_channels * 2**i for i in reversed(range(num_stages))]
        all_strides = list(reversed(stage_strides))
        self.out_indices: tuple[int, ...] = tuple(range(num_stages) if out_indices is None else out_indices)
        if not self.out_indices or any(not 0 <= i < num_stages for i in self.out_indices):
            raise ValueError(f"UNet: out_indices must be a non-empty subset of 0..{num_stages - 1}, "
                             f"got {self.out_indices}")
        self.out_channels: tuple[int, ...] = tuple(all_channels[i] for i in self.out_indices)
        self.out_strides: tuple[int, ...] = tuple(all_strides[i] for i in self.out_indices)
        #: decoder output of each pyramid level that exists (strides 4, 8, 16; U-Net has no stride-32 map).
        self.level_indices: tuple[int, ...] = tuple(all_strides.index(s) for s in (4, 8, 16) if s in all_strides)
        self._init_weights()

    def _init_weights(self) -> None:
        # MMSeg's UNet init_cfg: Kaiming (mmengine's defaults: normal, fan_out, relu, bias 0) for convs, BN 1/0.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Decoder outputs in ``out_indices`` (coarsest first)."""
        h, w = x.shape[2], x.shape[3]
        d = self.size_divisor
        if isinstance(h, int) and isinstance(w, int) and (h % d or w % d):
            raise ValueError(f"UNet: input H and W must be multiples of {d}, got {(h, w)}")
        skips = []
        for enc in self.encoder:
            x = enc(x)
            skips.append(x)
        outs = [x]
        for i in reversed(range(len(self.decoder))):
            x = self.decoder[i](skips[i], x)
            outs.append(x)
        return tuple(outs[i] for i in self.out_indices)
