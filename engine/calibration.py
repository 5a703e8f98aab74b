"""INT8 calibration data for ``segrt build --int8 --calib DIR``.

:class:`CalibrationData` reads the images of a folder and pre-processes them exactly like ``engine.Predictor``
(``engine.ops.preprocess`` with the model's mean / std / align_corners, at the model's ``input_size`` or else the
profile's optimal H x W), assembles ``[B, 3, H, W]`` float32 batches and reads / writes the calibration cache
atomically. It needs no TensorRT; :func:`make_calibrator` wraps it in a ``tensorrt.IInt8EntropyCalibrator2``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from engine import ops
from engine.fileio import write_atomic
from engine.metadata import ModelMeta

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def read_rgb(path: Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB; ValueError naming the file when it cannot be decoded."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as e:  # PIL raises several types for unreadable files
        raise ValueError(f"calibration image {path} cannot be read: {e}") from None


class CalibrationData:
    """Pre-processed calibration batches from an image folder (sorted, recursive; at most ``max_images``)."""

    def __init__(self, folder: str | Path, meta: ModelMeta, batch_shape: tuple[int, int, int, int],
                 cache_path: str | Path | None = None, max_images: int | None = 512) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"calibration folder not found: {self.folder}")
        files = sorted(p for p in self.folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if max_images is not None:
            files = files[: int(max_images)]
        if not files:
            raise ValueError(f"calibration folder {self.folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        b, c, h, w = (int(v) for v in batch_shape)
        if c != 3 or min(b, h, w) <= 0:
            raise ValueError(f"calibration batch shape must be [B, 3, H, W] with positive sizes, got {batch_shape}")
        self.files = files
        self.meta = meta
        self.batch_size = b
        self.size = tuple(meta.input_size) if meta.input_size else (h, w)
        self.cache_path = Path(cache_path) if cache_path is not None else None

    def __len__(self) -> int:
        """Number of batches (the last one is padded by repeating images)."""
        return -(-len(self.files) // self.batch_size)

    def preprocess(self, img: np.ndarray) -> np.ndarray:
        """One image -> ``[1, 3, H, W]`` float32, the same call ``engine.Predictor.preprocess`` makes."""
        oh, ow = self.size
        return ops.preprocess(img, oh, ow, self.meta.mean, self.meta.std, align_corners=self.meta.align_corners)

    def batches(self) -> Iterator[np.ndarray]:
        """C-contiguous float32 ``[B, 3, H, W]`` batches over all images."""
        oh, ow = self.size
        for start in range(0, len(self.files), self.batch_size):
            chunk = self.files[start:start + self.batch_size]
            chunk = chunk + [chunk[i % len(chunk)] for i in range(self.batch_size - len(chunk))]
            batch = np.empty((self.batch_size, 3, oh, ow), np.float32)
            for i, f in enumerate(chunk):
                batch[i] = self.preprocess(read_rgb(f))[0]
            yield batch

    def read_cache(self) -> bytes | None:
        """The cache file's bytes, or None when there is no (non-empty) cache: TensorRT then calibrates."""
        if self.cache_path is None or not self.cache_path.is_file():
            return None
        data = self.cache_path.read_bytes()
        return data or None

    def write_cache(self, data: bytes | memoryview) -> None:
        """Store the calibration table atomically (no-op without a cache path)."""
        if self.cache_path is not None:
            write_atomic(self.cache_path, bytes(data))


def make_calibrator(trt: Any, data: CalibrationData) -> Any:
    """A ``trt.IInt8EntropyCalibrator2`` feeding ``data``'s batches through one device buffer (freed with it)."""
    from engine.cudart import runtime

    cuda = runtime()

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            oh, ow = data.size
            self.nbytes = data.batch_size * 3 * oh * ow * 4
            self.stream = cuda.stream()
            self.device = cuda.malloc(self.nbytes)
            self.it = data.batches()

        def get_batch_size(self) -> int:
            return data.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self.it, None)
            if batch is None:
                return None
            cuda.upload(self.device, batch, self.stream)
            cuda.synchronize(self.stream)
            return [self.device] * len(names)

        def read_calibration_cache(self) -> bytes | None:
            return data.read_cache()

        def write_calibration_cache(self, cache: memoryview) -> None:
            data.write_cache(cache)

        def __del__(self) -> None:
            cuda.free(getattr(self, "device", 0))
            cuda.destroy_stream(getattr(self, "stream", 0))

    return _Calibrator()
