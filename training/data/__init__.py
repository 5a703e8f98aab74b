"""Datasets: the custom folder format and the built-in synthetic street scenes (numpy + Pillow, no torch)."""

from training.data.folder import SegFolderDataset, load_classes
from training.data.synthetic import CLASSES, PALETTE, generate_dataset, generate_video, render_scene

__all__ = ["CLASSES", "PALETTE", "SegFolderDataset", "generate_dataset", "generate_video", "load_classes",
           "render_scene"]
