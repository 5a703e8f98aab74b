"""engine.Predictor: image in, class-id map out, over any backend (batched, sliding-window, multi-scale + flip)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

# The native kernels' OpenMP threads must not busy-wait between calls: they then fight ONNX Runtime's threads (and
# the video pipeline's) for the cores. On 2 cores, 360x640 frames, demo model: pre-processing 81 -> 2764 FPS and the
# sequential video loop 16 -> 136 FPS with PASSIVE. It must be set before libgomp loads (engine._C is imported on
# first use, after this); a value the user set wins. Where torch was imported first, its libgomp is already set up.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from engine import ops, tta  # noqa: E402
from engine.backends import open_backend  # noqa: E402
from engine.backends.base import Backend, Limits, reconcile_classes  # noqa: E402
from engine.batching import infer_in_chunks  # noqa: E402
from engine.metadata import ModelMeta, round_up  # noqa: E402
from engine.palettes import resolve_palette  # noqa: E402

MODES = ("whole", "slide")


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


def _pair(v: int | Sequence[int] | None, name: str) -> tuple[int, int] | None:
    if v is None:
        return None
    t = (int(v), int(v)) if isinstance(v, int | np.integer) else tuple(int(x) for x in v)
    if len(t) != 2 or min(t) <= 0:
        raise ValueError(f"{name} must be a positive int or (h, w), got {v!r}")
    return t  # type: ignore[return-value]


class Predictor:
    """Run a segmentation model file on images.

    ``Predictor("model.onnx").run(img)`` takes an HxWx3 uint8 RGB array and returns an HxW array of
    class ids (uint8 when there are at most 255 classes, else int32) at the input resolution.
    Pre-processing (resize + normalize + layout) and post-processing (upsample + argmax) run in
    native code (engine._C); the network runs in the backend chosen from the file (or a ``Backend`` given).

    ``mode="slide"`` runs sliding windows of ``crop_size`` every ``stride`` pixels over the image at its own
    size (times each scale); ``scales`` and ``flip`` average logits over resized and mirrored copies. A
    Predictor reuses its buffers, so one instance must not be used from two threads at once.
    ``precision`` ("fp16"/"bf16"), ``compile`` and ``cuda_graphs`` apply to torch artifacts (.pt/.pth/.pt2).
    ``spin=False`` makes ONNX Runtime's idle threads block instead of spin-waiting (for sharing the cores with
    other work, as ``segrt video`` does; None keeps the runtime's default).

    Backend limits (``backend.limits``: a TensorRT profile, an ONNX model's static dims) are respected: batches
    are split (or padded) to the allowed batch range, a model with a fixed input size gets images resized to it
    (as a metadata ``input_size`` would), and a network size outside an allowed H/W range is a ValueError naming
    the range. Buffers: ``run``/``run_batch``/``logits``/``infer``/``postprocess`` return arrays the caller owns
    (never overwritten later); internal scratch (inputs, the backend's reused output, padding) is reused. Pass
    ``out=`` to ``run``/``postprocess`` to reuse a labels buffer of your own.
    """

    def __init__(self, path: str | Path | Backend, device: str = "auto", backend: str = "auto",
                 threads: int | None = None, input_size: tuple[int, int] | None = None, *,
                 mode: str = "whole", crop_size: int | Sequence[int] | None = None,
                 stride: int | Sequence[int] | None = None, scales: Sequence[float] = (1.0,),
                 flip: bool = False, batch_size: int = 8, palette: str | None = None,
                 precision: str | None = None, compile: bool = False, cuda_graphs: bool = False,
                 spin: bool | None = None) -> None:
        if isinstance(path, Backend):
            self.path, self.backend = Path(getattr(path, "path", "<backend>")), path
        else:
            self.path = Path(path)
            torch_opts = {k: v for k, v in (("precision", precision), ("compile", compile),
                                              ("cuda_graphs", cuda_graphs)) if v}
            self.backend = open_backend(self.path, backend=backend, device=device, threads=threads, spin=spin,
                                        **torch_opts)
        self.meta: ModelMeta = self.backend.meta
        self.limits: Limits = getattr(self.backend, "limits", None) or Limits()
        self._channels = getattr(self.backend, "out_channels", None)
        reconcile_classes(self.meta, self._channels, str(self.path))
        if input_size is not None:
            self.meta.input_size = _pair(input_size, "input_size")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self._fit_fixed_size()
        self.crop_size = _pair(crop_size, "crop_size") or self.meta.input_size
        if mode == "slide" and self.crop_size is None:
            raise ValueError("mode='slide' needs crop_size (the model's metadata has no input_size)")
        d = self.meta.size_divisor
        if mode == "slide" and (self.crop_size[0] % d or self.crop_size[1] % d):  # type: ignore[index]
            raise ValueError(f"crop_size {self.crop_size} must be a multiple of the model's size_divisor {d}")
        self.stride = _pair(stride, "stride")
        if mode == "slide" and self.stride is None:
            ch, cw = self.crop_size  # type: ignore[misc]
            self.stride = (max(1, ch * 2 // 3), max(1, cw * 2 // 3))
        if mode == "slide":
            tta.check_window(self.crop_size, self.stride)  # type: ignore[arg-type]
        self.scales = tuple(float(s) for s in scales)
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales must be positive numbers, got {scales!r}")
        self.flip = bool(flip)
        self._check_limits()
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.palette_name = palette
        self.timings: dict[str, float] = {}
        self._bufs: dict[str, np.ndarray] = {}

    def _limit_error(self, what: str) -> ValueError:
        hint = "pass input_size= (or mode='slide' with crop_size=) within it"
        if getattr(self.backend, "name", "") == "tensorrt":
            hint += ", or rebuild the plan with `segrt build --shapes` covering it"
        return ValueError(f"{self.path}: {what} (model limits: {self.limits.describe()}); {hint}")

    def _fit_fixed_size(self) -> None:
        """A fixed-size model runs at its size: metadata / ``input_size=`` must agree with it, or are set to it."""
        fixed = self.limits.fixed_hw
        if fixed is None:
            return
        if self.meta.input_size is not None and tuple(self.meta.input_size) != fixed:
            raise self._limit_error(f"input size {self.meta.input_size[0]}x{self.meta.input_size[1]} asked for "
                                    f"(input_size= or metadata), but the model's input is fixed at "
                                    f"{fixed[0]}x{fixed[1]}")
        self.meta.input_size = fixed

    def _check_limits(self) -> None:
        """Options the backend's limits rule out, reported at construction."""
        fixed = self.limits.fixed_hw
        if self.mode == "slide":
            err = self.limits.hw_error(*self.crop_size)  # type: ignore[misc]
            if err:
                raise self._limit_error(f"slide crop_size: {err}")
        elif fixed and self.scales != (1.0,):
            raise self._limit_error(f"scales={self.scales} resize the network input, but the model's input is "
                                    f"fixed at {fixed[0]}x{fixed[1]}; use mode='slide' for multi-scale")

    @property
    def classes(self) -> list[str]:
        """Class names from the model's metadata."""
        return self.meta.classes

    @property
    def palette(self) -> np.ndarray:
        """uint8 [K,3] colours: ``palette=`` override, else the model's own, else a built-in one for K classes."""
        return resolve_palette(max(self.meta.num_classes, 1), self.meta.palette, self.palette_name)

    @property
    def simple(self) -> bool:
        """True for plain whole-image inference at one scale without flip (the batched, pipelined fast path)."""
        return self.mode == "whole" and self.scales == (1.0,) and not self.flip

    def _batch(self, n: int) -> int:
        """``n`` capped at the backend's largest batch."""
        hi = self.limits.max_batch
        return max(1, min(n, hi) if hi else n)

    def _buffer(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        """A C-contiguous float32 view of ``shape`` on storage kept between calls; grown only when too small."""
        n = int(np.prod(shape))
        flat = self._bufs.get(key)
        if flat is None or flat.size < n:
            flat = self._bufs[key] = np.empty(n, np.float32)
        return flat[:n].reshape(shape)

    def input_size_for(self, h: int, w: int) -> tuple[int, int]:
        """Network input (H, W) for an image of ``h x w`` in whole mode at scale 1 (rounded up to the model's
        ``size_divisor``)."""
        return self._divisible(*(self.meta.input_size if self.meta.input_size else (h, w)))

    def _divisible(self, h: int, w: int) -> tuple[int, int]:
        return round_up((h, w), getattr(self.meta, "size_divisor", 1))

    def preprocess(self, img: np.ndarray, size: tuple[int, int] | None = None,
                   out: np.ndarray | None = None) -> np.ndarray:
        """Resize + normalize + HWC->NCHW in one native pass into ``out`` (default: a reused buffer) ``[1,3,H,W]``."""
        oh, ow = size or self.input_size_for(img.shape[0], img.shape[1])
        if out is None:
            out = self._buffer("pre", (1, 3, oh, ow))
        return ops.preprocess(img, oh, ow, self.meta.mean, self.meta.std,
                              align_corners=self.meta.align_corners, out=out)

    def infer(self, x: np.ndarray) -> np.ndarray:
        """The network alone: ``[B,3,H,W]`` -> float32 C-contiguous logits ``[B,K,h,w]`` the caller owns.

        Batches outside the backend's batch limits are split (or padded); an H x W outside its limits is a
        ValueError naming them.
        """
        return self._infer(x, scratch=False)

    def _infer(self, x: np.ndarray, scratch: bool) -> np.ndarray:
        """:meth:`infer`; with ``scratch`` the result may be reused storage, valid until the next inference."""
        if not isinstance(x, np.ndarray) or x.ndim != 4:
            raise ValueError(f"{self.path}: network input must be a [B,3,H,W] float32 array, got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        err = self.limits.hw_error(x.shape[2], x.shape[3])
        if err:
            raise self._limit_error(err)
        be = self.backend
        fn = getattr(be, "infer_scratch", be.infer) if scratch else be.infer
        return infer_in_chunks(fn, x, self.limits.batch, self._buffer if scratch else self._owned,
                               self._check_logits)

    def _owned(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        """Storage for :func:`infer_in_chunks` when the result goes to the caller: fresh logits, reused padding."""
        return self._buffer(key, shape) if key == "pad" else np.empty(shape, np.float32)

    def _check_logits(self, logits: object, in_shape: tuple[int, ...]) -> np.ndarray:
        """Shape-check a backend's output and its channel count against the classes; C-contiguous float32."""
        if not isinstance(logits, np.ndarray) or logits.ndim != 4 or logits.shape[0] != in_shape[0]:
            shape = getattr(logits, "shape", type(logits).__name__)
            raise ValueError(f"{self.path}: backend returned {shape} for input {tuple(in_shape)}, expected [B,K,h,w]")
        if logits.shape[1] != self._channels:
            reconcile_classes(self.meta, logits.shape[1], str(self.path))
            self._channels = logits.shape[1]
        return np.ascontiguousarray(logits, dtype=np.float32)

    def postprocess(self, logits: np.ndarray, h: int, w: int, return_scores: bool = False,
                    out: np.ndarray | None = None,
                    scores_out: np.ndarray | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Fused upsample + argmax of ``[B,K,h',w']`` logits to ``[B,h,w]`` labels (and winning logits).

        The result is fresh unless ``out`` (labels ``[B,h,w]``, uint8 for <= 255 classes else int32) and
        ``scores_out`` (float32 ``[B,h,w]``) are given: then they are written in place and returned.
        """
        return ops.resize_argmax(logits, h, w, align_corners=self.meta.align_corners, return_scores=return_scores,
                                 out=out, scores_out=scores_out)

    def _scale_logits(self, img: np.ndarray, scale: float) -> np.ndarray:
        """Logits ``[1,K,h,w]`` of one scale (flip-averaged when ``flip``)."""
        h, w = img.shape[:2]
        if self.mode == "slide":
            size = tta.scaled_size(h, w, scale)
            x = self.preprocess(img, size)
            bs = self._batch(self.batch_size)
            crop_buf = self._buffer("crops", (bs, 3, *self.crop_size))  # type: ignore[misc]
            infer = lambda c: self._infer(c, scratch=True)  # noqa: E731  (slide_logits uses each result at once)
            run = lambda t: tta.slide_logits(t, infer, self.crop_size, self.stride, bs, crop_buf)  # noqa: E731
            logits = run(x)
            if self.flip:
                logits = logits + run(np.ascontiguousarray(x[..., ::-1]))[..., ::-1]
                logits *= 0.5
            return logits
        size = self._divisible(*tta.scaled_size(*self.input_size_for(h, w), scale))
        x = self._buffer("pre2" if self.flip else "pre", (2 if self.flip else 1, 3, *size))
        self.preprocess(img, size, out=x[:1])
        if self.flip:
            x[1] = x[0, :, :, ::-1]
            logits = self._infer(x, scratch=True)
            return np.ascontiguousarray(0.5 * (logits[:1] + logits[1:, :, :, ::-1]))
        return self._infer(x, scratch=False)  # one part of several scales: kept while the others run

    def logits(self, img: np.ndarray) -> np.ndarray:
        """Logits ``[1,K,h,w]`` averaged over scales and flips, at the common resolution of the mode.

        Whole mode: the largest logit map among the scales. Slide mode: the image's own resolution.
        """
        img = check_image(img)
        parts = [self._scale_logits(img, s) for s in self.scales]
        if len(parts) == 1:
            return parts[0]
        if self.mode == "slide":
            size = img.shape[:2]
        else:
            size = max((p.shape[2:] for p in parts), key=lambda s: s[0] * s[1])
        return tta.average_logits(parts, tuple(size), self.meta.align_corners)

    def run(self, img: np.ndarray, return_scores: bool = False,
            out: np.ndarray | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Segment one image: HxW class ids (and the winning logit per pixel when ``return_scores``).

        The labels are a fresh array, or ``out`` (HxW, uint8 for <= 255 classes else int32) written in place.
        """
        img = check_image(img)
        h, w = img.shape[:2]
        t0 = time.perf_counter()
        if self.simple:
            x = self.preprocess(img)
            t1 = time.perf_counter()
            logits = self._infer(x, scratch=True)
        else:
            t1 = t0
            logits = self.logits(img)
        t2 = time.perf_counter()
        out = self.postprocess(logits, h, w, return_scores, out=None if out is None else out[None])
        t3 = time.perf_counter()
        self.timings = {"pre": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "post": (t3 - t2) * 1e3}
        if return_scores:
            labels, scores = out
            return labels[0], scores[0]
        return out[0]

    def run_batch(self, imgs: Iterable[np.ndarray], return_scores: bool = False,
                  batch_size: int | None = None) -> list:
        """Segment several images; returns one label map (or (labels, scores)) per image, in order.

        Images that share a network input size go through the backend together as one ``[B,3,H,W]`` batch
        (up to ``batch_size``, default the Predictor's); the pre-processing buffer is reused between calls.
        """
        imgs = [check_image(im, f"imgs[{i}]") for i, im in enumerate(imgs)]
        if not self.simple:
            return [self.run(im, return_scores) for im in imgs]
        bs = self._batch(int(batch_size or self.batch_size))
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(imgs):
            groups.setdefault(self.input_size_for(*im.shape[:2]), []).append(i)
        results: list = [None] * len(imgs)
        times = {"pre": 0.0, "infer": 0.0, "post": 0.0}
        for size, idx in groups.items():
            for s in range(0, len(idx), bs):
                chunk = idx[s:s + bs]
                t0 = time.perf_counter()
                x = self._buffer("batch", (min(bs, len(idx)), 3, *size))[:len(chunk)]
                for k, i in enumerate(chunk):
                    self.preprocess(imgs[i], size, out=x[k:k + 1])
                t1 = time.perf_counter()
                logits = self._infer(x, scratch=True)
                t2 = time.perf_counter()
                self._post_chunk(logits, [imgs[i].shape[:2] for i in chunk], chunk, results, return_scores)
                t3 = time.perf_counter()
                for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
                    times[k] += v * 1e3
        self.timings = times
        return results

    def _post_chunk(self, logits: np.ndarray, sizes: list[tuple[int, int]], chunk: list[int],
                    results: list, return_scores: bool) -> None:
        if len(set(sizes)) == 1:  # one fused call for the whole batch
            out = self.postprocess(logits, *sizes[0], return_scores)
            outs = [(out[0][k], out[1][k]) if return_scores else out[k] for k in range(len(chunk))]
        else:
            outs = []
            for k, (h, w) in enumerate(sizes):
                o = self.postprocess(logits[k:k + 1], h, w, return_scores)
                outs.append((o[0][0], o[1][0]) if return_scores else o[0])
        for i, o in zip(chunk, outs):
            results[i] = o

    def stream(self, frames: Iterable[np.ndarray], batch_size: int = 1) -> Iterator[np.ndarray]:
        """Yield a label map for each frame of an iterable (e.g. a video reader), ``batch_size`` frames at a time."""
        pending: list[np.ndarray] = []
        for frame in frames:
            pending.append(frame)
            if len(pending) >= batch_size:
                yield from self.run_batch(pending, batch_size=batch_size)
                pending = []
        if pending:
            yield from self.run_batch(pending, batch_size=batch_size)

    def overlay(self, img: np.ndarray, labels: np.ndarray, alpha: float = 0.5,
                out: np.ndarray | None = None) -> np.ndarray:
        """Blend the palette colours of ``labels`` onto ``img`` (into ``out`` when given)."""
        return ops.overlay(check_image(img), labels, self.palette, alpha, out=out)
