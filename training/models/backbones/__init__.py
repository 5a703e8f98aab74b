"""Backbones: feature extractors returning a tuple of multi-scale feature maps."""

from .mobilenet_v2 import InvertedResidual, MobileNetV2
from .resnet import BasicBlock, Bottleneck, ResNet

__all__ = ["BasicBlock", "Bottleneck", "InvertedResidual", "MobileNetV2", "ResNet"]
