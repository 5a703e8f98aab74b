"""TensorRT backend: runs a ``.plan`` built by ``segrt build`` (TensorRT 10 API, CUDA GPUs only).

The plan's sidecar ``<plan>.json`` carries the model metadata and the shape profile; it is checked before TensorRT
is imported, so a wrong or stale file is reported even where TensorRT is missing. The profile is the backend's
``limits`` (the Predictor splits batches and picks sizes to fit it). Device buffers and a pinned host output buffer
for the largest shape of the profile are allocated once; ``infer`` copies in, runs ``execute_async_v3`` and copies
the logits out into the pinned buffer (then into a fresh array the caller owns; ``infer_scratch`` returns the
reused buffer itself).

CUDA's current device is per host thread, and ``infer`` may run on another thread than the constructor (the video
pipeline's inference thread starts on device 0), so every path that touches CUDA first makes the plan's device
current on the calling thread: one ``cudaGetDevice`` per call, ``cudaSetDevice`` only when it differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engine.backends.base import Backend, Limits, parse_device, reconcile_classes
from engine.build import ShapeProfile, import_tensorrt
from engine.metadata import ModelMeta
from engine.plan_sidecar import read_sidecar


def _device_index(device: str) -> int:
    kind, index = parse_device(device)
    if kind == "cpu":
        raise ValueError("device='cpu': a TensorRT plan runs on CUDA GPUs only; use the .onnx model for CPU")
    return index or 0


class TensorRTBackend(Backend):
    """A deserialized TensorRT engine with one execution context, one stream and buffers allocated once."""

    name = "tensorrt"

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"TensorRT plan not found: {self.path}")
        self.device_index = _device_index(device)
        self.info = read_sidecar(self.path)
        self.meta = ModelMeta.from_props(self.info["metadata"], source=str(self.path))
        self.profile = ShapeProfile.from_dict(self.info["profile"])
        self.limits = Limits.from_profile(self.profile.min, self.profile.max)
        self.input_name, self.output_name = str(self.info["input"]), str(self.info["output"])
        trt = import_tensorrt()
        self._trt = trt
        if str(self.info["tensorrt"]) != trt.__version__:
            raise ValueError(f"{self.path} was built with TensorRT {self.info['tensorrt']}, this is "
                             f"{trt.__version__}: plans are not portable across versions, rebuild it")
        from engine.cudart import runtime

        self._cuda = cuda = runtime()
        if cuda.device_count() <= self.device_index:
            raise RuntimeError(f"{self.path}: no CUDA device {self.device_index} (found {cuda.device_count()})")
        self._use_device()
        cc = self.info.get("compute_capability")
        if cc and cc != cuda.compute_capability(self.device_index):
            raise ValueError(f"{self.path} was built for compute capability {cc} ({self.info.get('gpu')}), this "
                             f"GPU is {cuda.compute_capability(self.device_index)}: rebuild the plan on it")
        self._load_plugins()
        self._bufs: dict[str, int] = {}
        self._host: tuple[int, int] | None = None  # pinned host output buffer (address, bytes)
        self._host_out: np.ndarray | None = None  # 1-D view of it (or of plain memory where pinning failed)
        self._f32: np.ndarray | None = None  # float32 scratch for plans with fp16 output
        self._stream = 0
        self._logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(self._logger, "")
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ValueError(f"{self.path}: TensorRT cannot deserialize the plan (see the log above)")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise RuntimeError(f"{self.path}: cannot create an execution context (out of GPU memory?)")
        self._check_io()
        self._stream = cuda.stream()
        self._allocate()

    def _load_plugins(self) -> None:
        """Load the segrt plugin library: required when the plan was built with segrt plugin ops, else optional (a
        broken library warns), the same policy as ``segrt build`` (:func:`engine.plugins.ensure_plugins`)."""
        from engine.plugins import ensure_plugins

        used = self.info.get("plugins")  # the plugin op types (older sidecars: a bool)
        ops = [str(o) for o in used] if isinstance(used, list) else (["segrt plugins"] if used else [])
        names = f" ({', '.join(ops)})" if isinstance(used, list) else ""
        ensure_plugins(ops, f"{self.path} was built with segrt TensorRT plugins{names}", str(self.path))

    def _use_device(self) -> int:
        """Make the plan's device current on the calling thread (cheap: set only when it differs); returns the
        device that was current before."""
        cuda = self._cuda
        prev = cuda.current_device()
        if prev != self.device_index:
            cuda.set_device(self.device_index)
        return prev

    def _check_io(self) -> None:
        trt, e = self._trt, self.engine
        names = [e.get_tensor_name(i) for i in range(e.num_io_tensors)]
        for name, mode in ((self.input_name, trt.TensorIOMode.INPUT), (self.output_name, trt.TensorIOMode.OUTPUT)):
            if name not in names or e.get_tensor_mode(name) != mode:
                raise ValueError(f"{self.path}: plan has no {mode.name.lower()} tensor {name!r} (has {names})")
        self.in_dtype = np.dtype(trt.nptype(e.get_tensor_dtype(self.input_name)))
        self.out_dtype = np.dtype(trt.nptype(e.get_tensor_dtype(self.output_name)))

    def _allocate(self) -> None:
        """Buffers for the profile's max shape (the output size queried from the context at that shape)."""
        if not self.context.set_input_shape(self.input_name, self.profile.max):
            raise ValueError(f"{self.path}: the plan rejects its own max shape {self.profile.max}")
        out_max = tuple(self.context.get_tensor_shape(self.output_name))
        if min(out_max, default=-1) < 0:
            raise ValueError(f"{self.path}: output shape {out_max} is data-dependent; not supported")
        self._bufs[self.input_name] = self._cuda.malloc(int(np.prod(self.profile.max)) * self.in_dtype.itemsize)
        out_bytes = int(np.prod(out_max)) * self.out_dtype.itemsize
        self._bufs[self.output_name] = self._cuda.malloc(out_bytes)
        for name, ptr in self._bufs.items():
            self.context.set_tensor_address(name, ptr)
        if len(out_max) != 4:
            raise ValueError(f"{self.path}: output {self.output_name!r} has shape {out_max}, expected [B,K,h,w]")
        self.out_channels = int(out_max[1])
        reconcile_classes(self.meta, self.out_channels, str(self.path))
        try:
            from engine.cudart import host_array

            self._host = (self._cuda.malloc_host(out_bytes), out_bytes)
            self._host_out = host_array(self._host[0], out_bytes, self.out_dtype)
        except (RuntimeError, AttributeError):  # no pinned memory to spare: plain host memory, reused the same way
            self._host_out = np.empty(int(np.prod(out_max)), self.out_dtype)

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Run the engine on a float32 ``[B,3,H,W]`` batch within the plan's shape profile; fresh float32 logits."""
        return self._run(x).astype(np.float32)  # a copy: the host buffer is overwritten by the next call

    def infer_scratch(self, x: np.ndarray) -> np.ndarray:
        """Like :meth:`infer`, but the logits are the reused host buffer (valid until the next call or close)."""
        out = self._run(x)
        if out.dtype == np.float32:
            return out
        n = out.size
        if self._f32 is None or self._f32.size < n:
            self._f32 = np.empty(n, np.float32)
        f32 = self._f32[:n].reshape(out.shape)
        np.copyto(f32, out)
        return f32

    def _run(self, x: np.ndarray) -> np.ndarray:
        """Copy in, execute, copy out into the host output buffer; returns a view of it (plan's output dtype)."""
        if not isinstance(x, np.ndarray) or x.ndim != 4:
            raise ValueError(f"{self.path}: input must be a 4-D [B,3,H,W] array, got {getattr(x, 'shape', x)!r}")
        if not self.profile.contains(x.shape):
            p = self.profile
            raise ValueError(f"{self.path}: input shape {tuple(x.shape)} is outside the plan's profile "
                             f"min {p.min} .. max {p.max}; rebuild with `segrt build --shapes` to cover it")
        x = np.ascontiguousarray(x, dtype=self.in_dtype)
        if not self.context.set_input_shape(self.input_name, x.shape):
            raise ValueError(f"{self.path}: TensorRT rejected input shape {tuple(x.shape)}")
        shape = tuple(self.context.get_tensor_shape(self.output_name))
        assert self._host_out is not None
        out = self._host_out[:int(np.prod(shape))].reshape(shape)
        self._use_device()
        cuda = self._cuda
        cuda.upload(self._bufs[self.input_name], x, self._stream)
        if not self.context.execute_async_v3(self._stream):
            raise RuntimeError(f"{self.path}: TensorRT execution failed (see the log above)")
        cuda.download(out, self._bufs[self.output_name], self._stream)
        cuda.synchronize(self._stream)
        return out

    def close(self) -> None:
        """Free the device buffers and the stream (also done on garbage collection)."""
        cuda: Any = getattr(self, "_cuda", None)
        if cuda is None:
            return
        prev = None
        if getattr(self, "_bufs", None) or getattr(self, "_host", None) or getattr(self, "_stream", 0):
            try:
                prev = self._use_device()
            except RuntimeError:  # no usable CUDA any more (e.g. at interpreter exit): free what can be freed
                pass
        for ptr in getattr(self, "_bufs", {}).values():
            cuda.free(ptr)
        self._bufs = {}
        host = getattr(self, "_host", None)
        if host is not None:
            self._host_out = None
            cuda.free_host(host[0])
            self._host = None
        cuda.destroy_stream(getattr(self, "_stream", 0))
        self._stream = 0
        if prev is not None and prev != self.device_index:  # close() may run on any thread (garbage collection):
            try:                                            # leave that thread on the device it had
                cuda.set_device(prev)
            except RuntimeError:
                pass

    def __del__(self) -> None:
        self.close()
