"""SETR's multi-level feature aggregation neck (MMSeg ``MLANeck``)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..heads.setr import layer_norm_2d
from ..layers import ConvModule


class MLAModule(nn.Module):
    """1x1 ``channel_proj`` per input, a top-down running sum from the last input, 3x3 ``feat_extract`` per sum.

    As in MMSeg, output ``i`` is ``feat_extract[i]`` of the sum of the last ``i + 1`` projected inputs, so the
    outputs come in reverse input order (the first output aggregates only the deepest input).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.channel_proj = nn.ModuleList(ConvModule(c, out_channels, 1) for c in in_channels)
        self.feat_extract = nn.ModuleList(ConvModule(out_channels, out_channels, 3, padding=1) for _ in in_channels)

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """One ``[B, out_channels, h, w]`` map per input."""
        projected = [conv(x) for x, conv in zip(inputs, self.channel_proj)]
        sums: list[Tensor] = []
        for feat in reversed(projected):
            sums.append(feat if not sums else sums[-1] + feat)
        return tuple(conv(s) for s, conv in zip(sums, self.feat_extract))


class MLANeck(nn.Module):
    """MLA neck (MMSeg ``MLANeck`` as SETR-MLA configures it: BN + ReLU ConvModules): a LayerNorm (eps 1e-6) over
    the channels of each input (``norm.{i}``), then :class:`MLAModule` (``mla.channel_proj``, ``mla.feat_extract``).

    Args:
        in_channels: channels of each input map (all at the same resolution).
        out_channels: channels of every output map.
        norm_eps: eps of the input LayerNorms.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, norm_eps: float = 1e-6) -> None:
        super().__init__()
        if not in_channels or out_channels < 1:
            raise ValueError(f"MLANeck: need in_channels and out_channels >= 1, got {tuple(in_channels)}, "
                             f"{out_channels}")
        self.in_channels = tuple(in_channels)
        self.out_channels = out_channels
        self.norm = nn.ModuleList(nn.LayerNorm(c, eps=norm_eps) for c in in_channels)
        self.mla = MLAModule(in_channels, out_channels)

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """One ``[B, out_channels, h, w]`` map per input."""
        if len(inputs) != len(self.in_channels):
            raise ValueError(f"MLANeck: expected {len(self.in_channels)} feature maps, got {len(inputs)}")
        return self.mla([layer_norm_2d(norm, x) for norm, x in zip(self.norm, inputs)])
