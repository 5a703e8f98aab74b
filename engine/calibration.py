"""INT8 calibration data for ``segrt build --int8 --calib DIR``.

:class:`CalibrationData` reads the images of a folder and pre-processes them exactly like ``engine.Predictor`` does
for a network input of H x W (``engine.ops.preprocess`` with the model's mean / std / align_corners), assembles
float32 batches of exactly ``batch_shape`` and reads / writes the calibration cache atomically. TensorRT calibrates
at the calibration profile's OPT shape, so the builder passes that shape (batch and H x W), whatever the model's
metadata ``input_size`` says. It needs no TensorRT; :func:`make_calibrator` wraps it in a
``tensorrt.IInt8EntropyCalibrator2`` that checks every batch against the device buffer before TensorRT reads it.

Implicit INT8 calibration (``IInt8EntropyCalibrator2``, ``IBuilderConfig.int8_calibrator``) is deprecated since
TensorRT 10.1 in favour of explicit quantization (Q/DQ nodes in the ONNX graph); it still works in TensorRT 10, and
:func:`check_calibration_api` gives a clear error on a TensorRT that no longer has it.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from engine import ops
from engine.errors import MissingDependencyError
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
    """Pre-processed calibration batches of exactly ``batch_shape`` ``[B, 3, H, W]`` from an image folder (sorted,
    recursive; at most ``max_images``). Each image is resized to H x W like ``engine.Predictor(input_size=(H, W))``.

    ``cache_key`` (optional, e.g. from :meth:`fingerprint`) is stored beside the cache as ``<cache>.json``; a cache
    whose stored key differs (another model, image set or shape) is ignored with a warning, so TensorRT recalibrates
    instead of silently reusing stale scales.
    """

    def __init__(self, folder: str | Path, meta: ModelMeta, batch_shape: tuple[int, int, int, int],
                 cache_path: str | Path | None = None, max_images: int | None = 512,
                 cache_key: str | None = None) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"calibration folder not found: {self.folder}")
        files = sorted(p for p in self.folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if max_images is not None:
            files = files[: int(max_images)]
        if not files:
            raise ValueError(f"calibration folder {self.folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        if len(batch_shape) != 4:
            raise ValueError(f"calibration batch shape must be [B, 3, H, W], got {batch_shape}")
        b, c, h, w = (int(v) for v in batch_shape)
        if c != 3 or min(b, h, w) <= 0:
            raise ValueError(f"calibration batch shape must be [B, 3, H, W] with positive sizes, got {batch_shape}")
        self.files = files
        self.meta = meta
        self.batch_size = b
        self.size = (h, w)
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self.cache_key = cache_key

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(B, 3, H, W)`` of every batch."""
        return (self.batch_size, 3, *self.size)

    @property
    def nbytes(self) -> int:
        """Bytes of one float32 batch."""
        return int(np.prod(self.shape)) * 4

    def __len__(self) -> int:
        """Number of batches (the last one is padded by repeating images)."""
        return -(-len(self.files) // self.batch_size)

    def fingerprint(self, extra: str = "") -> str:
        """SHA-256 over the batch shape, pre-processing, image list (paths, sizes, mtimes) and ``extra`` (the model)."""
        doc = {"shape": self.shape, "mean": self.meta.mean, "std": self.meta.std,
               "align_corners": self.meta.align_corners, "extra": extra,
               "files": [(str(f.relative_to(self.folder)), f.stat().st_size, f.stat().st_mtime_ns) for f in self.files]}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def preprocess(self, img: np.ndarray) -> np.ndarray:
        """One image -> ``[1, 3, H, W]`` float32, the call ``engine.Predictor.preprocess`` makes at size H x W."""
        oh, ow = self.size
        return ops.preprocess(img, oh, ow, self.meta.mean, self.meta.std, align_corners=self.meta.align_corners)

    def batches(self) -> Iterator[np.ndarray]:
        """C-contiguous float32 batches of :attr:`shape` over all images."""
        for start in range(0, len(self.files), self.batch_size):
            chunk = self.files[start:start + self.batch_size]
            chunk = chunk + [chunk[i % len(chunk)] for i in range(self.batch_size - len(chunk))]
            batch = np.empty(self.shape, np.float32)
            for i, f in enumerate(chunk):
                batch[i] = self.preprocess(read_rgb(f))[0]
            yield batch

    def _key_path(self) -> Path:
        assert self.cache_path is not None
        return Path(str(self.cache_path) + ".json")

    def read_cache(self) -> bytes | None:
        """The cache file's bytes, or None when there is no (non-empty, matching) cache: TensorRT then calibrates."""
        if self.cache_path is None or not self.cache_path.is_file():
            return None
        if self.cache_key is not None and self._key_path().is_file():
            try:
                stored = json.loads(self._key_path().read_text()).get("key")
            except (ValueError, AttributeError):
                stored = None
            if stored != self.cache_key:
                warnings.warn(f"INT8 calibration cache {self.cache_path} was made for another model, image set or "
                              f"shape ({self._key_path().name} differs): ignoring it and calibrating again",
                              stacklevel=2)
                return None
        data = self.cache_path.read_bytes()
        return data or None

    def write_cache(self, data: bytes | memoryview) -> None:
        """Store the calibration table (and its key) atomically (no-op without a cache path)."""
        if self.cache_path is not None:
            write_atomic(self.cache_path, bytes(data))
            if self.cache_key is not None:
                doc = {"key": self.cache_key, "shape": list(self.shape), "images": len(self.files)}
                write_atomic(self._key_path(), json.dumps(doc) + "\n")


def check_calibration_api(trt: Any) -> None:
    """MissingDependencyError when this TensorRT lacks implicit INT8 calibration (deprecated since 10.1)."""

    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise MissingDependencyError(calibration_removed_message(trt, "tensorrt.IInt8EntropyCalibrator2"))


def calibration_removed_message(trt: Any, what: str) -> str:
    """The error text for a TensorRT without ``what`` (an implicit-calibration API)."""
    return (f"TensorRT {getattr(trt, '__version__', '?')} has no {what}: implicit INT8 calibration (--int8 --calib) "
            "was deprecated in TensorRT 10.1 and is gone from this release. Build an explicitly quantized ONNX model "
            "(Q/DQ nodes) without --int8, or use a TensorRT 10 release that still calibrates")


def check_batch(batch: np.ndarray, shape: tuple[int, ...], nbytes: int) -> None:
    """ValueError unless ``batch`` is a C-contiguous float32 array of ``shape`` filling exactly ``nbytes``."""
    if not isinstance(batch, np.ndarray) or batch.dtype != np.float32 or tuple(batch.shape) != tuple(shape) \
            or not batch.flags.c_contiguous or batch.nbytes != nbytes:
        got = (getattr(batch, "shape", None), getattr(batch, "dtype", type(batch).__name__))
        raise ValueError(f"INT8 calibration batch has shape/dtype {got}, but TensorRT calibrates at the calibration "
                         f"profile's OPT shape {tuple(shape)} float32 ({nbytes} bytes): refusing to hand TensorRT a "
                         "buffer of the wrong size")


def make_calibrator(trt: Any, data: CalibrationData, input_name: str | None = None) -> Any:
    """A ``trt.IInt8EntropyCalibrator2`` feeding ``data``'s batches through one device buffer (freed with it).

    Every batch is checked against the buffer (:func:`check_batch`) before TensorRT gets its address. A failure
    inside a callback cannot propagate through TensorRT, so it ends calibration (``get_batch`` returns None) and
    is kept in the calibrator's ``error``; the builder raises it after ``build_serialized_network`` returns.
    """
    from engine.cudart import runtime

    check_calibration_api(trt)
    cuda = runtime()

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.error: Exception | None = None
            self.cache_error: Exception | None = None  # a calibration table that could not be saved
            self.batches_fed = 0
            self.shape, self.nbytes = data.shape, data.nbytes
            self.stream = cuda.stream()
            self.device = cuda.malloc(self.nbytes)
            self.it = data.batches()

        def get_batch_size(self) -> int:
            return data.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.error is not None:
                return None
            try:
                if len(names) != 1 or (input_name is not None and names[0] != input_name):
                    raise ValueError(f"INT8 calibration feeds one image input {input_name!r}, but TensorRT asks for "
                                     f"{list(names)}")
                batch = next(self.it, None)
                if batch is None:
                    return None
                check_batch(batch, self.shape, self.nbytes)
                cuda.upload(self.device, batch, self.stream)
                cuda.synchronize(self.stream)
            except Exception as e:  # any failure must end calibration, not cross into TensorRT
                self.error = e.with_traceback(None)  # no frame -> self cycle: the buffer is freed with the calibrator
                return None
            self.batches_fed += 1
            return [self.device]

        def read_calibration_cache(self) -> bytes | None:
            return data.read_cache()

        def write_calibration_cache(self, cache: memoryview) -> None:
            try:
                data.write_cache(cache)
            except Exception as e:  # cannot cross into TensorRT either; the plan is still good, so only warned of
                self.cache_error = e.with_traceback(None)

        def __del__(self) -> None:
            cuda.free(getattr(self, "device", 0))
            cuda.destroy_stream(getattr(self, "stream", 0))

    return _Calibrator()


def configure_int8(trt: Any, config: Any, data: CalibrationData, input_name: str, profile: Any) -> Any:
    """Set up implicit INT8 calibration on a builder config: the INT8 flag, a calibrator over ``data`` (whose batches
    must have the OPT shape of ``profile``) and ``profile`` as the calibration profile. Returns the calibrator (keep it
    alive until the build ends; its ``error`` says whether a batch failed).

    ``IBuilderConfig.int8_calibrator`` and ``set_calibration_profile`` are deprecated since TensorRT 10.1 (explicit
    quantization supersedes them) but still supported in 10.x; a TensorRT without them is a clear error.
    """

    config.set_flag(trt.BuilderFlag.INT8)
    if not hasattr(config, "int8_calibrator"):
        raise MissingDependencyError(calibration_removed_message(trt, "IBuilderConfig.int8_calibrator"))
    calibrator = make_calibrator(trt, data, input_name)
    config.int8_calibrator = calibrator  # TensorRT calibrates at the calibration profile's OPT shape = data.shape
    if config.set_calibration_profile(profile) is False:
        raise ValueError(f"TensorRT rejected the calibration profile for input {input_name!r} (OPT {data.shape})")
    return calibrator
