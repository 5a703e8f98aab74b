"""engine.Predictor: image in, class-id map out, over any backend."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from engine import ops
from engine.backends import open_backend
from engine.metadata import ModelMeta
from engine.palettes import palette_array


def check_image(img: object, name: str = "img") -> np.ndarray:
    """Validate an HxWx3 uint8 image and return it C-contiguous; ValueError naming what is wrong."""
    if not isinstance(img, np.ndarray):
        raise ValueError(f"{name} must be a numpy array (HxWx3 uint8 RGB), got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8, got {img.dtype}")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name} must have shape HxWx3 (3 channels, RGB), got shape {img.shape}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {img.shape}")
    return np.ascontiguousarray(img)


class Predictor:
    """Run a segmentation model file on images.

    ``Predictor("model.onnx").run(img)`` takes an HxWx3 uint8 RGB array and returns an HxW array of
    class ids (uint8 when there are at most 255 classes, else int32) at the input resolution.
    Pre-processing (resize + normalize + layout) and post-processing (upsample + argmax) run in
    native code (engine._C); the network runs in the backend chosen from the file.
    """

    def __init__(self, path: str | Path, device: str = "auto", backend: str = "auto",
                 threads: int | None = None, input_size: tuple[int, int] | None = None) -> None:
        self.path = Path(path)
        self.backend = open_backend(self.path, backend=backend, device=device, threads=threads)
        self.meta: ModelMeta = self.backend.meta
        if input_size is not None:
            self.meta.input_size = (int(input_size[0]), int(input_size[1]))
        self.timings: dict[str, float] = {}
        self._buf: np.ndarray | None = None

    @property
    def classes(self) -> list[str]:
        """Class names from the model's metadata."""
        return self.meta.classes

    @property
    def palette(self) -> np.ndarray:
        """uint8 [K,3] colours for the classes (the model's own, padded if short)."""
        return palette_array(self.meta.palette, max(self.meta.num_classes, 1))

    def _target_size(self, h: int, w: int) -> tuple[int, int]:
        return self.meta.input_size if self.meta.input_size else (h, w)

    def preprocess(self, img: np.ndarray) -> np.ndarray:
        """Resize + normalize + HWC->NCHW in one native pass, into a reused buffer."""
        oh, ow = self._target_size(img.shape[0], img.shape[1])
        if self._buf is None or self._buf.shape != (1, 3, oh, ow):
            self._buf = np.empty((1, 3, oh, ow), np.float32)
        return ops.preprocess(img, oh, ow, self.meta.mean, self.meta.std,
                              align_corners=self.meta.align_corners, out=self._buf)

    def run(self, img: np.ndarray, return_scores: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Segment one image: HxW class ids (and the winning logit per pixel when ``return_scores``)."""
        img = check_image(img)
        h, w = img.shape[:2]
        t0 = time.perf_counter()
        x = self.preprocess(img)
        t1 = time.perf_counter()
        logits = self.backend.infer(x)
        t2 = time.perf_counter()
        out = ops.resize_argmax(np.ascontiguousarray(logits, dtype=np.float32), h, w,
                                align_corners=self.meta.align_corners, return_scores=return_scores)
        t3 = time.perf_counter()
        self.timings = {"pre": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "post": (t3 - t2) * 1e3}
        if return_scores:
            labels, scores = out
            return labels[0], scores[0]
        return out[0]

    def run_batch(self, imgs: Iterable[np.ndarray]) -> list[np.ndarray]:
        """Segment several images (any sizes); returns one label map per image."""
        return [self.run(img) for img in imgs]

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Yield a label map for each frame of an iterable (e.g. a video reader)."""
        for frame in frames:
            yield self.run(frame)

    def overlay(self, img: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """Blend the palette colours of ``labels`` onto ``img``."""
        return ops.overlay(check_image(img), labels, self.palette, alpha)
