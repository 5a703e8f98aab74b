"""`segrt build` on the fake TensorRT builder (tests/fake_trt_builder.py): what build_engine asks of TensorRT (network,
parser, profile, flags, calibration, timing cache), its errors, the plan and its sidecar."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

import engine.fileio
from engine import ops
from engine.build import (
    MissingDependencyError,
    add_build_arguments,
    build_engine,
    default_timing_cache,
    run_build,
)
from engine.metadata import ModelMeta
from engine.plan_sidecar import read_sidecar
from engine.plugins import ENV_VAR
from tests import fake_tensorrt
from tests.conftest import make_tiny_onnx
from tests.fake_trt_builder import CALIBRATION_TABLE, TIMING_MAGIC, BuilderFlag, MemoryPoolType, install_builder

SHAPES = "1x3x16x16,2x3x32x48,4x3x64x64"


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_tiny_onnx(tmp_path / "tiny.onnx", meta=ModelMeta(classes=["a", "b", "c", "d"], input_size=(24, 40),
                                                                 mean=(10.0, 20.0, 30.0), std=(50.0, 60.0, 70.0)))[0]


def _images(folder: Path, n: int) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    imgs = [rng.integers(0, 256, (20 + 3 * i, 30 + i, 3), dtype=np.uint8) for i in range(n)]
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(folder / f"im{i}.png")
    return imgs


def _args(*argv: str) -> argparse.Namespace:
    return add_build_arguments(argparse.ArgumentParser(prog="segrt build")).parse_args(list(argv))


# ---- what reaches TensorRT ------------------------------------------------------------------------------------------

def test_fp32_build_calls_tensorrt_and_writes_plan_and_sidecar(model: Path, tmp_path: Path, monkeypatch) -> None:
    state = install_builder(monkeypatch, tmp_path)
    plan = build_engine(model, tmp_path / "m.plan", shapes=SHAPES, workspace_gb=0.5)
    assert state.calls("create_network") == [(0,)]
    assert state.calls("parse_from_file") == [(str(model),)]
    assert state.calls("set_memory_pool_limit") == [(MemoryPoolType.WORKSPACE, 1 << 29)]
    assert state.calls("set_shape") == [("input", (1, 3, 16, 16), (2, 3, 32, 48), (4, 3, 64, 64))]
    assert len(state.calls("add_optimization_profile")) == 1
    assert state.calls("set_flag") == [] and state.calls("build_serialized_network") == [([],)]
    assert plan.read_bytes().startswith(b"FAKEPLAN")
    doc = read_sidecar(plan)  # also checks size and SHA-256 against the plan
    assert (doc["tensorrt"], doc["gpu"], doc["compute_capability"]) == (fake_tensorrt.VERSION, "Fake GPU", "9.0")
    assert doc["precision"] == "fp32" and doc["profile"] == {"min": [1, 3, 16, 16], "opt": [2, 3, 32, 48],
                                                             "max": [4, 3, 64, 64]}
    assert (doc["input"], doc["output"], doc["plugins"]) == ("input", "logits", [])
    assert ModelMeta.from_props(doc["metadata"]).classes == ["a", "b", "c", "d"]


def test_built_plan_opens_in_the_backend(model: Path, tmp_path: Path, monkeypatch) -> None:
    install_builder(monkeypatch, tmp_path)
    plan = build_engine(model, tmp_path / "m.plan", shapes=SHAPES)
    w = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    fake_tensorrt.install(monkeypatch, tmp_path, SHAPES, w)
    from engine.backends import open_backend

    be = open_backend(plan)
    assert be.meta.classes == ["a", "b", "c", "d"] and be.limits.batch == (1, 4)
    assert be.infer(np.zeros((2, 3, 32, 48), np.float32)).shape == (2, 4, 16, 24)


@pytest.mark.parametrize("fp16, int8, flags", [(True, False, ["FP16"]), (False, True, ["INT8"]),
                                               (True, True, ["FP16", "INT8"])])
def test_precision_flags(model: Path, tmp_path: Path, monkeypatch, fp16: bool, int8: bool, flags: list) -> None:
    state = install_builder(monkeypatch, tmp_path)
    _images(tmp_path / "calib", 2)
    plan = build_engine(model, tmp_path / "m.plan", fp16=fp16, int8=int8, calib_dir=tmp_path / "calib" if int8
                        else None, shapes=SHAPES)
    assert sorted(f.name for (f,) in state.calls("set_flag")) == flags
    assert state.calls("build_serialized_network") == [(flags,)]
    assert read_sidecar(plan)["precision"] == {"FP16": "fp16", "INT8": "int8"}.get("+".join(flags), "int8+fp16")


def test_slow_fp16_gpu_warns(model: Path, tmp_path: Path, monkeypatch) -> None:
    state = install_builder(monkeypatch, tmp_path, fast_fp16=False)
    with pytest.warns(UserWarning, match="no fast FP16"):
        build_engine(model, tmp_path / "m.plan", fp16=True, shapes=SHAPES)
    assert (BuilderFlag.FP16,) in state.calls("set_flag")


def test_default_profile_is_the_model_input_size(model: Path, tmp_path: Path, monkeypatch) -> None:
    state = install_builder(monkeypatch, tmp_path)
    build_engine(model, tmp_path / "m.plan")
    assert state.calls("set_shape") == [("input", (1, 3, 24, 40), (1, 3, 24, 40), (1, 3, 24, 40))]


@pytest.mark.parametrize("shapes, match", [("1x3x32x32,1x3x16x16,1x3x64x64", "min <= opt <= max"),
                                           ("1x4x8x8", "3 channels"), ("1x3x8", "malformed --shapes")])
def test_bad_shapes_never_reach_tensorrt(model: Path, tmp_path: Path, monkeypatch, shapes: str, match: str) -> None:
    state = install_builder(monkeypatch, tmp_path)
    with pytest.raises(ValueError, match=match):
        run_build(_args(str(model), "-o", str(tmp_path / "m.plan"), "--shapes", shapes))
    assert state.log == [] and not (tmp_path / "m.plan").exists()


def test_opt_not_a_multiple_of_size_divisor_warns(tmp_path: Path, monkeypatch) -> None:
    onnx_path, _ = make_tiny_onnx(tmp_path / "u.onnx", meta=ModelMeta(classes=list("abcd"), size_divisor=16))
    install_builder(monkeypatch, tmp_path)
    with pytest.warns(UserWarning, match="OPT 40x40 is not a multiple of the size_divisor 16"):
        build_engine(onnx_path, tmp_path / "m.plan", shapes="1x3x32x32,1x3x40x40,1x3x64x64")


# ---- errors -----------------------------------------------------------------------------------------------------

def test_parse_errors_carry_the_parser_messages(model: Path, tmp_path: Path, monkeypatch) -> None:
    errors = [("Unsupported ONNX data type: UINT4", 1, "pool", "AveragePool"), ("graph has no outputs", -1, "", "")]
    install_builder(monkeypatch, tmp_path, parse_errors=errors)
    with pytest.raises(ValueError, match=r"tiny.onnx: TensorRT cannot parse the model: node 1 'pool' \(AveragePool\): "
                                         r"Unsupported ONNX data type: UINT4; graph has no outputs"):
        build_engine(model, tmp_path / "m.plan", shapes=SHAPES)
    assert not (tmp_path / "m.plan").exists()


def test_failed_build_is_a_clear_error_and_keeps_the_old_plan(model: Path, tmp_path: Path, monkeypatch) -> None:
    install_builder(monkeypatch, tmp_path)
    plan = build_engine(model, tmp_path / "m.plan", shapes=SHAPES)
    old = plan.read_bytes(), (tmp_path / "m.plan.json").read_bytes()
    install_builder(monkeypatch, tmp_path, fail_build=True)
    with pytest.raises(RuntimeError, match=r"TensorRT failed to build an engine from .*tiny.onnx \(precision fp16, "
                                           r"profile min \(1, 3, 16, 16\).*--verbose"):
        build_engine(model, plan, fp16=True, shapes=SHAPES)
    assert (plan.read_bytes(), (tmp_path / "m.plan.json").read_bytes()) == old
    assert not list(tmp_path.glob(".*.tmp*"))


def test_plan_is_written_atomically(model: Path, tmp_path: Path, monkeypatch) -> None:
    install_builder(monkeypatch, tmp_path)
    replaced, real = [], engine.fileio.os.replace

    def replace(src: str, dst: str) -> None:
        replaced.append((Path(src), Path(dst), Path(dst).exists()))
        real(src, dst)

    monkeypatch.setattr(engine.fileio.os, "replace", replace)
    plan = build_engine(model, tmp_path / "m.plan", shapes=SHAPES, timing_cache=None)
    assert [d.name for _, d, _ in replaced] == ["m.plan", "m.plan.json"]  # the plan first, then its sidecar
    src, dst, existed = replaced[0]
    assert src.parent == dst.parent and ".tmp" in src.name and not existed and not src.exists()
    assert plan.read_bytes().startswith(b"FAKEPLAN")


# ---- INT8 calibration --------------------------------------------------------------------------------------------

def test_int8_calibrates_at_the_opt_shape_and_caches(model: Path, tmp_path: Path, monkeypatch) -> None:
    imgs = _images(tmp_path / "calib", 3)
    state = install_builder(monkeypatch, tmp_path)
    plan = build_engine(model, tmp_path / "m.plan", int8=True, calib_dir=tmp_path / "calib", shapes=SHAPES)
    # the model's input_size is 24x40, but TensorRT calibrates at the profile's OPT shape 2x3x32x48
    assert [b.shape for b in state.calib_batches] == [(2, 3, 32, 48)] * 2
    meta = ModelMeta.from_props(read_sidecar(plan)["metadata"])
    got = np.concatenate(state.calib_batches)
    for k, i in enumerate([0, 1, 2, 2]):  # sorted files; the last batch padded by repetition
        ref = ops.preprocess(imgs[i], 32, 48, meta.mean, meta.std, align_corners=meta.align_corners)
        np.testing.assert_array_equal(got[k], ref[0])
    assert state.calls("set_calibration_profile") == [({"input": ((1, 3, 16, 16), (2, 3, 32, 48), (4, 3, 64, 64))},)]
    cache = tmp_path / "m.plan.calib"
    assert cache.read_bytes() == CALIBRATION_TABLE
    assert read_sidecar(plan)["calibration"] == {"images": 3, "shape": [2, 3, 32, 48], "batches": 2}
    state = install_builder(monkeypatch, tmp_path)  # a rebuild reads the cache instead of calibrating
    build_engine(model, tmp_path / "m.plan", int8=True, calib_dir=tmp_path / "calib", shapes=SHAPES)
    assert state.calib_cache_read == CALIBRATION_TABLE and state.calib_batches == []
    state = install_builder(monkeypatch, tmp_path)  # another OPT shape: the cache is stale
    with pytest.warns(UserWarning, match="m.plan.calib was made for another model, image set or shape"):
        build_engine(model, tmp_path / "m.plan", int8=True, calib_dir=tmp_path / "calib",
                     shapes="1x3x16x16,1x3x16x32,4x3x64x64")
    assert state.calib_cache_read is None and [b.shape for b in state.calib_batches] == [(1, 3, 16, 32)] * 3


def test_wrong_size_batch_never_reaches_tensorrt(model: Path, tmp_path: Path, monkeypatch) -> None:
    from engine.calibration import CalibrationData

    _images(tmp_path / "calib", 2)
    state = install_builder(monkeypatch, tmp_path)
    monkeypatch.setattr(CalibrationData, "batches", lambda self: iter([np.zeros((2, 3, 24, 40), np.float32)]))
    with pytest.raises(ValueError, match=r"INT8 calibration on .*calib failed: .*\(2, 3, 24, 40\).*OPT shape "
                                         r"\(2, 3, 32, 48\).*wrong size"):
        build_engine(model, tmp_path / "m.plan", int8=True, calib_dir=tmp_path / "calib", shapes=SHAPES)
    assert state.calib_batches == [] and not (tmp_path / "m.plan").exists()
    assert "upload" not in [op for op, _, _ in state.cuda.ops]


def test_tensorrt_without_implicit_calibration(model: Path, tmp_path: Path, monkeypatch) -> None:
    import engine.build as build
    from tests.fake_trt_builder import make_trt

    _images(tmp_path / "calib", 1)
    state = install_builder(monkeypatch, tmp_path, has_int8_calibrator=False)  # neither the property nor the class
    with pytest.raises(MissingDependencyError, match=r"TensorRT 10.16.1 has no IBuilderConfig.int8_calibrator: "
                                                     r"implicit INT8 calibration .* deprecated in TensorRT 10.1"):
        build_engine(model, tmp_path / "m.plan", int8=True, calib_dir=tmp_path / "calib", shapes=SHAPES)
    assert state.calls("build_serialized_network") == []
    trt = make_trt(install_builder(monkeypatch, tmp_path))  # the config has the property, the module lost the class
    del trt.IInt8EntropyCalibrator2
    monkeypatch.setattr(build, "import_tensorrt", lambda: trt)
    with pytest.raises(MissingDependencyError, match="has no tensorrt.IInt8EntropyCalibrator2.*10.1"):
        build_engine(model, tmp_path / "m.plan", int8=True, calib_dir=tmp_path / "calib", shapes=SHAPES)
    assert not (tmp_path / "m.plan").exists()


# ---- timing cache ---------------------------------------------------------------------------------------------------

def test_timing_cache_beside_the_plan_round_trips(model: Path, tmp_path: Path, monkeypatch) -> None:
    state = install_builder(monkeypatch, tmp_path)
    plan = build_engine(model, tmp_path / "m.plan", shapes=SHAPES)
    cache = default_timing_cache(plan)
    assert cache == tmp_path / "m.plan.timing" and cache.read_bytes() == state.timing_header + b"1"
    assert state.calls("create_timing_cache") == [(b"",)]
    state = install_builder(monkeypatch, tmp_path)
    build_engine(model, plan, fp16=True, shapes=SHAPES)
    assert state.calls("create_timing_cache") == [(state.timing_header + b"1",)]
    assert state.calls("set_timing_cache") == [(state.timing_header, 1, False)]
    assert cache.read_bytes() == state.timing_header + b"2"


def test_timing_cache_path_and_off(model: Path, tmp_path: Path, monkeypatch) -> None:
    state = install_builder(monkeypatch, tmp_path)
    run_build(_args(str(model), "-o", str(tmp_path / "a.plan"), "--shapes", SHAPES, "--timing-cache",
                    str(tmp_path / "shared.cache")))
    assert (tmp_path / "shared.cache").read_bytes() == state.timing_header + b"1"
    state = install_builder(monkeypatch, tmp_path)
    run_build(_args(str(model), "-o", str(tmp_path / "b.plan"), "--shapes", SHAPES, "--no-timing-cache"))
    assert state.calls("create_timing_cache") == [] and not (tmp_path / "b.plan.timing").exists()
    with pytest.raises(SystemExit):
        _args(str(model), "--timing-cache", "x", "--no-timing-cache")


@pytest.mark.parametrize("blob", [TIMING_MAGIC + b"10.3.0/9.0;5", TIMING_MAGIC + b"10.16.1/8.6;5", b"garbage"])
def test_foreign_or_damaged_timing_cache_is_replaced(model: Path, tmp_path: Path, monkeypatch, blob: bytes) -> None:
    cache = tmp_path / "m.plan.timing"
    cache.write_bytes(blob)
    state = install_builder(monkeypatch, tmp_path)
    with pytest.warns(UserWarning, match="m.plan.timing was not accepted by TensorRT 10.16.1.*replace"):
        plan = build_engine(model, tmp_path / "m.plan", shapes=SHAPES)
    assert plan.is_file() and cache.read_bytes() == state.timing_header + b"1"


def test_refused_timing_cache_builds_without_one(model: Path, tmp_path: Path, monkeypatch) -> None:
    state = install_builder(monkeypatch, tmp_path, refuse_timing_cache=True)
    with pytest.warns(UserWarning, match="building without one"):
        plan = build_engine(model, tmp_path / "m.plan", shapes=SHAPES)
    assert plan.is_file() and not (tmp_path / "m.plan.timing").exists()
    assert state.calls("timing_cache.serialize") == []


def test_timing_cache_failure_keeps_the_finished_plan(model: Path, tmp_path: Path, monkeypatch) -> None:
    install_builder(monkeypatch, tmp_path, timing_serialize_error=True)
    with pytest.warns(UserWarning, match="the plan is written, but its timing cache .*m.plan.timing could not be "
                                         "saved: ITimingCache::serialize failed"):
        plan = build_engine(model, tmp_path / "m.plan", shapes=SHAPES)
    assert read_sidecar(plan)["precision"] == "fp32" and not (tmp_path / "m.plan.timing").exists()


# ---- plugins ------------------------------------------------------------------------------------------------------

def _cca_onnx(path: Path) -> Path:
    """An (unchecked) graph with our plugin op: input -> segrt::CrissCrossAttention(x, x, x) -> logits."""
    graph = helper.make_graph(
        [helper.make_node("CrissCrossAttention", ["input", "input", "input"], ["logits"], name="cca",
                          domain="segrt")], "cca",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["b", 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 3, "h", "w"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("segrt", 1)])
    onnx.save(model, path)
    return path


def test_model_without_plugin_ops_builds_despite_a_broken_library(model: Path, tmp_path: Path, monkeypatch) -> None:
    install_builder(monkeypatch, tmp_path)
    junk = tmp_path / "libjunk.so"
    junk.write_bytes(b"not an ELF file")
    monkeypatch.setenv(ENV_VAR, str(junk))
    with pytest.warns(UserWarning, match="plugins not loaded.*cannot load the TensorRT plugin library.*does not need"):
        plan = build_engine(model, tmp_path / "m.plan", shapes=SHAPES)
    assert read_sidecar(plan)["plugins"] == []


def test_plugin_op_without_library_names_library_and_op(tmp_path: Path, monkeypatch) -> None:
    onnx_path = _cca_onnx(tmp_path / "cca.onnx")
    state = install_builder(monkeypatch, tmp_path)
    missing = tmp_path / "no_plugins.so"
    with pytest.raises(FileNotFoundError, match=f"cca.onnx uses the segrt TensorRT plugin op.s. CrissCrossAttention, "
                                                f"but the plugin library cannot be loaded: .*not found: {missing}"):
        build_engine(onnx_path, tmp_path / "m.plan", shapes=SHAPES)
    junk = tmp_path / "libjunk.so"
    junk.write_bytes(b"not an ELF file")
    monkeypatch.setenv(ENV_VAR, str(junk))
    with pytest.raises(OSError, match=f"CrissCrossAttention.*cannot load the TensorRT plugin library {junk}"):
        build_engine(onnx_path, tmp_path / "m.plan", shapes=SHAPES)
    assert state.calls("parse_from_file") == []


def test_plugin_op_with_library_builds_and_is_recorded(tmp_path: Path, monkeypatch) -> None:
    import engine._C

    onnx_path = _cca_onnx(tmp_path / "cca.onnx")
    install_builder(monkeypatch, tmp_path)
    monkeypatch.setenv(ENV_VAR, engine._C.__file__)  # any loadable shared library stands in for the plugins
    plan = build_engine(onnx_path, tmp_path / "m.plan", shapes=SHAPES)
    doc = json.loads((tmp_path / "m.plan.json").read_text())
    assert doc["plugins"] == ["CrissCrossAttention"] and plan.is_file()


def test_a_calibration_table_that_cannot_be_saved_only_warns(model: Path, tmp_path: Path, monkeypatch) -> None:
    from engine.calibration import CalibrationData

    _images(tmp_path / "calib", 2)
    install_builder(monkeypatch, tmp_path)

    def fail(self, data) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(CalibrationData, "write_cache", fail)
    with pytest.warns(UserWarning, match=r"plan is built, but its INT8 calibration table could not be saved "
                                         r"\(disk full\)"):
        plan = build_engine(model, tmp_path / "m.plan", int8=True, calib_dir=tmp_path / "calib", shapes=SHAPES)
    assert plan.read_bytes().startswith(b"FAKEPLAN") and read_sidecar(plan)["calibration"]["batches"] == 1
