"""Decode heads: short subclasses of :class:`BaseDecodeHead`."""

from .base import BaseDecodeHead
from .fcn import FCNHead
from .psp import PSPHead

__all__ = ["BaseDecodeHead", "FCNHead", "PSPHead"]
