"""ONNX Runtime backend (CPU; the CUDA execution provider where onnxruntime-gpu is installed)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engine.backends.base import Backend
from engine.metadata import ModelMeta


def _check_onnx_file(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        raise ValueError(f"{path}: model file is empty")


class OnnxRuntimeBackend(Backend):
    """An ``onnxruntime.InferenceSession`` with the model's ``segrt.*`` metadata."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        _check_onnx_file(self.path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = int(threads or os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        available = ort.get_available_providers()
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"unknown device {device!r} (known: auto, cpu, cuda)")
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise RuntimeError("device='cuda' asked for, but onnxruntime has no CUDAExecutionProvider")
        providers = ["CPUExecutionProvider"]
        if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        except Exception as e:  # ORT raises its own types for bad protobufs and graphs
            raise ValueError(f"{self.path}: not a loadable ONNX model ({type(e).__name__}: {e})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError(f"{self.path}: expected one 4-D image input, got {[(i.name, i.shape) for i in inputs]}")
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        props = self.session.get_modelmeta().custom_metadata_map
        self.meta = ModelMeta.from_props(props, source=str(self.path))
        self.providers = self.session.get_providers()

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Run the session on a float32 NCHW batch."""
        return self.session.run([self.output_name], {self.input_name: x})[0]
