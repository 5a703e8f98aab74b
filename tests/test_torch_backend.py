"""engine's torch backend: segrt checkpoints and torch.export programs against ONNX Runtime and torch eager."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import engine
from engine.backends import open_backend
from engine.backends.torch import TorchBackend
from engine.metadata import ModelMeta
from training.checkpoint import save_atomic
from training.config import Config, DataCfg, ModelCfg
from training.export import export_checkpoint
from training.export_program import export_program, save_program
from training.models import build

BACKBONE_KW = {"base_channels": 8, "stem_channels": 8}
CUDA = torch.cuda.is_available()
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")


def tiny_model(seed: int = 0) -> torch.nn.Module:
    """Tiny PSPNet with random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = build("pspnet", num_classes=4, backbone="resnet18", backbone_kwargs=dict(BACKBONE_KW))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A segrt-style checkpoint (keys as training.train writes them) and its ONNX and .pt2 exports."""
    d = tmp_path_factory.mktemp("torch_backend")
    model = tiny_model()
    cfg = Config(model=ModelCfg(name="pspnet", backbone="resnet18", backbone_kwargs=dict(BACKBONE_KW)),
                 data=DataCfg(input_size=(64, 96)))
    meta = {"classes": ["road", "car", "sky", "tree"], "palette": [[128, 64, 128], [0, 0, 142], [70, 130, 180],
                                                                   [107, 142, 35]],
            "mean": list(cfg.data.mean), "std": list(cfg.data.std), "input_size": [64, 96], "output_stride": 8,
            "align_corners": False, "model": "pspnet_resnet18", "ignore_index": 255}
    ckpt = save_atomic({"state_dict": model.state_dict(), "optimizer": {}, "iter": 0, "scaler": {},
                        "config": cfg.to_dict(), "meta": meta, "best_mIoU": -1.0, "rng": {}, "metrics": {}},
                       d / "tiny.pt")
    return {"ckpt": ckpt, "onnx": export_checkpoint(ckpt, d / "tiny.onnx"),
            "pt2": export_program(ckpt, d / "tiny.pt2"), "dir": d}


def image(shape: tuple[int, int], seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def batch(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ---- checkpoints ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(64, 96), (71, 130)])
def test_checkpoint_matches_onnx_and_eager(files, shape) -> None:
    p = engine.Predictor(files["ckpt"], device="cpu")
    assert isinstance(p.backend, TorchBackend) and p.backend.kind == "checkpoint"
    assert p.classes == ["road", "car", "sky", "tree"] and p.meta.input_size == (64, 96)
    img = image(shape)
    labels = p.run(img)
    assert labels.shape == shape and labels.dtype == np.uint8
    onnx_labels = engine.Predictor(files["onnx"], device="cpu").run(img)
    assert (labels == onnx_labels).mean() >= 0.995
    # torch eager on the same normalized input: the same logits, and the same labels after torch's upsample+argmax
    x = p.preprocess(img).copy()
    eager = tiny_model()(torch.from_numpy(x)).detach()
    np.testing.assert_allclose(p.infer(x), eager.numpy(), rtol=1e-4, atol=1e-4)
    ref = F.interpolate(eager, size=shape, mode="bilinear", align_corners=False).argmax(1)[0].numpy()
    assert (labels == ref).mean() >= 0.995


def test_routing_by_suffix_and_name(files) -> None:
    pth = files["dir"] / "copy.pth"
    shutil.copyfile(files["ckpt"], pth)
    assert open_backend(pth).name == "torch"
    odd = files["dir"] / "program.bin"  # a torch.export archive under another suffix, named backend
    shutil.copyfile(files["pt2"], odd)
    before = torch.get_num_threads()
    try:
        b = open_backend(odd, backend="torch", device="cpu", threads=1)
        assert b.kind == "program" and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_infer_returns_fresh_float32_and_takes_tensors(files) -> None:
    b = TorchBackend(files["ckpt"], device="cpu")
    x = batch((2, 3, 32, 48))
    y1, y2 = b.infer(x), b.infer(x)
    assert y1.dtype == np.float32 and y1.shape == (2, 4, 4, 6) and y1 is not y2
    assert not np.shares_memory(y1, y2)
    np.testing.assert_array_equal(b.infer(torch.from_numpy(x)), y1)
    np.testing.assert_array_equal(b.infer(x.astype(np.float64)), y1)  # converted, not rejected
    with pytest.raises(ValueError, match=r"\[B,3,H,W\]"):
        b.infer(np.zeros((1, 4, 8, 8), np.float32))


# ---- torch.export programs -----------------------------------------------------------------------------------

def test_program_round_trip_metadata_and_dynamic_shapes(files) -> None:
    ck = TorchBackend(files["ckpt"], device="cpu")
    pg = engine.Predictor(files["pt2"], device="cpu").backend
    assert isinstance(pg, TorchBackend) and pg.kind == "program"
    assert pg.meta == ck.meta and isinstance(pg.meta, ModelMeta)
    for shape in [(1, 3, 64, 96), (3, 3, 40, 72), (2, 3, 33, 47)]:  # batch, height and width all vary
        x = batch(shape)
        np.testing.assert_allclose(pg.infer(x), ck.infer(x), rtol=1e-4, atol=1e-5)
    img = image((50, 70))
    a = engine.Predictor(files["pt2"], device="cpu", input_size=(48, 80)).run(img)
    b = engine.Predictor(files["ckpt"], device="cpu", input_size=(48, 80)).run(img)
    assert (a == b).mean() >= 0.999


def test_compile_on_cpu(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(2)).eval()
    path = save_program(model, {"classes": list("abcd")}, tmp_path / "conv.pt2", sample_size=(16, 16))
    b = TorchBackend(path, device="cpu", compile=True)
    x = batch((1, 3, 16, 24))
    np.testing.assert_allclose(b.infer(x), model(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    assert b.compiled and b.meta.classes == list("abcd")


def test_bf16_on_cpu(files) -> None:
    x = batch((1, 3, 64, 96))
    ref = TorchBackend(files["ckpt"], device="cpu").infer(x)
    y = TorchBackend(files["ckpt"], device="cpu", precision="bf16").infer(x)
    assert y.dtype == np.float32 and y.shape == ref.shape
    assert np.abs(y - ref).max() < 0.05 * np.abs(ref).max()
    assert (y.argmax(1) == ref.argmax(1)).mean() >= 0.9


def test_bad_options(files) -> None:
    with pytest.raises(ValueError, match="fp16"):
        TorchBackend(files["ckpt"], device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="precision"):
        TorchBackend(files["ckpt"], device="cpu", precision="int8")
    with pytest.raises(ValueError, match="cuda_graphs"):
        TorchBackend(files["ckpt"], device="cpu", cuda_graphs=True)
    with pytest.raises(ValueError, match="device"):
        TorchBackend(files["ckpt"], device="tpu")
    if not CUDA:
        with pytest.raises(RuntimeError, match="CUDA"):
            TorchBackend(files["ckpt"], device="cuda")


# ---- bad files -------------------------------------------------------------------------------------------

def test_bad_files(tmp_path: Path, files) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        engine.Predictor(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt2"):
        TorchBackend(tmp_path / "missing.pt2")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint" * 20)
    with pytest.raises(ValueError, match="garbage.pt"):
        engine.Predictor(garbage)
    garbage2 = tmp_path / "garbage.pt2"
    garbage2.write_bytes(b"not an archive" * 20)
    with pytest.raises(ValueError, match="garbage.pt2"):
        engine.Predictor(garbage2)
    truncated = tmp_path / "truncated.pt2"
    truncated.write_bytes(files["pt2"].read_bytes()[:2000])
    with pytest.raises(ValueError, match="truncated.pt2"):
        engine.Predictor(truncated)
    plain = tmp_path / "plain.pt2"  # a real torch.export program, but no segrt metadata
    model = torch.nn.Conv2d(3, 2, 1).eval()
    torch.export.save(torch.export.export(model, (torch.randn(2, 3, 8, 8),)), str(plain))
    with pytest.raises(ValueError, match=r"plain.pt2.*segrt metadata"):
        engine.Predictor(plain)
    ckpt_as_pt2 = tmp_path / "ckpt.pt2"  # a checkpoint under the program suffix
    shutil.copyfile(files["ckpt"], ckpt_as_pt2)
    with pytest.raises(ValueError, match="ckpt.pt2"):
        engine.Predictor(ckpt_as_pt2)
    no_config = tmp_path / "no_config.pt"
    save_atomic({"state_dict": {}, "meta": {"classes": ["a"]}}, no_config)
    with pytest.raises(ValueError, match="no_config.pt"):
        engine.Predictor(no_config)
    weights_only = tmp_path / "weights.pt"  # a bare state dict is not a segrt checkpoint
    save_atomic(tiny_model().state_dict(), weights_only)
    with pytest.raises(ValueError, match="weights.pt"):
        engine.Predictor(weights_only)
    ckpt = torch.load(files["ckpt"], weights_only=False)  # weights of another class count than the config's
    ckpt["state_dict"] = {k: (v[:2] if k.startswith("decode_head.conv_seg") else v)
                          for k, v in ckpt["state_dict"].items()}
    misshaped = save_atomic(ckpt, tmp_path / "misshaped.pt")
    with pytest.raises(ValueError, match=r"misshaped.pt: not a usable segrt checkpoint.*conv_seg"):
        engine.Predictor(misshaped)


def test_shape_caches_keep_the_most_recently_used() -> None:
    """CUDA graphs and device input buffers are cached per shape, at most MAX_SHAPES of them (LRU)."""
    from collections import OrderedDict

    from engine.backends import torch as tb

    cache: OrderedDict = OrderedDict()
    made: list[tuple[int, ...]] = []

    def get(n: int) -> object:
        key = (1, 3, n, n)
        return tb._cached(cache, key, lambda: made.append(key) or key)

    for n in range(tb.MAX_SHAPES):
        get(n)
    assert get(0) == (1, 3, 0, 0) and len(made) == tb.MAX_SHAPES  # a hit makes nothing, and refreshes 0
    get(100)  # one too many: the least recently used (1) goes, 0 stays
    assert len(cache) == tb.MAX_SHAPES and (1, 3, 1, 1) not in cache and (1, 3, 0, 0) in cache
    get(1)
    assert made[-1] == (1, 3, 1, 1) and len(cache) == tb.MAX_SHAPES


def test_missing_torch_names_the_extra(files, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ImportError, match=r"segrt\[train\]"):
        open_backend(files["ckpt"])


def test_backend_module_imports_without_torch() -> None:
    code = ("import sys, engine, engine.backends, engine.backends.torch; "
            "from engine.backends.torch import TorchBackend, META_FILE; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- CUDA --------------------------------------------------------------------------------------------------

@gpu
@needs_cuda
@pytest.mark.parametrize("kind", ["ckpt", "pt2"])
def test_cuda_matches_cpu(files, kind) -> None:
    x = batch((2, 3, 64, 96))
    ref = TorchBackend(files[kind], device="cpu").infer(x)
    b = TorchBackend(files[kind], device="cuda")
    assert b.device.type == "cuda"
    np.testing.assert_allclose(b.infer(x), ref, rtol=1e-3, atol=1e-3)
    y = b.infer_tensor(torch.from_numpy(x).cuda())  # device tensors in, device tensors out
    assert y.is_cuda and y.dtype == torch.float32
    np.testing.assert_allclose(y.cpu().numpy(), ref, rtol=1e-3, atol=1e-3)


@gpu
@needs_cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_reduced_precision(files, precision) -> None:
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("GPU without bf16")
    x = batch((1, 3, 64, 96))
    ref = TorchBackend(files["ckpt"], device="cpu").infer(x)
    y = TorchBackend(files["ckpt"], device="cuda", precision=precision).infer(x)
    assert y.dtype == np.float32 and y.shape == ref.shape
    assert (y.argmax(1) == ref.argmax(1)).mean() >= 0.9


@gpu
@needs_cuda
@pytest.mark.parametrize("kind, precision", [("ckpt", None), ("pt2", None), ("ckpt", "fp16")])
def test_cuda_graphs(files, kind, precision) -> None:
    eager = TorchBackend(files[kind], device="cuda", precision=precision)
    b = TorchBackend(files[kind], device="cuda", precision=precision, cuda_graphs=True)
    shapes = [(1, 3, 64, 96), (2, 3, 40, 72), (1, 3, 64, 96)]
    outs = []
    for i, shape in enumerate(shapes):
        x = batch(shape, seed=i)
        y = b.infer(x)
        outs.append(y)
        np.testing.assert_allclose(y, eager.infer(x), rtol=1e-3, atol=2e-2 if precision else 1e-3)
    assert sorted(b._graphs) == [(1, 3, 64, 96), (2, 3, 40, 72)]  # captured once per shape, replayed after
    g = b._graphs[(1, 3, 64, 96)]
    ptr = g.static_in.data_ptr()
    b.infer(batch((1, 3, 64, 96), seed=9))
    assert g.static_in.data_ptr() == ptr and b._graphs[(1, 3, 64, 96)] is g  # buffers allocated once per shape
    assert not np.shares_memory(outs[0], outs[2])  # host results stay the caller's
    compiled = TorchBackend(files[kind], device="cuda", compile=True, cuda_graphs=True)
    x = batch((1, 3, 64, 96))
    np.testing.assert_allclose(compiled.infer(x), eager.infer(x) if precision is None else
                               TorchBackend(files[kind], device="cuda").infer(x), rtol=1e-3, atol=1e-3)


def test_predictor_passes_torch_options_and_rejects_them_elsewhere(tmp_path) -> None:
    from engine.backends import open_backend
    from tests.conftest import make_tiny_onnx

    onnx_path, _ = make_tiny_onnx(tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="torch backend only"):
        engine.Predictor(onnx_path, precision="bf16")
    with pytest.raises(ValueError, match="suffix '.xyz'.*\\.pt2"):
        open_backend(onnx_path.rename(tmp_path / "m.xyz"))
    with pytest.raises(ValueError, match="known: auto, onnxruntime, tensorrt, torch"):
        open_backend(tmp_path / "m.xyz", backend="tflite")


def test_predictor_bf16_through_options(files) -> None:
    p = engine.Predictor(files["ckpt"], device="cpu", precision="bf16")
    assert p.backend.name == "torch"
    img = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    assert p.run(img).shape == (40, 60)
