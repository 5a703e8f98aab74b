"""Necks: modules between backbone and decode head (MMSeg ``neck.`` state-dict prefix)."""

from .fpn import FPN

__all__ = ["FPN"]
