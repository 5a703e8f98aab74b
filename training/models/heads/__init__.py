"""Decode heads: short subclasses of :class:`BaseDecodeHead`."""

from .aspp import ASPPHead
from .base import BaseDecodeHead
from .fcn import FCNHead
from .fpn_head import FPNHead
from .psp import PSPHead
from .sep_aspp import DepthwiseSeparableASPPHead
from .uper import UPerHead

__all__ = ["ASPPHead", "BaseDecodeHead", "DepthwiseSeparableASPPHead", "FCNHead", "FPNHead", "PSPHead", "UPerHead"]
