"""The few CUDA runtime calls the TensorRT path needs (device buffers, copies, a stream), through ctypes.

``libcudart`` is found in this order: ``$SEGRT_CUDART`` (a path), the ``nvidia-cuda-runtime`` wheel that
TensorRT's pip package depends on, then the system loader (``libcudart.so``, ``.so.13``, ``.so.12``, ``.so.11.0``).
No import of this module touches CUDA; :func:`runtime` loads the library on first use.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

import numpy as np

H2D, D2H = 1, 2  # cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost
_ATTR_CC_MAJOR, _ATTR_CC_MINOR = 75, 76  # cudaDevAttrComputeCapabilityMajor / Minor
_SONAMES = ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0")


def _candidates() -> list[str]:
    found = []
    if os.environ.get("SEGRT_CUDART"):
        found.append(os.environ["SEGRT_CUDART"])
    for base in map(Path, sys.path):
        lib = base / "nvidia" / "cuda_runtime" / "lib"
        if lib.is_dir():
            found += sorted(str(p) for p in lib.glob("libcudart.so*"))
    name = ctypes.util.find_library("cudart")
    return found + ([name] if name else []) + list(_SONAMES)


class CudaRuntime:
    """A loaded ``libcudart``: allocation, copies and streams on the current device; errors raise RuntimeError."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        lib.cudaGetErrorString.restype = ctypes.c_char_p
        for fn in ("cudaMalloc", "cudaFree", "cudaMemcpyAsync", "cudaStreamCreate", "cudaStreamSynchronize",
                   "cudaStreamDestroy", "cudaSetDevice", "cudaGetDevice", "cudaDeviceGetAttribute",
                   "cudaGetDeviceCount", "cudaMallocHost", "cudaFreeHost"):
            getattr(lib, fn).restype = ctypes.c_int
        lib.cudaMemcpyAsync.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                        ctypes.c_void_p]
        lib.cudaFree.argtypes = [ctypes.c_void_p]
        lib.cudaFreeHost.argtypes = [ctypes.c_void_p]
        lib.cudaStreamSynchronize.argtypes = [ctypes.c_void_p]
        lib.cudaStreamDestroy.argtypes = [ctypes.c_void_p]

    def check(self, status: int, what: str) -> None:
        """Raise RuntimeError naming ``what`` when ``status`` is not cudaSuccess."""
        if status != 0:
            msg = self.lib.cudaGetErrorString(status)
            raise RuntimeError(f"CUDA {what} failed: {msg.decode() if msg else status}")

    def device_count(self) -> int:
        """Number of visible CUDA devices (0 when there is no driver or GPU)."""
        n = ctypes.c_int(0)
        return n.value if self.lib.cudaGetDeviceCount(ctypes.byref(n)) == 0 else 0

    def set_device(self, index: int) -> None:
        """Make ``index`` the current device of this thread."""
        self.check(self.lib.cudaSetDevice(int(index)), f"cudaSetDevice({index})")

    def current_device(self) -> int:
        """Index of this thread's current device."""
        d = ctypes.c_int(0)
        self.check(self.lib.cudaGetDevice(ctypes.byref(d)), "cudaGetDevice")
        return d.value

    def compute_capability(self, index: int | None = None) -> str:
        """``"major.minor"`` of a device (default: the current one)."""
        dev = self.current_device() if index is None else int(index)
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        self.check(self.lib.cudaDeviceGetAttribute(ctypes.byref(major), _ATTR_CC_MAJOR, dev), "cudaDeviceGetAttribute")
        self.check(self.lib.cudaDeviceGetAttribute(ctypes.byref(minor), _ATTR_CC_MINOR, dev), "cudaDeviceGetAttribute")
        return f"{major.value}.{minor.value}"

    def device_name(self, index: int | None = None) -> str:
        """Marketing name of a device (``cudaDeviceProp.name``, the struct's first field)."""
        dev = self.current_device() if index is None else int(index)
        buf = ctypes.create_string_buffer(16384)  # larger than any cudaDeviceProp
        fn = getattr(self.lib, "cudaGetDeviceProperties_v2", None) or self.lib.cudaGetDeviceProperties
        self.check(fn(buf, dev), "cudaGetDeviceProperties")
        return buf.raw[:256].split(b"\0", 1)[0].decode(errors="replace")

    def malloc(self, nbytes: int) -> int:
        """Device allocation of ``nbytes`` (at least 1); returns the address."""
        ptr = ctypes.c_void_p()
        self.check(self.lib.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(max(1, int(nbytes)))),
                   f"cudaMalloc({nbytes} bytes)")
        return int(ptr.value or 0)

    def free(self, ptr: int) -> None:
        """Release a :meth:`malloc` allocation (0 is ignored)."""
        if ptr:
            self.lib.cudaFree(ctypes.c_void_p(ptr))

    def malloc_host(self, nbytes: int) -> int:
        """Page-locked (pinned) host allocation of ``nbytes`` (at least 1): faster, truly async copies."""
        ptr = ctypes.c_void_p()
        self.check(self.lib.cudaMallocHost(ctypes.byref(ptr), ctypes.c_size_t(max(1, int(nbytes)))),
                   f"cudaMallocHost({nbytes} bytes)")
        return int(ptr.value or 0)

    def free_host(self, ptr: int) -> None:
        """Release a :meth:`malloc_host` allocation (0 is ignored)."""
        if ptr:
            self.lib.cudaFreeHost(ctypes.c_void_p(ptr))

    def stream(self) -> int:
        """A new CUDA stream handle."""
        s = ctypes.c_void_p()
        self.check(self.lib.cudaStreamCreate(ctypes.byref(s)), "cudaStreamCreate")
        return int(s.value or 0)

    def destroy_stream(self, stream: int) -> None:
        """Destroy a :meth:`stream`."""
        if stream:
            self.lib.cudaStreamDestroy(ctypes.c_void_p(stream))

    def upload(self, dst: int, src: np.ndarray, stream: int) -> None:
        """Copy a C-contiguous host array to device address ``dst`` on ``stream``."""
        src = np.ascontiguousarray(src)
        self.check(self.lib.cudaMemcpyAsync(ctypes.c_void_p(dst), ctypes.c_void_p(src.ctypes.data), src.nbytes, H2D,
                                            ctypes.c_void_p(stream)), "host-to-device copy")

    def download(self, dst: np.ndarray, src: int, stream: int) -> None:
        """Copy device memory at ``src`` into the C-contiguous host array ``dst`` on ``stream``."""
        if not dst.flags.c_contiguous:
            raise ValueError("download target must be C-contiguous")
        self.check(self.lib.cudaMemcpyAsync(ctypes.c_void_p(dst.ctypes.data), ctypes.c_void_p(src), dst.nbytes, D2H,
                                            ctypes.c_void_p(stream)), "device-to-host copy")

    def synchronize(self, stream: int) -> None:
        """Wait for all work queued on ``stream``."""
        self.check(self.lib.cudaStreamSynchronize(ctypes.c_void_p(stream)), "cudaStreamSynchronize")


def host_array(ptr: int, nbytes: int, dtype: np.dtype | type) -> np.ndarray:
    """A 1-D numpy view of ``nbytes`` of host memory at ``ptr`` (e.g. from :meth:`CudaRuntime.malloc_host`).

    The view does not own the memory: it must not be used after the memory is freed.
    """
    return np.frombuffer((ctypes.c_uint8 * int(nbytes)).from_address(int(ptr)), dtype=dtype)


_RUNTIME: CudaRuntime | None = None


def runtime() -> CudaRuntime:
    """The process-wide :class:`CudaRuntime`; RuntimeError listing where it looked when libcudart is missing."""
    global _RUNTIME
    if _RUNTIME is None:
        tried = _candidates()
        for name in tried:
            try:
                _RUNTIME = CudaRuntime(ctypes.CDLL(name))
                break
            except OSError:
                continue
        else:
            raise RuntimeError("the CUDA runtime library (libcudart) was not found; tried: " + ", ".join(tried)
                               + ". Install the CUDA toolkit or `pip install nvidia-cuda-runtime-cu12`, "
                               "or set SEGRT_CUDART to its path")
    return _RUNTIME
