"""A stand-in for the ``tensorrt`` module and engine.cudart, enough to run TensorRTBackend without TensorRT or a GPU.

The fake engine computes the tiny test network of tests/conftest.make_tiny_onnx (1x1 conv + 2x2 average pool) on
"device" memory that is plain host memory, and checks input shapes against the plan's profile like TensorRT.
FakeCuda keeps CUDA's current device per host thread and records which device each call ran on. The fake builder
(Builder, OnnxParser, builder config, profiles, timing cache, calibration) is in tests/fake_trt_builder.py.
"""

from __future__ import annotations

import ctypes
import enum
import threading
import types
from pathlib import Path

import numpy as np
import pytest

from engine.build import parse_shapes
from engine.metadata import ModelMeta
from engine.plan_sidecar import write_sidecar

VERSION = "10.16.1"


class FakeCuda:
    """engine.cudart.CudaRuntime over host memory; records pinned allocations, set_device calls per thread and the
    current device of the calling thread at every allocation, copy, sync and execution (``ops``)."""

    def __init__(self, cc: str = "9.0", devices: int = 1, pinned: bool = True) -> None:
        self.cc, self.devices, self.pinned = cc, devices, pinned
        self.mem: dict[int, bytearray] = {}
        self.host: dict[int, ctypes.Array] = {}
        self.freed: list[int] = []
        self._tls = threading.local()
        self.set_device_calls: list[tuple[str, int]] = []  # (thread name, device)
        self.ops: list[tuple[str, str, int]] = []  # (call, thread name, current device)
        self._next = 0

    def _op(self, name: str) -> None:
        self.ops.append((name, threading.current_thread().name, self.current_device()))

    def device_count(self) -> int:
        return self.devices

    def set_device(self, index: int) -> None:
        if not 0 <= index < self.devices:
            raise RuntimeError(f"CUDA cudaSetDevice({index}) failed: invalid device ordinal")
        self._tls.device = index
        self.set_device_calls.append((threading.current_thread().name, index))

    def current_device(self) -> int:
        return getattr(self._tls, "device", 0)  # like CUDA: a new thread starts on device 0

    def compute_capability(self, index: int | None = None) -> str:
        return self.cc

    def device_name(self, index: int | None = None) -> str:
        return "Fake GPU"

    def malloc(self, nbytes: int) -> int:
        self._op("malloc")
        self._next += 1
        ptr = 0x1000 * self._next
        self.mem[ptr] = bytearray(max(1, nbytes))
        return ptr

    def malloc_host(self, nbytes: int) -> int:
        if not self.pinned:
            raise RuntimeError("CUDA cudaMallocHost failed: out of memory")
        buf = (ctypes.c_uint8 * max(1, nbytes))()
        self.host[ctypes.addressof(buf)] = buf
        return ctypes.addressof(buf)

    def free(self, ptr: int) -> None:
        self._op("free")
        self.freed.append(ptr)

    def free_host(self, ptr: int) -> None:
        self.freed.append(ptr)

    def stream(self) -> int:
        self._op("stream")
        return 7

    def destroy_stream(self, stream: int) -> None:
        pass

    def upload(self, dst: int, src: np.ndarray, stream: int) -> None:
        self._op("upload")
        if src.nbytes > len(self.mem[dst]):
            raise AssertionError(f"upload of {src.nbytes} bytes into a {len(self.mem[dst])}-byte device buffer")
        self.mem[dst][:src.nbytes] = np.ascontiguousarray(src).tobytes()

    def download(self, dst: np.ndarray, src: int, stream: int) -> None:
        self._op("download")
        dst[...] = np.frombuffer(self.mem[src], dst.dtype, count=dst.size).reshape(dst.shape)

    def synchronize(self, stream: int) -> None:
        self._op("synchronize")


class TensorIOMode(enum.Enum):
    INPUT = 1
    OUTPUT = 2


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.e, self.shape, self.addr = engine, None, {}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        p = self.e.profile
        if not p.contains(tuple(shape)):
            return False
        self.shape = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        b, _, h, w = self.shape
        return self.shape if name == "input" else (b, self.e.w.shape[0], h // 2, w // 2)

    def set_tensor_address(self, name: str, ptr: int) -> None:
        self.addr[name] = ptr

    def execute_async_v3(self, stream: int) -> bool:
        cuda = self.e.cuda
        cuda._op("execute")
        x = np.frombuffer(cuda.mem[self.addr["input"]], np.float32, count=int(np.prod(self.shape)))
        c = np.einsum("kc,nchw->nkhw", self.e.w, x.reshape(self.shape))
        n, k, h, w = c.shape
        c = c[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, k, h // 2, 2, w // 2, 2).mean((3, 5))
        self.e.runs += 1
        cuda.upload(self.addr["logits"], c.astype(self.e.out_dtype), stream)
        return True


class FakeEngine:
    num_io_tensors = 2

    def __init__(self, cuda: FakeCuda, profile: object, w: np.ndarray, out_dtype: type) -> None:
        self.cuda, self.profile, self.w, self.out_dtype, self.runs = cuda, profile, w, out_dtype, 0

    def get_tensor_name(self, i: int) -> str:
        return ("input", "logits")[i]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if name == "input" else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> type:
        return np.float32 if name == "input" else self.out_dtype

    def create_execution_context(self) -> FakeContext:
        return FakeContext(self)


def fake_trt(engine: FakeEngine, version: str = VERSION) -> types.SimpleNamespace:
    """The parts of the ``tensorrt`` module that TensorRTBackend uses."""
    class Logger:
        WARNING = 2

        def __init__(self, severity: int) -> None:
            pass

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            pass

        def deserialize_cuda_engine(self, blob: bytes) -> FakeEngine:
            return engine

    return types.SimpleNamespace(__version__=version, Logger=Logger, Runtime=Runtime, TensorIOMode=TensorIOMode,
                                 init_libnvinfer_plugins=lambda logger, ns: True, nptype=lambda t: t)


def write_plan(tmp_path: Path, shapes: str, meta: ModelMeta, cc: str = "9.0", plugins: bool = False) -> Path:
    """A junk plan file plus the sidecar `segrt build` would write for it."""
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not really a plan" * 10)
    write_sidecar(plan, {"tensorrt": VERSION, "gpu": "Fake GPU", "compute_capability": cc, "precision": "fp32",
                         "profile": parse_shapes(shapes).as_dict(), "input": "input", "output": "logits",
                         "metadata": meta.to_props(), "plugins": plugins})
    return plan


def install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shapes: str, w: np.ndarray, *, gpu_cc: str = "9.0",
            version: str = VERSION, devices: int = 1, pinned: bool = True,
            out_dtype: type = np.float32) -> tuple[FakeCuda, FakeEngine]:
    """Patch engine.backends.tensorrt's TensorRT and engine.cudart's runtime with fakes; no plugin library."""
    import engine.backends.tensorrt as trt_backend
    import engine.cudart as cudart
    from engine.build import parse_shapes as ps

    cuda = FakeCuda(gpu_cc, devices, pinned)
    engine = FakeEngine(cuda, ps(shapes), w, out_dtype)
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: fake_trt(engine, version))
    monkeypatch.setattr(cudart, "runtime", lambda: cuda)
    monkeypatch.setenv("SEGRT_TRT_PLUGINS", str(tmp_path / "no_plugins.so"))
    return cuda, engine
