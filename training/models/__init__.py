"""Segmentation models: MMSeg-compatible backbones, necks and heads, a segmentor wrapper and a name registry."""

from . import zoo  # noqa: F401  (registers every model family)
from .registry import (
    backbone_names,
    build,
    build_backbone,
    build_from_config,
    list_models,
    model_info,
    register,
    register_backbone,
)
from .segmentor import Segmentor

__all__ = [
    "Segmentor", "backbone_names", "build", "build_backbone", "build_from_config", "list_models", "model_info",
    "register", "register_backbone",
]
