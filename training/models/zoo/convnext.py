"""ConvNeXt backbones ``convnext-tiny|small|base|large|xlarge`` (MMSeg's ``mmpretrain.ConvNeXt`` configs).

Defaults are those of MMSeg's ``convnext/convnext-*_upernet_*`` configs: ``out_indices=(0, 1, 2, 3)``,
``layer_scale_init_value=1.0``, ``drop_path_rate=0.4`` (0.3 for small). ``width_scale`` is 1 for every named arch
(MMSeg's UPerNet uses 512 decode / 256 auxiliary channels on all of them) and ``channels[0] / arch width`` when
``backbone_kwargs`` narrows the network. The backbone is always undilated (output stride 32); the builders'
``output_stride`` presets concern the CNN backbones only and are ignored here. Models on it need H and W divisible
by 32 (``backbone.size_divisor``).
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from ..backbones.convnext import ARCH, ConvNeXt
from ..registry import check_overrides, register_backbone

#: MMSeg's stochastic-depth rate per arch.
DROP_PATH_RATE = {"tiny": 0.4, "small": 0.3, "base": 0.4, "large": 0.4, "xlarge": 0.4}

#: A tiny test configuration (for a builder's ``tiny`` list): one block per stage, widths 8..64.
TINY_CONVNEXT: dict[str, Any] = {
    "backbone": "convnext-tiny", "backbone_kwargs": {"depths": (1, 1, 1, 1), "channels": (8, 16, 32, 64)},
}


def convnext_kwargs(arch: str) -> dict[str, Any]:
    """Constructor keywords of :class:`ConvNeXt` for MMSeg's ``arch`` (``"tiny"``, ``"small"``, ...)."""
    if arch not in ARCH:
        raise ValueError(f"unknown ConvNeXt arch {arch!r}; choose one of {sorted(ARCH)}")
    depths, channels = ARCH[arch]
    return {"depths": depths, "channels": channels, "drop_path_rate": DROP_PATH_RATE[arch],
            "layer_scale_init_value": 1.0, "out_indices": (0, 1, 2, 3), "reference_width": channels[0]}


def _factory(m: re.Match, overrides: dict[str, Any], output_stride: int) -> nn.Module:
    check_overrides(m.group(0), ConvNeXt, overrides)
    return ConvNeXt(**{**convnext_kwargs(m.group(1)), **overrides})


register_backbone(r"convnext-(tiny|small|base|large|xlarge)", _factory, "convnext-tiny|small|base|large|xlarge")
