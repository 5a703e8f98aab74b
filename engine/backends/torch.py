"""PyTorch backend: a segrt training checkpoint (``.pt``/``.pth``) or a ``torch.export`` program (``.pt2``).

This is the only module of ``engine`` that may import torch, and it does so lazily, inside ``TorchBackend``: importing
this module (e.g. for ``META_FILE``) stays torch-free.

* ``.pt``/``.pth``: rebuilt with ``training.export.load_trained`` (``torch.load(weights_only=True)``); the metadata is
  the checkpoint's ``"meta"`` entry.
* ``.pt2``: written by ``training.export_program.export_program`` (``torch.export.save``, dynamic batch/H/W); the
  metadata is the JSON extra file ``segrt_meta.json`` inside the archive, checked before torch deserializes anything.

Options: ``precision`` "fp16" (CUDA) / "bf16" runs the network under autocast (logits come back float32);
``compile`` wraps it in ``torch.compile`` (default mode; the first call per shape compiles); ``cuda_graphs`` captures
one CUDA graph per input shape (B, H, W) over a static input buffer and replays it. ``infer`` returns a fresh float32
numpy array each call: callers (the video pipeline) hand logits to other threads while the next batch runs.
``infer_tensor`` is the device-tensor face for callers that keep data on the GPU.
"""

from __future__ import annotations

import json
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from engine.backends.base import Backend, parse_device
from engine.metadata import PREFIX, ModelMeta

META_FILE = "segrt_meta.json"  # extra file of a .pt2 archive holding the ModelMeta fields as a JSON object
PIP_HINT = "pip install 'segrt[train]'"
PRECISIONS = (None, "fp16", "bf16")
CHECKPOINT_SUFFIXES = (".pt", ".pth")
PROGRAM_SUFFIXES = (".pt2",)
MAX_SHAPES = 8  # input shapes with a cached CUDA graph / device input buffer (least recently used dropped)
GRAPH_WARMUP = 3  # eager runs on a side stream before a capture (cuDNN/cuBLAS autotuning, torch.compile)


def import_torch() -> Any:
    """``import torch``, or an ImportError that says which pip extra provides it."""
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"the torch backend needs PyTorch, which is not installed ({e}); {PIP_HINT}") from None
    return torch


def meta_from_dict(d: Any, source: str) -> ModelMeta:
    """A validated ModelMeta from a plain ``{field: value}`` dict (checkpoint ``"meta"``, .pt2 extra file)."""
    if not isinstance(d, dict) or not d.get("classes"):
        raise ValueError(f"{source}: no segrt model metadata (expected a dict with 'classes', got {d!r:.80})")
    return ModelMeta.from_props({PREFIX + str(k): json.dumps(v) for k, v in d.items()}, source=source)


def read_program_meta(path: str | Path) -> ModelMeta | None:
    """The ModelMeta stored in a ``torch.export`` archive, None if ``path`` is a zip but not such an archive.

    Raises ValueError naming the file when it is an exported program without segrt metadata, or unreadable.
    Reads the zip directly (no torch), so a wrong file is reported before torch deserializes anything.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if not any(n.endswith("/archive_format") or n == "archive_format" for n in names):
                return None
            meta = [n for n in names if n.endswith(f"/extra/{META_FILE}")]
            if not meta:
                raise ValueError(f"{path}: a torch.export program without segrt metadata (no extra file "
                                 f"{META_FILE!r}); write it with training.export_program.export_program")
            raw = z.read(meta[0])
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable torch.export archive ({type(e).__name__}: {e})") from None
    try:
        d = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: segrt metadata {META_FILE!r} is not valid JSON: {e}") from None
    return meta_from_dict(d, str(path))


def torch_device(torch: Any, device: str) -> Any:
    kind, index = parse_device(device)
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} asked for, but torch {torch.__version__} sees no CUDA device")
    if index is not None and index >= torch.cuda.device_count():
        raise RuntimeError(f"no CUDA device {index} (found {torch.cuda.device_count()})")
    return torch.device("cuda", index if index is not None else torch.cuda.current_device())


class _Graph:
    """One captured CUDA graph: static input/output buffers for one (B, H, W)."""

    __slots__ = ("graph", "static_in", "static_out")

    def __init__(self, graph: Any, static_in: Any, static_out: Any) -> None:
        self.graph, self.static_in, self.static_out = graph, static_in, static_out


def _cached(cache: OrderedDict, key: tuple[int, ...], make: Callable[[], Any]) -> Any:
    """``cache[key]``, made by ``make()`` when missing; keeps the MAX_SHAPES most recently used entries."""
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = make()  # first: a failed capture must not cost a good entry
    while len(cache) >= MAX_SHAPES:
        cache.popitem(last=False)
    cache[key] = value
    return value


class TorchBackend(Backend):
    """A PyTorch module from a segrt checkpoint or a ``torch.export`` program, on the CPU or a CUDA GPU.

    Args:
        path: ``.pt``/``.pth`` segrt training checkpoint or ``.pt2`` exported program (a ``torch.export`` archive
            under another suffix is recognised by its contents).
        device: "auto" (CUDA when torch sees a GPU), "cpu", "cuda" or "cuda:N".
        threads: ``torch.set_num_threads`` (process-wide) when given.
        precision: None (float32), "bf16" (CPU or CUDA) or "fp16" (CUDA only): autocast; logits are float32.
        compile: run through ``torch.compile`` (default mode); compiles on the first call of each new shape.
        cuda_graphs: capture a CUDA graph per input shape and replay it (CUDA only).
    """

    name = "torch"

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None,
                 precision: str | None = None, compile: bool = False, cuda_graphs: bool = False) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"model file not found: {self.path}")
        if not self.path.is_file():
            raise ValueError(f"model path is not a file: {self.path}")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r} (known: None, 'fp16', 'bf16')")
        program_meta = read_program_meta(self.path) if zipfile.is_zipfile(self.path) else None
        if program_meta is None and self.path.suffix.lower() in PROGRAM_SUFFIXES:
            raise ValueError(f"{self.path}: not a torch.export program archive (.pt2 written by torch.export.save)")
        torch = self._torch = import_torch()
        self.device = torch_device(torch, device)
        is_cuda = self.device.type == "cuda"
        if precision == "fp16" and not is_cuda:
            raise ValueError("precision='fp16' needs a CUDA device; use 'bf16' on the CPU")
        if precision == "bf16" and is_cuda and not torch.cuda.is_bf16_supported():
            raise ValueError(f"precision='bf16': {torch.cuda.get_device_name(self.device)} does not support bf16")
        if cuda_graphs and not is_cuda:
            raise ValueError(f"cuda_graphs=True needs a CUDA device, got device {str(self.device)!r}")
        if threads:
            torch.set_num_threads(int(threads))
        self.precision, self.compiled, self.cuda_graphs = precision, bool(compile), bool(cuda_graphs)
        self.kind = "program" if program_meta is not None else "checkpoint"
        if program_meta is not None:
            self.meta = program_meta
            module = self._load_program()
        else:
            module, self.meta = self._load_checkpoint()
            self.meta.size_divisor = int(getattr(module, "size_divisor", self.meta.size_divisor))
        self.module = module
        self._fn = torch.compile(module) if compile else module
        self._dtype = {None: None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        # Per input shape, least recently used first, at most MAX_SHAPES of each (a captured graph holds its own
        # memory pool, so an unbounded cache would fill the GPU on a stream of image sizes):
        self._inputs: OrderedDict[tuple[int, ...], Any] = OrderedDict()  # device input buffers (CUDA, no graphs)
        self._graphs: OrderedDict[tuple[int, ...], _Graph] = OrderedDict()
        self._lock = threading.Lock()

    # ---- loading -------------------------------------------------------------------------------------------

    def _load_checkpoint(self) -> tuple[Any, ModelMeta]:
        try:
            from training.export import load_trained
        except ImportError as e:
            raise ImportError(f"{self.path}: opening a training checkpoint needs the segrt training package "
                              f"({e}); {PIP_HINT}") from None
        try:
            model, meta = load_trained(self.path)
        except FileNotFoundError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:  # RuntimeError: mis-shaped weights
            if str(self.path) in str(e):
                raise
            why = " ".join(str(e).split())  # torch's load_state_dict report spans lines
            raise ValueError(f"{self.path}: not a usable segrt checkpoint ({type(e).__name__}: {why})") from None
        meta = meta_from_dict(meta, str(self.path))
        return model.to(self.device).eval(), meta

    def _load_program(self) -> Any:
        torch = self._torch
        try:
            if self.path.suffix.lower() == ".pt2":
                program = torch.export.load(str(self.path))
            else:  # torch.export.load takes other suffixes only as buffers
                with open(self.path, "rb") as f:
                    program = torch.export.load(f)
        except Exception as e:
            raise ValueError(f"{self.path}: cannot load the torch.export program ({type(e).__name__}: {e})") from None
        if self.device.type != "cpu":
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, self.device)
        self.program = program
        # An exported program is already in inference form (exported from an eval() model); its module refuses eval().
        return program.module()

    # ---- running -------------------------------------------------------------------------------------------

    def _autocast(self) -> AbstractContextManager:
        if self._dtype is None:
            return nullcontext()
        # No weight-cast cache: cached casts would be freed on exit while a captured CUDA graph still reads them.
        return self._torch.autocast(self.device.type, dtype=self._dtype, cache_enabled=False)

    def _forward(self, x: Any) -> Any:
        with self._autocast():
            y = self._fn(x)
        if isinstance(y, list | tuple):
            y = y[0]
        return y if y.dtype == self._torch.float32 else y.float()

    def _check(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 4 or shape[1] != 3 or min(shape) <= 0:
            raise ValueError(f"{self.path}: expected a non-empty [B,3,H,W] input, got shape {tuple(shape)}")

    def infer(self, x: Any) -> np.ndarray:
        """Run the network on a [B,3,H,W] float32 batch (numpy, or a torch tensor); fresh [B,K,h,w] float32 numpy."""
        torch = self._torch
        if not isinstance(x, torch.Tensor):
            x = np.asarray(x)
            self._check(x.shape)
            if x.dtype != np.float32 or not x.flags.c_contiguous or not x.flags.writeable:
                x = np.array(x, dtype=np.float32, order="C")
            x = torch.from_numpy(x)
        with self._lock:
            y = self._run(x)
            # A CPU forward's output is fresh already; on CUDA, copy back (a graph's static output is overwritten
            # by its next replay, hence inside the lock).
            return y.numpy() if y.device.type == "cpu" else y.cpu().numpy()

    def infer_tensor(self, x: Any) -> Any:
        """Run on a [B,3,H,W] tensor (any device; float32 unless autocast); [B,K,h,w] float32 on ``self.device``.

        With ``cuda_graphs`` the result is the graph's static output buffer: the next call with the same shape
        overwrites it, so clone it to keep it.
        """
        with self._lock:
            return self._run(x)

    def _run(self, x: Any) -> Any:
        torch = self._torch
        self._check(tuple(x.shape))
        with torch.inference_mode():
            if self.device.type == "cpu":
                return self._forward(x.to(self.device, torch.float32).contiguous())
            with torch.cuda.device(self.device):
                if self.cuda_graphs:
                    return self._replay(x)
                if x.device == self.device and x.dtype == torch.float32 and x.is_contiguous():
                    return self._forward(x)
                key = tuple(x.shape)
                buf = _cached(self._inputs, key, lambda: torch.empty(key, dtype=torch.float32, device=self.device))
                buf.copy_(x, non_blocking=True)  # from pageable host memory this returns once x has been read
                return self._forward(buf)

    def _replay(self, x: Any) -> Any:
        key = tuple(x.shape)
        g = _cached(self._graphs, key, lambda: self._capture(key))
        g.static_in.copy_(x, non_blocking=True)
        g.graph.replay()
        return g.static_out

    def _capture(self, shape: tuple[int, ...]) -> _Graph:
        """Warm up on a side stream, then capture one forward over a static input buffer (torch.cuda.graphs)."""
        torch = self._torch
        static_in = torch.zeros(shape, dtype=torch.float32, device=self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP):
                self._forward(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads (the video pipeline's pre/post stages) may use CUDA while this one captures.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            static_out = self._forward(static_in)
        return _Graph(graph, static_in, static_out)

    def __repr__(self) -> str:
        return (f"TorchBackend({str(self.path)!r}, kind={self.kind}, device={self.device}, "
                f"precision={self.precision}, compile={self.compiled}, cuda_graphs={self.cuda_graphs})")
