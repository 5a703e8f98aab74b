"""Model files that do not fit: class count vs logit channels, missing metadata, wrong ONNX inputs, and TensorRT
plans from another TensorRT version or GPU, or needing a plugin library that is missing (TensorRT faked)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import engine
from engine.backends import open_backend
from engine.backends.base import Backend
from engine.metadata import ModelMeta
from tests import fake_tensorrt
from tests.conftest import make_tiny_onnx

IMG = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)


def edit(path: Path, drop_meta: bool = False, dynamic_k: bool = False) -> Path:
    """Rewrite an ONNX file: without its metadata_props, and/or with a symbolic logits channel dim."""
    model = onnx.load(str(path))
    if drop_meta:
        del model.metadata_props[:]
    if dynamic_k:  # logits = Reshape(pooled, Shape(pooled)): shape inference cannot tell the channel count
        g = model.graph
        g.node[-1].output[0] = "pooled"
        g.node.extend([helper.make_node("Shape", ["pooled"], ["pooled_shape"]),
                       helper.make_node("Reshape", ["pooled", "pooled_shape"], ["logits"])])
        d = g.output[0].type.tensor_type.shape.dim[1]
        d.ClearField("dim_value")
        d.dim_param = "classes"
    onnx.save(model, path)
    return path


# ---- classes vs logit channels -----------------------------------------------------------------------------------

def test_class_count_mismatch_is_an_error_at_load(tmp_path: Path) -> None:
    path, _ = make_tiny_onnx(tmp_path / "m.onnx", num_classes=4, meta=ModelMeta(classes=["a", "b", "c"]))
    with pytest.raises(ValueError, match="m.onnx: the model outputs 4 logit channels but its metadata lists 3"):
        engine.Predictor(path)


def test_class_count_mismatch_is_an_error_at_first_run(tmp_path: Path) -> None:
    path, _ = make_tiny_onnx(tmp_path / "m.onnx", num_classes=4, meta=ModelMeta(classes=["a", "b", "c"]))
    p = engine.Predictor(edit(path, dynamic_k=True))  # the file does not say K: known only after a run
    assert p.backend.out_channels is None
    with pytest.raises(ValueError, match="outputs 4 logit channels but its metadata lists 3 classes"):
        p.run(IMG)


def test_backend_object_with_wrong_channels() -> None:
    class Five(Backend):
        meta = ModelMeta(classes=["a", "b"])

        def infer(self, x: np.ndarray) -> np.ndarray:
            return np.zeros((x.shape[0], 5, 4, 4), np.float32)

    with pytest.raises(ValueError, match="outputs 5 logit channels but its metadata lists 2"):
        engine.Predictor(Five(), flip=True).run(IMG)


# ---- no segrt metadata -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dynamic_k", [False, True])
def test_onnx_without_metadata_runs_with_generic_classes(tmp_path: Path, dynamic_k: bool) -> None:
    path = edit(make_tiny_onnx(tmp_path / "bare.onnx", num_classes=3)[0], drop_meta=True, dynamic_k=dynamic_k)
    with pytest.warns(UserWarning, match="bare.onnx: no segrt metadata.*class0..N-1"):
        p = engine.Predictor(path)
    assert p.meta.mean == ModelMeta().mean
    if dynamic_k:
        assert p.classes == []
        with pytest.warns(UserWarning, match="names no classes; using class0..class2"):
            labels = p.run(IMG)
    else:
        labels = p.run(IMG)
    assert p.classes == ["class0", "class1", "class2"] and p.palette.shape == (3, 3)
    assert labels.shape == IMG.shape[:2] and labels.max() < 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p.run(IMG)  # warned once, not every run


# ---- the ONNX input checks ----------------------------------------------------------------------------------------

def _model(tmp_path: Path, inputs: list, name: str) -> Path:
    """A graph whose outputs are Identity copies of its inputs (shapes as given)."""
    nodes = [helper.make_node("Identity", [i.name], [f"out{k}"]) for k, i in enumerate(inputs)]
    outs = [helper.make_tensor_value_info(f"out{k}", TensorProto.FLOAT, None) for k in range(len(inputs))]
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outs),
                              opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    path = tmp_path / name
    onnx.save(model, path)
    return path


def _vi(name: str, dims: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


@pytest.mark.parametrize("inputs, match", [
    ([_vi("x", ["b", 3, "h"])], r"expected one 4-D image input, got \[\('x'"),
    ([_vi("x", ["b", 3, "h", "w"]), _vi("y", ["b", 3, "h", "w"])], "expected one 4-D image input.*'y'"),
    ([_vi("x", ["b", 4, "h", "w"])], "must have 3 channels.*4"),
])
def test_onnx_input_checks(tmp_path: Path, inputs: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        open_backend(_model(tmp_path, inputs, "odd.onnx"))


# ---- TensorRT plans: version, GPU, plugins (tensorrt and cudart faked) --------------------------------------------

META = ModelMeta(classes=["a", "b", "c", "d"])
SHAPES = "1x3x16x16,1x3x32x32,1x3x64x64"


@pytest.fixture
def w() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)


def test_plan_from_another_tensorrt_version(tmp_path: Path, monkeypatch, w) -> None:
    plan = fake_tensorrt.write_plan(tmp_path, SHAPES, META)
    fake_tensorrt.install(monkeypatch, tmp_path, SHAPES, w, version="10.3.0")
    with pytest.raises(ValueError, match=r"model.plan was built with TensorRT 10.16.1, this is 10.3.0.*rebuild"):
        open_backend(plan)


def test_plan_for_another_gpu_and_no_gpu(tmp_path: Path, monkeypatch, w) -> None:
    plan = fake_tensorrt.write_plan(tmp_path, SHAPES, META, cc="9.0")
    fake_tensorrt.install(monkeypatch, tmp_path, SHAPES, w, gpu_cc="8.6")
    with pytest.raises(ValueError, match=r"built for compute capability 9.0 \(Fake GPU\), this GPU is 8.6"):
        engine.Predictor(plan)
    fake_tensorrt.install(monkeypatch, tmp_path, SHAPES, w, devices=0)
    with pytest.raises(RuntimeError, match="no CUDA device 0 .found 0."):
        open_backend(plan)
    fake_tensorrt.install(monkeypatch, tmp_path, SHAPES, w)
    with pytest.raises(RuntimeError, match="no CUDA device 1"):
        open_backend(plan, device="cuda:1")
    assert open_backend(plan).meta.classes == META.classes  # same version, same GPU: it loads


def test_plan_needing_missing_plugins(tmp_path: Path, monkeypatch, w) -> None:
    plan = fake_tensorrt.write_plan(tmp_path, SHAPES, META, plugins=True)
    fake_tensorrt.install(monkeypatch, tmp_path, SHAPES, w)
    missing = tmp_path / "no_plugins.so"
    with pytest.raises(FileNotFoundError, match=f"model.plan was built with segrt TensorRT plugins.*{missing}"):
        engine.Predictor(plan)
    junk = tmp_path / "libjunk.so"
    junk.write_bytes(b"not an ELF file")
    monkeypatch.setenv("SEGRT_TRT_PLUGINS", str(junk))
    with pytest.raises(OSError, match=f"cannot load the TensorRT plugin library {junk}"):
        open_backend(plan)


def test_plan_not_needing_plugins_loads_despite_a_broken_library(tmp_path: Path, monkeypatch, w) -> None:
    plan = fake_tensorrt.write_plan(tmp_path, SHAPES, META)
    fake_tensorrt.install(monkeypatch, tmp_path, SHAPES, w)
    junk = tmp_path / "libjunk.so"
    junk.write_bytes(b"not an ELF file")
    monkeypatch.setenv("SEGRT_TRT_PLUGINS", str(junk))
    with pytest.warns(UserWarning, match="plugins not loaded.*does not need them"):
        be = open_backend(plan)
    assert be.infer(np.zeros((1, 3, 16, 16), np.float32)).shape == (1, 4, 8, 8)


def test_plan_class_count_mismatch(tmp_path: Path, monkeypatch, w) -> None:
    plan = fake_tensorrt.write_plan(tmp_path, SHAPES, ModelMeta(classes=["a", "b", "c"]))
    fake_tensorrt.install(monkeypatch, tmp_path, SHAPES, w)
    with pytest.raises(ValueError, match="model.plan: the model outputs 4 logit channels but its metadata lists 3"):
        open_backend(plan)
