"""Segmentation models: MMSeg-compatible backbones and heads, a segmentor wrapper and a name registry."""

from .registry import build, build_from_config, list_models, register
from .segmentor import Segmentor

__all__ = ["Segmentor", "build", "build_from_config", "list_models", "register"]
