"""Segmentation models: MMSeg-compatible backbones, necks and heads, a segmentor wrapper and a name registry."""

from .registry import build, build_backbone, build_from_config, list_models, model_info, register
from .segmentor import Segmentor

__all__ = ["Segmentor", "build", "build_backbone", "build_from_config", "list_models", "model_info", "register"]
