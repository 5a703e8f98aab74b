"""The TensorRT path: `segrt build` options, shape profiles, plan sidecar, INT8 calibration data, plugin library
lookup, backend routing and errors. All of that runs without TensorRT; tests marked ``tensorrt`` build and run real
plans where TensorRT and a GPU are present and skip otherwise. The C++ plugins are compiled when headers exist."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine import ops
from engine.backends import open_backend
from engine.build import (
    ShapeProfile,
    add_build_arguments,
    build_engine,
    check_profile_against_model,
    default_profile,
    import_tensorrt,
    parse_shape,
    parse_shapes,
    run_build,
    validate_options,
)
from engine.metadata import ModelMeta
from engine.plan_sidecar import read_sidecar, sidecar_path, write_sidecar
from engine.plugins import ENV_VAR, LIBRARY_NAME, load_plugins, plugin_library_path
from tests.conftest import make_tiny_onnx

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import tensorrt` fail even where it is installed."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def _args(*argv: str) -> argparse.Namespace:
    return add_build_arguments(argparse.ArgumentParser(prog="segrt build")).parse_args(list(argv))


# ---- shape profiles ----------------------------------------------------------------------------------------------

def test_parse_shapes_three_and_one() -> None:
    p = parse_shapes("1x3x256x512,1x3x512x1024,2x3x1024x2048")
    assert p == ShapeProfile((1, 3, 256, 512), (1, 3, 512, 1024), (2, 3, 1024, 2048))
    assert parse_shapes("4x3x64x64") == ShapeProfile(*((4, 3, 64, 64),) * 3)
    assert parse_shape(" 1 x 3 x 8 x 16 ") == (1, 3, 8, 16)
    assert ShapeProfile.from_dict(p.as_dict()) == p
    assert p.contains((1, 3, 300, 600)) and not p.contains((1, 3, 2000, 600)) and not p.contains((3, 300, 600))


@pytest.mark.parametrize("text", ["1x3x256", "1x3x256x512x2", "axbxcxd", "1x3x-2x4", "", "1x3x8x8,1x3x8x8",
                                  "1x3x0x8", "1*3*8*8"])
def test_parse_shapes_malformed_names_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="--shapes") as e:
        parse_shapes(text)
    assert repr(text) in str(e.value)


def test_parse_shapes_order_and_channels() -> None:
    with pytest.raises(ValueError, match="min <= opt <= max.*H is 512, 256, 1024"):
        parse_shapes("1x3x512x512,1x3x256x512,1x3x1024x1024")
    with pytest.raises(ValueError, match="3 channels"):
        parse_shapes("1x4x8x8")


def test_default_profile_and_model_check() -> None:
    meta = ModelMeta(classes=["a"], input_size=(64, 128))
    assert default_profile([None, 3, None, None], meta).opt == (1, 3, 64, 128)
    assert default_profile([2, 3, 32, 32], meta).max == (2, 3, 32, 32)
    assert default_profile([None, 3, None, None], ModelMeta()).opt == (1, 3, 512, 1024)
    check_profile_against_model(parse_shapes("1x3x8x8,2x3x8x8,4x3x8x8"), [None, 3, 8, 8], "m.onnx")
    with pytest.raises(ValueError, match="fixes dimension H to 8"):
        check_profile_against_model(parse_shapes("1x3x8x8,1x3x16x8,1x3x32x8"), [None, 3, 8, 8], "m.onnx")


# ---- options and the CLI ------------------------------------------------------------------------------------------

def test_validate_options() -> None:
    assert validate_options(False, False, None, 1) == "fp32"
    assert validate_options(True, False, None, 1) == "fp16"
    assert validate_options(False, True, "d", 1) == "int8"
    assert validate_options(True, True, "d", 1) == "int8+fp16"  # allowed: INT8 with FP16 fallback
    with pytest.raises(ValueError, match="--int8 needs --calib"):
        validate_options(False, True, None, 1)
    with pytest.raises(ValueError, match="--calib is only used with --int8"):
        validate_options(False, False, "d", 1)
    with pytest.raises(ValueError, match="--workspace"):
        validate_options(False, False, None, 0)


def test_cli_arguments_parse() -> None:
    a = _args("m.onnx", "-o", "m.plan", "--fp16", "--shapes", "1x3x8x8,1x3x16x16,1x3x32x32", "--workspace", "2",
              "--timing-cache", "t.cache")
    assert (a.onnx, a.output, a.fp16, a.int8, a.workspace, a.timing_cache) == ("m.onnx", "m.plan", True, False, 2.0,
                                                                               "t.cache")
    b = _args("m.onnx", "--int8", "--calib", "imgs")
    assert b.int8 and b.calib == "imgs" and b.output is None and b.shapes is None


@pytest.mark.parametrize("argv, match", [
    (["--int8"], "--int8 needs --calib"),
    (["--calib", "x"], "--calib is only used with --int8"),
    (["--shapes", "1x3x8"], "malformed --shapes '1x3x8'"),
    (["--shapes", "1x3x16x16,1x3x8x8,1x3x32x32"], "min <= opt <= max"),
    (["--workspace", "-1"], "--workspace"),
    (["-o", "m.trt"], "must end in .plan or .engine"),
    (["--int8", "--calib", "missing_dir"], "calibration folder not found"),
])
def test_run_build_rejects_bad_arguments(tiny_onnx: tuple[Path, np.ndarray], tmp_path: Path, no_tensorrt: None,
                                         argv: list[str], match: str) -> None:
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        run_build(_args(str(tiny_onnx[0]), *[str(tmp_path / v) if v == "missing_dir" else v for v in argv]))


def test_run_build_missing_onnx(tmp_path: Path, no_tensorrt: None) -> None:
    with pytest.raises(FileNotFoundError, match="ONNX model not found.*nope.onnx"):
        run_build(_args(str(tmp_path / "nope.onnx")))


def test_build_without_tensorrt_says_so(tiny_onnx: tuple[Path, np.ndarray], tmp_path: Path, no_tensorrt: None) -> None:
    with pytest.raises(RuntimeError, match="TensorRT is not installed.*pip install tensorrt"):
        run_build(_args(str(tiny_onnx[0]), "-o", str(tmp_path / "m.plan"), "--fp16"))
    with pytest.raises(RuntimeError, match="TensorRT is not installed"):
        import_tensorrt()
    assert not (tmp_path / "m.plan").exists()


# ---- the sidecar --------------------------------------------------------------------------------------------------

def _fake_plan(tmp_path: Path, meta: ModelMeta | None = None) -> Path:
    """A plan file of junk bytes plus the sidecar a real build would write for it."""
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not really a plan" * 10)
    meta = meta or ModelMeta(classes=["road", "car"], input_size=(64, 128))
    write_sidecar(plan, {"tensorrt": "10.16.1", "gpu": "Fake GPU", "compute_capability": "9.0",
                         "precision": "fp16", "profile": parse_shapes("1x3x64x128").as_dict(), "input": "input",
                         "output": "logits", "metadata": meta.to_props(), "build_seconds": 1.5})
    return plan


def test_sidecar_roundtrip(tmp_path: Path) -> None:
    plan = _fake_plan(tmp_path)
    assert sidecar_path(plan) == tmp_path / "model.plan.json"
    doc = read_sidecar(plan)
    assert doc["format"] == "segrt-plan" and doc["precision"] == "fp16" and doc["gpu"] == "Fake GPU"
    assert doc["plan_bytes"] == plan.stat().st_size and len(doc["plan_sha256"]) == 64
    assert ModelMeta.from_props(doc["metadata"]).classes == ["road", "car"]
    assert ShapeProfile.from_dict(doc["profile"]).opt == (1, 3, 64, 128)
    assert not list(tmp_path.glob("*.tmp"))


def test_sidecar_errors(tmp_path: Path) -> None:
    plan = tmp_path / "lonely.plan"
    plan.write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="lonely.plan.json"):
        read_sidecar(plan)
    sidecar_path(plan).write_text("{oops")
    with pytest.raises(ValueError, match="lonely.plan.json: not valid JSON"):
        read_sidecar(plan)
    sidecar_path(plan).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a segrt plan metadata file"):
        read_sidecar(plan)
    good = _fake_plan(tmp_path)
    good.write_bytes(b"a different plan")
    with pytest.raises(ValueError, match="does not describe.*rebuild"):
        read_sidecar(good)


# ---- plugin library, CUDA runtime, backend routing -----------------------------------------------------------------

def test_plugin_library_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert plugin_library_path() == ROOT / "engine" / "lib" / LIBRARY_NAME
    missing = tmp_path / "libmissing.so"
    monkeypatch.setenv(ENV_VAR, str(missing))
    assert plugin_library_path() == missing
    with pytest.raises(FileNotFoundError, match=f"plugin library not found: {missing}"):
        load_plugins()
    bad = tmp_path / "libbad.so"
    bad.write_bytes(b"not an ELF file")
    with pytest.raises(OSError, match=f"cannot load the TensorRT plugin library {bad}"):
        load_plugins(bad)


def test_cudart_missing_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.cudart as cudart

    monkeypatch.setattr(cudart, "_RUNTIME", None)
    monkeypatch.setattr(cudart, "_candidates", lambda: ["/nonexistent/libcudart.so"])
    with pytest.raises(RuntimeError, match="libcudart.*/nonexistent/libcudart.so"):
        cudart.runtime()


def test_open_backend_routes_plans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.backends.tensorrt as trt_backend

    calls = []

    class Fake:
        def __init__(self, path: Path, device: str, threads: int | None) -> None:
            calls.append((Path(path).name, device))

    monkeypatch.setattr(trt_backend, "TensorRTBackend", Fake)
    for name in ("m.plan", "m.ENGINE"):
        (tmp_path / name).write_bytes(b"x")
        assert isinstance(open_backend(tmp_path / name, device="cuda"), Fake)
    (tmp_path / "m.bin").write_bytes(b"x")
    assert isinstance(open_backend(tmp_path / "m.bin", backend="tensorrt"), Fake)
    assert calls == [("m.plan", "cuda"), ("m.ENGINE", "cuda"), ("m.bin", "auto")]


def test_backend_sets_its_device_on_every_calling_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from tests import fake_tensorrt

    shapes, meta = "1x3x16x16,1x3x32x32,2x3x64x64", ModelMeta(classes=["a", "b", "c", "d"])
    w = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    plan = fake_tensorrt.write_plan(tmp_path, shapes, meta)
    cuda, _ = fake_tensorrt.install(monkeypatch, tmp_path, shapes, w, devices=2)
    be = open_backend(plan, device="cuda:1")
    main = threading.current_thread().name
    assert cuda.set_device_calls == [(main, 1)] and {d for _, t, d in cuda.ops} == {1}
    x = np.zeros((1, 3, 16, 16), np.float32)

    def infer_twice() -> None:  # like the video pipeline's inference thread, which starts on device 0
        be.infer(x)
        cuda.set_device(0)  # something else on this thread (another model on cuda:0) switches the device
        be.infer_scratch(x)
        be.close()

    t = threading.Thread(target=infer_twice, name="infer")
    t.start()
    t.join()
    assert cuda.set_device_calls[1:] == [("infer", 1), ("infer", 0), ("infer", 1)]  # only when it differs
    on_thread = [(op, d) for op, name, d in cuda.ops if name == "infer"]
    assert {op for op, _ in on_thread} >= {"upload", "execute", "download", "synchronize", "free"}
    assert all(d == 1 for _, d in on_thread), on_thread
    cuda.set_device_calls.clear()
    be0 = open_backend(plan)  # cuda:0 on the main thread, which the cuda:1 backend left on device 1
    assert cuda.set_device_calls == [(main, 0)]
    t = threading.Thread(target=lambda: [be0.infer(x) for _ in range(3)], name="fresh")
    t.start()
    t.join()
    assert cuda.set_device_calls == [(main, 0)]  # a new thread is on device 0 already: no cudaSetDevice at all
    be1 = open_backend(plan, device="cuda:1")
    be1.infer(x)
    cuda.set_device(0)  # the main thread moves on to device 0; closing be1 (as garbage collection may) frees on
    cuda.set_device_calls.clear()  # device 1 and leaves the thread on device 0
    be1.close()
    assert cuda.set_device_calls == [(main, 1), (main, 0)] and cuda.current_device() == 0
    assert [d for op, name, d in cuda.ops if op == "free"][-1] == 1


def test_tensorrt_backend_errors_without_tensorrt(tmp_path: Path, no_tensorrt: None) -> None:
    plan = _fake_plan(tmp_path)
    with pytest.raises(RuntimeError, match="TensorRT is not installed.*pip install tensorrt"):
        open_backend(plan)
    with pytest.raises(ValueError, match="CUDA GPUs only"):
        open_backend(plan, device="cpu")
    sidecar_path(plan).unlink()
    with pytest.raises(FileNotFoundError, match="model.plan.json"):
        open_backend(plan)


# ---- native sources -----------------------------------------------------------------------------------------------

def _trt_include() -> Path | None:
    cands = [os.environ.get("SEGRT_TENSORRT_INCLUDE", ""), os.environ.get("SEGRT_TENSORRT_ROOT", "") + "/include",
             "/usr/include/x86_64-linux-gnu", "/usr/include"]
    return next((Path(c) for c in cands if c and (Path(c) / "NvInferRuntime.h").is_file()), None)


def test_plugin_sources_compile_against_tensorrt_headers() -> None:
    inc = _trt_include()
    if inc is None or shutil.which("g++") is None:
        pytest.skip("TensorRT headers (set SEGRT_TENSORRT_INCLUDE) or g++ not found")
    cuda_inc = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"
    for src in sorted((ROOT / "csrc" / "tensorrt").glob("*.cpp")):
        r = subprocess.run(["g++", "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
                            "-Wno-unused-parameter", f"-I{ROOT / 'csrc'}", "-isystem", str(inc), "-isystem",
                            str(cuda_inc), str(src)], capture_output=True, text=True)
        assert r.returncode == 0, f"{src.name}:\n{r.stderr[-3000:]}"


def test_plugin_launchers_compile_with_nvcc(tmp_path: Path) -> None:
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
    if nvcc is None:
        pytest.skip("nvcc not found")
    for src in sorted((ROOT / "csrc" / "tensorrt").glob("*.cu")):
        r = subprocess.run([nvcc, "-std=c++17", "-arch=sm_75", f"-I{ROOT / 'csrc'}", "-c", str(src), "-o",
                            str(tmp_path / (src.stem + ".o"))], capture_output=True, text=True)
        assert r.returncode == 0, f"{src.name}:\n{r.stderr[-3000:]}"


# ---- with TensorRT and a GPU --------------------------------------------------------------------------------------

def _need_gpu_trt() -> object:
    trt = pytest.importorskip("tensorrt")
    from engine.cudart import runtime

    try:
        if runtime().device_count() == 0:
            pytest.skip("no CUDA device")
    except RuntimeError as e:
        pytest.skip(str(e))
    return trt


@pytest.mark.tensorrt
@pytest.mark.parametrize("fp16", [False, True])
def test_build_and_run_plan_matches_onnxruntime(tmp_path: Path, fp16: bool) -> None:
    _need_gpu_trt()
    onnx_path, _ = make_tiny_onnx(tmp_path / "tiny.onnx", meta=ModelMeta(classes=["a", "b", "c", "d"]))
    plan = build_engine(onnx_path, tmp_path / "tiny.plan", fp16=fp16, shapes="1x3x16x16,2x3x32x64,2x3x64x64",
                        workspace_gb=0.5, timing_cache=tmp_path / "t.cache")
    assert (tmp_path / "t.cache").stat().st_size > 0
    doc = read_sidecar(plan)
    assert doc["precision"] == ("fp16" if fp16 else "fp32") and doc["compute_capability"]
    backend = open_backend(plan)
    assert backend.meta.classes == ["a", "b", "c", "d"]
    ref = open_backend(onnx_path)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 48)).astype(np.float32)
    np.testing.assert_allclose(backend.infer(x), ref.infer(x), atol=3e-2 if fp16 else 1e-4)
    with pytest.raises(ValueError, match="outside the plan's profile"):
        backend.infer(np.zeros((1, 3, 128, 128), np.float32))


@pytest.mark.tensorrt
@pytest.mark.parametrize("align_corners", [False, True])
def test_resize_argmax_plugin_matches_ops(tmp_path: Path, align_corners: bool) -> None:
    trt = _need_gpu_trt()
    from engine.cudart import runtime

    try:
        load_plugins()
    except (FileNotFoundError, OSError) as e:
        pytest.skip(str(e))
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    net = builder.create_network(0)
    logits = net.add_input("logits", trt.float32, (2, 5, 7, 9))
    creator = trt.get_plugin_registry().get_creator("ResizeArgmax", "1", "segrt")
    fields = trt.PluginFieldCollection([
        trt.PluginField(n, np.array([v], np.int32), trt.PluginFieldType.INT32)
        for n, v in (("out_h", 19), ("out_w", 23), ("align_corners", int(align_corners)))])
    layer = net.add_plugin_v3([logits], [], creator.create_plugin("ra", fields, trt.TensorRTPhase.BUILD))
    net.mark_output(layer.get_output(0))
    plan = builder.build_serialized_network(net, builder.create_builder_config())
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    ctx = engine.create_execution_context()
    cuda = runtime()
    x = np.random.default_rng(0).standard_normal((2, 5, 7, 9)).astype(np.float32)
    out = np.empty((2, 19, 23), np.int32)
    dx, dy, s = cuda.malloc(x.nbytes), cuda.malloc(out.nbytes), cuda.stream()
    ctx.set_tensor_address("logits", dx)
    ctx.set_tensor_address(layer.get_output(0).name, dy)
    cuda.upload(dx, x, s)
    assert ctx.execute_async_v3(s)
    cuda.download(out, dy, s)
    cuda.synchronize(s)
    ref = ops.resize_argmax(x, 19, 23, align_corners=align_corners)
    np.testing.assert_array_equal(out, ref)
    cuda.free(dx), cuda.free(dy), cuda.destroy_stream(s)


def test_segrt_build_without_tensorrt_is_a_one_line_error(tmp_path, capsys) -> None:
    from engine.cli import main

    model = tmp_path / "m.onnx"
    from tests.conftest import make_tiny_onnx

    make_tiny_onnx(model)
    code = main(["build", str(model), "-o", str(tmp_path / "m.plan"), "--fp16"])
    err = capsys.readouterr().err
    if importlib.util.find_spec("tensorrt") is None:
        assert code == 2 and "TensorRT is not installed" in err
    assert main(["build", str(model), "-o", str(tmp_path / "m.plan"), "--int8"]) == 2
    assert "--calib" in capsys.readouterr().err
