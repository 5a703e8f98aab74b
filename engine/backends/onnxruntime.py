"""ONNX Runtime backend (CPU; the CUDA execution provider where onnxruntime-gpu is installed).

On the CPU provider the session runs through IO binding: the caller's input array is bound as it is and the logits
are written straight into a numpy output buffer (no copy out of ONNX Runtime's arena). :meth:`infer` binds a fresh
output array per call (the caller owns it); :meth:`infer_scratch` reuses one output buffer while the input shape
repeats. Where binding fails (an execution provider that rejects it), the backend falls back to ``session.run``.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from engine.backends.base import Backend, Limits, parse_device, reconcile_classes
from engine.metadata import PREFIX, ModelMeta

MAX_SHAPES = 64  # input -> output shapes remembered for IO binding (more distinct shapes: the memo starts over)


def _check_onnx_file(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        raise ValueError(f"{path}: model file is empty")


def _dim(d: Any) -> int | None:
    """A static ONNX Runtime dim as an int, a symbolic / unknown one as None."""
    return int(d) if isinstance(d, int) and d > 0 else None


class OnnxRuntimeBackend(Backend):
    """An ``onnxruntime.InferenceSession`` with the model's ``segrt.*`` metadata.

    Args:
        path: the ``.onnx`` file.
        device: "auto" (CUDA provider when available), "cpu", "cuda" or "cuda:N" (a RuntimeError when the CUDA
            provider is missing or does not start, never a silent fall-back to the CPU).
        threads: intra-op threads (default: all cores).
        io_binding: run through IO binding on the CPU provider (False: always ``session.run``).
        spin: whether idle intra-op threads spin-wait for work (ONNX Runtime's default, None) or block (False).
            Spinning saves a little latency when the session has the cores to itself; next to other busy threads
            (the video pipeline's stages) it burns the CPU they need (``session.intra_op.allow_spinning``).
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None,
                 io_binding: bool = True, spin: bool | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        _check_onnx_file(self.path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = int(threads or os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        if spin is not None:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self.spin = spin
        kind, index = parse_device(device)
        index = index or 0
        available = ort.get_available_providers()
        if kind == "cuda" and "CUDAExecutionProvider" not in available:
            raise RuntimeError(f"device={device!r} asked for, but this onnxruntime has no CUDAExecutionProvider "
                               f"(install onnxruntime-gpu; available: {', '.join(available)})")
        providers: list[Any] = ["CPUExecutionProvider"]
        if kind in ("auto", "cuda") and "CUDAExecutionProvider" in available:
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        except Exception as e:  # ORT raises its own types for bad protobufs and graphs
            raise ValueError(f"{self.path}: not a loadable ONNX model ({type(e).__name__}: {e})") from None
        if kind == "cuda" and self.session.get_providers()[0] != "CUDAExecutionProvider":
            raise RuntimeError(f"{self.path}: device={device!r} asked for, but ONNX Runtime could not start its "
                               f"CUDA provider (CUDA/cuDNN libraries missing?) and fell back to "
                               f"{self.session.get_providers()[0]}")
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError(f"{self.path}: expected one 4-D image input, got {[(i.name, i.shape) for i in inputs]}")
        dims = [_dim(d) for d in inputs[0].shape]
        if dims[1] not in (None, 3):
            raise ValueError(f"{self.path}: the image input {inputs[0].name!r} must have 3 channels (RGB), "
                             f"got shape {inputs[0].shape}")
        out_shape = outputs[0].shape
        if len(out_shape) != 4:
            raise ValueError(f"{self.path}: expected a 4-D [B,K,h,w] logits output, got {outputs[0].name!r} "
                             f"with shape {out_shape}")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.limits = Limits.from_dims(dims)
        self.out_channels = _dim(out_shape[1])
        self.meta, has_meta = self._read_meta()
        reconcile_classes(self.meta, self.out_channels, str(self.path), warn=has_meta)
        self.providers = self.session.get_providers()
        self.device = f"cuda:{index}" if self.providers[0] == "CUDAExecutionProvider" else "cpu"
        self.io_binding = bool(io_binding) and self.providers[0] == "CPUExecutionProvider"
        self._binding: Any = None
        self._out_shapes: dict[tuple[int, ...], tuple[int, ...]] = {}
        self._scratch: np.ndarray | None = None
        self._lock = threading.Lock()

    def _read_meta(self) -> tuple[ModelMeta, bool]:
        """The file's ModelMeta and whether it has any ``segrt.*`` entry (warns when it has none)."""
        props = self.session.get_modelmeta().custom_metadata_map
        has_meta = any(k.startswith(PREFIX) for k in props)
        if not has_meta:
            warnings.warn(f"{self.path}: no segrt metadata in the ONNX file (not written by `segrt export`): "
                          f"running with ImageNet mean/std, align_corners=False and class names class0..N-1 "
                          f"from the output channels", stacklevel=2)
        return ModelMeta.from_props(props, source=str(self.path)), has_meta

    # ---- running -------------------------------------------------------------------------------------------

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Run the session on a float32 NCHW batch; a fresh float32 array the caller owns."""
        return self._infer(x, reuse=False)

    def infer_scratch(self, x: np.ndarray) -> np.ndarray:
        """Like :meth:`infer`, but into an output buffer reused while the input shape repeats (next call overwrites)."""
        return self._infer(x, reuse=True)

    def _infer(self, x: np.ndarray, reuse: bool) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        with self._lock:
            out_shape = self._out_shapes.get(x.shape) if self.io_binding else None
            if out_shape is None:  # first run at this shape (or no binding): learn the output shape
                y = self.session.run([self.output_name], {self.input_name: x})[0]
                if self.io_binding:
                    if len(self._out_shapes) >= MAX_SHAPES:
                        self._out_shapes.clear()
                    self._out_shapes[x.shape] = y.shape
                return y
            out = self._out_buffer(out_shape) if reuse else np.empty(out_shape, np.float32)
            try:
                self._run_bound(x, out)
            except Exception as e:  # a provider that rejects binding: fall back to session.run for good
                self.io_binding = False
                warnings.warn(f"{self.path}: ONNX Runtime IO binding failed ({type(e).__name__}: {e}); "
                              f"using session.run", stacklevel=3)
                return self.session.run([self.output_name], {self.input_name: x})[0]
            return out

    def _out_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """A view of ``shape`` on the reused output storage, grown only when too small."""
        n = int(np.prod(shape))
        if self._scratch is None or self._scratch.size < n:
            self._scratch = np.empty(n, np.float32)
        return self._scratch[:n].reshape(shape)

    def _run_bound(self, x: np.ndarray, out: np.ndarray) -> None:
        if self._binding is None:
            self._binding = self.session.io_binding()
        b = self._binding
        b.bind_input(self.input_name, "cpu", 0, np.float32, list(x.shape), x.ctypes.data)
        b.bind_output(self.output_name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
        self.session.run_with_iobinding(b)
        b.clear_binding_inputs()  # drop the references to the caller's and our buffers
        b.clear_binding_outputs()
