"""Shared fixtures: a tiny ONNX model written without torch, and a tiny synthetic dataset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.metadata import ModelMeta


def make_tiny_onnx(path: Path, num_classes: int = 4, stride: int = 2, meta: ModelMeta | None = None,
                   seed: int = 0) -> tuple[Path, np.ndarray]:
    """A 1x1-conv + average-pool 'segmentor' with dynamic N/H/W; returns (path, conv weight [K,3])."""
    w = np.random.default_rng(seed).standard_normal((num_classes, 3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"]),
        helper.make_node("AveragePool", ["c"], ["logits"], kernel_shape=[stride, stride], strides=[stride, stride]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_classes, "h", "w"])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    meta = meta or ModelMeta(classes=[f"c{i}" for i in range(num_classes)], output_stride=stride)
    for k, v in meta.to_props().items():
        e = model.metadata_props.add()
        e.key, e.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path, w[:, :, 0, 0]


@pytest.fixture
def tiny_onnx(tmp_path: Path) -> tuple[Path, np.ndarray]:
    return make_tiny_onnx(tmp_path / "tiny.onnx")


@pytest.fixture
def torch_single_thread() -> Iterator[None]:
    """Run a test with one intra-op torch thread (tiny tensors on a shared machine), restoring the count after.

    torch is imported here, not at module level: the engine tests share this conftest and must run without torch.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def write_file(path: Path, text: str) -> Path:
    """Write ``text`` to ``path``, creating its folders; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
