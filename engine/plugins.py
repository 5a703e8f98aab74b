"""Find and load ``libsegrt_trt_plugins.so``, the TensorRT plugins of csrc/tensorrt.

Loading the library registers its plugin creators (``ResizeArgmax`` and ``CrissCrossAttention``, namespaces
``segrt`` and ``""``) with TensorRT's global plugin registry, so it must happen before an ONNX model that uses
them is parsed or a plan that contains them is deserialized. The library is built by CMake next to ``engine._C``
(``engine/lib/``) where TensorRT is found; ``$SEGRT_TRT_PLUGINS`` names another file.
"""

from __future__ import annotations

import ctypes
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

LIBRARY_NAME = "libsegrt_trt_plugins.so"
ENV_VAR = "SEGRT_TRT_PLUGINS"
ONNX_DOMAIN = "segrt"
# The plugin creators the library registers. TensorRT's ONNX parser looks a node up by its op_type (it ignores the
# domain), so a node of one of these types, in any domain, needs the library; so does any node of domain "segrt".
PLUGIN_OPS = ("CrissCrossAttention", "ResizeArgmax")

_LOADED: dict[Path, ctypes.CDLL] = {}


def plugin_library_path() -> Path:
    """Where the plugin library is expected: ``$SEGRT_TRT_PLUGINS`` if set, else ``engine/lib/`` of this package."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent / "lib" / LIBRARY_NAME


def load_plugins(path: str | Path | None = None) -> ctypes.CDLL:
    """Load (once) the plugin library at ``path`` (default :func:`plugin_library_path`) and return it.

    Raises FileNotFoundError naming the path when the file is missing, OSError naming it when it cannot be loaded
    (wrong architecture, missing libnvinfer, ...).
    """
    p = Path(path).expanduser() if path is not None else plugin_library_path()
    p = p.resolve() if p.exists() else p
    if p in _LOADED:
        return _LOADED[p]
    if not p.is_file():
        raise FileNotFoundError(
            f"TensorRT plugin library not found: {p}. Build it with `python setup.py build_ext --inplace` on a "
            f"machine with CUDA and TensorRT (CMake option SEGRT_TENSORRT_ROOT), or set {ENV_VAR} to its path")
    try:
        lib = ctypes.CDLL(str(p), mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        raise OSError(f"cannot load the TensorRT plugin library {p}: {e}") from None
    _LOADED[p] = lib
    return lib


def plugins_available(path: str | Path | None = None) -> bool:
    """True when the plugin library file exists (it is not loaded)."""
    p = Path(path) if path is not None else plugin_library_path()
    return p.is_file()


def plugin_ops(nodes: Iterable[tuple[str, str]]) -> list[str]:
    """The sorted op types among ``(domain, op_type)`` pairs that need the plugin library (see :data:`PLUGIN_OPS`)."""
    return sorted({op for domain, op in nodes if op in PLUGIN_OPS or domain == ONNX_DOMAIN})


def ensure_plugins(needed_ops: Sequence[str], reason: str, what: str) -> ctypes.CDLL | None:
    """Load the plugin library for ``what`` (a model or plan) the same way for the builder and the backend.

    When ``needed_ops`` is non-empty the library is required: a missing or unloadable library raises
    FileNotFoundError / OSError that starts with ``reason`` (which names the ops) and names the library. Otherwise
    the library is loaded when its file exists, and a broken one only warns: ``what`` does not need it.
    Returns the loaded library, or None.
    """
    if not needed_ops and not plugins_available():
        return None
    try:
        return load_plugins()
    except (FileNotFoundError, OSError) as e:
        if needed_ops:
            raise type(e)(f"{reason}, but the plugin library cannot be loaded: {e}") from None
        warnings.warn(f"segrt TensorRT plugins not loaded ({e}); {what} does not need them", stacklevel=3)
        return None
