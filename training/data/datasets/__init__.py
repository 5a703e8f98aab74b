"""Loaders for public segmentation datasets in their real on-disk formats, built by name.

``build_dataset("cityscapes", "/data/cityscapes", "train")``; every dataset has the interface of
:class:`training.data.SegFolderDataset` (items ``dict(image, mask, name)``; ``classes``, ``palette``,
``ignore_index``, ``num_classes``) plus ``skip_bad=True`` / ``validate()`` / ``bad_files``.
See docs/datasets.md for each layout.
"""

from training.data.datasets.ade import ADE20KDataset
from training.data.datasets.base import (
    DATASETS,
    BadFile,
    BadSampleError,
    Sample,
    SegDataset,
    build_dataset,
    register,
)
from training.data.datasets.camvid import CamVidDataset
from training.data.datasets.cityscapes import CityscapesDataset
from training.data.datasets.custom import FolderDataset
from training.data.datasets.stanford import StanfordBackgroundDataset
from training.data.datasets.voc import SBDDataset, VOCAugDataset, VOCDataset

__all__ = ["DATASETS", "ADE20KDataset", "BadFile", "BadSampleError", "CamVidDataset", "CityscapesDataset",
           "FolderDataset", "SBDDataset", "Sample", "SegDataset", "StanfordBackgroundDataset", "VOCAugDataset",
           "VOCDataset", "build_dataset", "register"]
