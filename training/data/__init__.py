"""Datasets: the custom folder format, the built-in synthetic street scenes, loaders for public datasets in
their real formats (``build_dataset``) and uint8 augmentation (``build_pipeline``); numpy + Pillow, no torch."""

from training.data.augment import Compose, build_pipeline
from training.data.datasets import DATASETS, BadFile, SegDataset, build_dataset
from training.data.folder import SegFolderDataset, load_classes
from training.data.synthetic import CLASSES, PALETTE, generate_dataset, generate_video, render_scene

__all__ = ["CLASSES", "DATASETS", "PALETTE", "BadFile", "Compose", "SegDataset", "SegFolderDataset",
           "build_dataset", "build_pipeline", "generate_dataset", "generate_video", "load_classes", "render_scene"]
