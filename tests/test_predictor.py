"""engine.Predictor over ONNX Runtime: results against a torch reference, metadata, and bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import engine
from engine.metadata import ModelMeta
from tests.conftest import make_tiny_onnx


def reference(img: np.ndarray, w: np.ndarray, meta: ModelMeta, stride: int) -> np.ndarray:
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    h, wd = img.shape[:2]
    if meta.input_size:
        x = F.interpolate(x, size=meta.input_size, mode="bilinear", align_corners=False)
    x = (x - torch.tensor(meta.mean).view(1, 3, 1, 1)) / torch.tensor(meta.std).view(1, 3, 1, 1)
    logits = F.avg_pool2d(torch.einsum("kc,nchw->nkhw", torch.from_numpy(w), x), stride)
    return F.interpolate(logits, size=(h, wd), mode="bilinear", align_corners=False).argmax(1)[0].numpy()


@pytest.mark.parametrize("input_size", [None, (48, 64)])
@pytest.mark.parametrize("shape", [(37, 53), (64, 64), (120, 90)])
def test_run_matches_reference(tmp_path: Path, input_size, shape) -> None:
    meta = ModelMeta(classes=["a", "b", "c", "d"], input_size=input_size, output_stride=2)
    path, w = make_tiny_onnx(tmp_path / "m.onnx", meta=meta)
    img = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    p = engine.Predictor(path)
    labels = p.run(img)
    assert labels.shape == shape and labels.dtype == np.uint8
    ref = reference(img, w, meta, 2)
    assert (labels == ref).mean() >= 0.999
    assert set(p.timings) == {"pre", "infer", "post"}


def test_scores_batch_stream_and_metadata(tiny_onnx) -> None:
    path, _ = tiny_onnx
    p = engine.Predictor(path)
    assert p.classes == ["c0", "c1", "c2", "c3"] and p.palette.shape == (4, 3)
    img = np.random.default_rng(2).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    labels, scores = p.run(img, return_scores=True)
    assert scores.shape == (30, 40) and scores.dtype == np.float32
    assert np.array_equal(labels, p.run(img))
    batch = p.run_batch([img, img[:20]])
    assert [b.shape for b in batch] == [(30, 40), (20, 40)]
    assert all(np.array_equal(a, labels) for a in p.stream([img, img]))
    shown = p.overlay(img, labels)
    assert shown.shape == img.shape and shown.dtype == np.uint8


@pytest.mark.parametrize("bad, message", [
    ([[1, 2, 3]], "numpy array"),
    (np.zeros((8, 8, 3), np.float32), "uint8"),
    (np.zeros((8, 8), np.uint8), "shape"),
    (np.zeros((8, 8, 4), np.uint8), "3 channels"),
    (np.zeros((0, 8, 3), np.uint8), "empty"),
])
def test_bad_images_raise(tiny_onnx, bad, message) -> None:
    p = engine.Predictor(tiny_onnx[0])
    with pytest.raises(ValueError, match=message):
        p.run(bad)


def test_bad_model_files(tmp_path: Path, tiny_onnx) -> None:
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        engine.Predictor(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(ValueError, match="junk.onnx"):
        engine.Predictor(junk)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(tiny_onnx[0].read_bytes()[:40])
    with pytest.raises(ValueError, match="truncated.onnx"):
        engine.Predictor(truncated)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        engine.Predictor(empty)
    with pytest.raises(ValueError, match="suffix"):
        engine.Predictor(tiny_onnx[0].rename(tmp_path / "model.xyz"))


def test_metadata_round_trip_and_errors() -> None:
    meta = ModelMeta(classes=["x", "y"], palette=[[1, 2, 3], [4, 5, 6]], input_size=(64, 128), output_stride=16)
    back = ModelMeta.from_props(meta.to_props())
    assert back == meta
    with pytest.raises(ValueError, match="segrt.mean"):
        ModelMeta.from_props({"segrt.mean": "[1, 2"})
    with pytest.raises(ValueError, match="input_size"):
        ModelMeta.from_props({"segrt.input_size": "[0, 4]"})



@pytest.mark.parametrize("key, raw", [
    ("classes", '"5"'), ("classes", "[1, 2]"), ("input_size", "5"), ("input_size", "[4.5, 8]"),
    ("mean", '"abc"'), ("mean", "[1, 2]"), ("std", "[1, 0, 1]"), ("align_corners", '"no"'),
    ("palette", "[[1, 2]]"), ("palette", "[[0, 0, 300]]"), ("output_stride", "0"), ("size_divisor", "true"),
    ("ignore_index", '"255"'), ("model", "3"),
])
def test_metadata_of_the_wrong_type_is_named(key: str, raw: str) -> None:
    """Every mistyped metadata entry is a ValueError naming the file and the entry, never a TypeError or a
    silently wrong value (a string "no" for align_corners used to read as True)."""
    with pytest.raises(ValueError, match=rf"m\.onnx: metadata entry 'segrt\.{key}' must be"):
        ModelMeta.from_props({f"segrt.{key}": raw}, source="m.onnx")


def test_engine_imports_without_torch() -> None:
    code = "import sys, engine, engine.ops, engine.video, engine.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- batching, sliding windows, multi-scale + flip ---------------------------------------------------------------

class CountingBackend(engine.backends.Backend):
    """A numpy backend (1x1 conv + 2x2 average pool) that records the batch shapes it was given."""

    name = "numpy"

    def __init__(self, w: np.ndarray, meta: ModelMeta) -> None:
        self.w, self.meta, self.calls = w, meta, []

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.calls.append(x.shape)
        c = np.einsum("kc,nchw->nkhw", self.w, x)
        n, k, h, w = c.shape
        c = c[:, :, : h // 2 * 2, : w // 2 * 2]
        return c.reshape(n, k, h // 2, 2, w // 2, 2).mean((3, 5)).astype(np.float32)


def _net(x: torch.Tensor, w: np.ndarray) -> torch.Tensor:
    return F.avg_pool2d(torch.einsum("kc,nchw->nkhw", torch.from_numpy(w), x), 2)


def _normalized(img: np.ndarray, meta: ModelMeta, size: tuple[int, int]) -> torch.Tensor:
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    if tuple(size) != img.shape[:2]:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return (x - torch.tensor(meta.mean).view(1, 3, 1, 1)) / torch.tensor(meta.std).view(1, 3, 1, 1)


def _ref_slide(x: torch.Tensor, w: np.ndarray, crop: tuple[int, int], stride: tuple[int, int]) -> torch.Tensor:
    """MMSeg slide_inference, written independently in torch, with zero padding of short windows."""
    _, _, h, wd = x.shape
    (ch, cw), (sh, sw) = crop, stride
    preds = torch.zeros(1, w.shape[0], h, wd)
    count = torch.zeros(1, 1, h, wd)
    for i in range(max(h - ch + sh - 1, 0) // sh + 1):
        for j in range(max(wd - cw + sw - 1, 0) // sw + 1):
            y1, x1 = i * sh, j * sw
            y2, x2 = min(y1 + ch, h), min(x1 + cw, wd)
            y1, x1 = max(y2 - ch, 0), max(x2 - cw, 0)
            c = F.pad(x[:, :, y1:y2, x1:x2], (0, cw - (x2 - x1), 0, ch - (y2 - y1)))
            up = F.interpolate(_net(c, w), size=(ch, cw), mode="bilinear", align_corners=False)
            preds[:, :, y1:y2, x1:x2] += up[:, :, : y2 - y1, : x2 - x1]
            count[:, :, y1:y2, x1:x2] += 1
    return preds / count


def _ref_tta(img, w, meta, mode, scales, flip, crop=None, stride=None) -> torch.Tensor:
    h, wd = img.shape[:2]
    parts = []
    for s in scales:
        base = (h, wd) if mode == "slide" or meta.input_size is None else meta.input_size
        x = _normalized(img, meta, (max(1, round(base[0] * s)), max(1, round(base[1] * s))))
        fn = (lambda t: _ref_slide(t, w, crop, stride)) if mode == "slide" else (lambda t: _net(t, w))
        lg = fn(x)
        if flip:
            lg = 0.5 * (lg + fn(x.flip(3)).flip(3))
        parts.append(lg)
    size = (h, wd) if mode == "slide" else max((p.shape[2:] for p in parts), key=lambda t: t[0] * t[1])
    return torch.stack([F.interpolate(p, size=tuple(size), mode="bilinear", align_corners=False)
                        for p in parts]).mean(0)


@pytest.mark.parametrize("shape", [(37, 53), (64, 96), (20, 24)])
@pytest.mark.parametrize("scales, flip", [((1.0,), False), ((1.0,), True), ((0.75, 1.0, 1.25), True)])
def test_slide_matches_reference(tmp_path: Path, shape, scales, flip) -> None:
    meta = ModelMeta(classes=["a", "b", "c", "d"], output_stride=2)
    path, w = make_tiny_onnx(tmp_path / "m.onnx", meta=meta)
    img = np.random.default_rng(3).integers(0, 256, (*shape, 3), dtype=np.uint8)
    p = engine.Predictor(path, mode="slide", crop_size=(24, 32), stride=(16, 20), scales=scales, flip=flip,
                         batch_size=3)
    ref = _ref_tta(img, w, meta, "slide", scales, flip, (24, 32), (16, 20))
    assert np.allclose(p.logits(img), ref.numpy(), atol=1e-4)
    labels = p.run(img)
    assert labels.shape == shape
    assert (labels == ref.argmax(1)[0].numpy()).mean() >= 0.999


@pytest.mark.parametrize("input_size", [None, (40, 56)])
def test_multiscale_flip_whole_matches_reference(tmp_path: Path, input_size) -> None:
    meta = ModelMeta(classes=["a", "b", "c", "d"], output_stride=2, input_size=input_size)
    path, w = make_tiny_onnx(tmp_path / "m.onnx", meta=meta)
    img = np.random.default_rng(4).integers(0, 256, (45, 61, 3), dtype=np.uint8)
    p = engine.Predictor(path, scales=(0.75, 1.0, 1.25), flip=True)
    ref = _ref_tta(img, w, meta, "whole", (0.75, 1.0, 1.25), True)
    assert np.allclose(p.logits(img), ref.numpy(), atol=1e-4)
    full = F.interpolate(ref, size=(45, 61), mode="bilinear", align_corners=False)
    labels, scores = p.run(img, return_scores=True)
    assert (labels == full.argmax(1)[0].numpy()).mean() >= 0.999
    assert np.allclose(scores, full.max(1).values[0].numpy(), atol=1e-4)


def test_tta_any_backend_and_crop_batching() -> None:
    rng = np.random.default_rng(5)
    w = rng.standard_normal((3, 3)).astype(np.float32)
    be = CountingBackend(w, ModelMeta(classes=["a", "b", "c"]))
    p = engine.Predictor(be, mode="slide", crop_size=16, stride=8, batch_size=4, flip=True)
    img = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    ref = _ref_tta(img, w, be.meta, "slide", (1.0,), True, (16, 16), (8, 8))
    assert np.allclose(p.logits(img), ref.numpy(), atol=1e-4)
    assert be.calls[0] == (4, 3, 16, 16) and sum(c[0] for c in be.calls) == 2 * 3 * 4  # 3x4 windows, twice


def test_run_batch_batches_same_sizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    be = CountingBackend(w, ModelMeta(classes=list("abcd")))
    p = engine.Predictor(be, batch_size=3)
    imgs = [rng.integers(0, 256, s, dtype=np.uint8) for s in [(32, 48, 3)] * 4 + [(20, 30, 3)]]
    out = p.run_batch(imgs)
    assert sorted(be.calls) == sorted([(3, 3, 32, 48), (1, 3, 32, 48), (1, 3, 20, 30)])
    assert all(np.array_equal(o, p.run(im)) for o, im in zip(out, imgs))
    buf = p._bufs["batch"]
    p.run_batch(imgs[:3] + imgs[-1:])
    assert p._bufs["batch"] is buf  # reused, not reallocated
    pairs = p.run_batch(imgs, return_scores=True)
    assert all(np.array_equal(lab, o) and sc.shape == o.shape for (lab, sc), o in zip(pairs, out))
    sized = engine.Predictor(be, input_size=(16, 24))  # different image sizes, one network size -> one batch
    be.calls.clear()
    res = sized.run_batch(imgs)
    assert be.calls == [(5, 3, 16, 24)] and [r.shape for r in res] == [im.shape[:2] for im in imgs]
    assert [o.shape for o in p.stream(iter(imgs), batch_size=2)] == [im.shape[:2] for im in imgs]


@pytest.mark.parametrize("kw, message", [
    ({"mode": "tiles"}, "mode"), ({"mode": "slide"}, "crop_size"), ({"scales": ()}, "scales"),
    ({"scales": (1.0, -1)}, "scales"), ({"crop_size": (0, 4)}, "crop_size"), ({"batch_size": 0}, "batch_size"),
    ({"palette": "nope"}, "palette"),
    ({"mode": "slide", "crop_size": 16, "stride": (8, 40)}, "must not exceed crop_size"),
])
def test_bad_options_raise(tiny_onnx, kw, message) -> None:
    with pytest.raises(ValueError, match=message):
        p = engine.Predictor(tiny_onnx[0], **kw)
        p.palette  # noqa: B018


def test_backend_returning_bad_logits_is_reported(tiny_onnx) -> None:
    class Bad(CountingBackend):
        def infer(self, x):
            return np.zeros((3,), np.float32)

    p = engine.Predictor(Bad(np.ones((2, 3), np.float32), ModelMeta(classes=["a", "b"])))
    with pytest.raises(ValueError, match="backend returned"):
        p.run(np.zeros((8, 8, 3), np.uint8))


def test_size_divisor_rounds_the_network_size_up(tmp_path) -> None:
    meta = ModelMeta(classes=["a", "b", "c", "d"], output_stride=2, size_divisor=16)
    path, _ = make_tiny_onnx(tmp_path / "m.onnx", meta=meta)
    p = engine.Predictor(path)
    assert p.input_size_for(67, 85) == (80, 96)
    labels = p.run(np.zeros((67, 85, 3), np.uint8))
    assert labels.shape == (67, 85)
    with pytest.raises(ValueError, match="size_divisor"):
        engine.Predictor(path, mode="slide", crop_size=(40, 40))
    with pytest.raises(ValueError, match="size_divisor"):
        ModelMeta.from_props({"segrt.size_divisor": "0"})


def test_export_records_the_size_divisor(tmp_path) -> None:
    from training.export import export_onnx
    from training.models import build, model_info

    m = build("unet", num_classes=3, **model_info("unet")["tiny"][0]).eval()
    meta = ModelMeta(classes=["a", "b", "c"], output_stride=m.output_stride)
    path = export_onnx(m, meta, tmp_path / "unet.onnx", sample_size=(40, 50))  # rounded up to 48x64
    p = engine.Predictor(path)
    assert p.meta.size_divisor == 16
    assert p.run(np.zeros((37, 45, 3), np.uint8)).shape == (37, 45)


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_onnx_cuda_device_is_never_a_silent_cpu_fallback(tiny_onnx, monkeypatch) -> None:
    import onnxruntime as ort

    with pytest.raises(ValueError, match="unknown device 'cuda:x'"):
        engine.Predictor(tiny_onnx[0], device="cuda:x")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        engine.Predictor(tiny_onnx[0], device="gpu")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(RuntimeError, match="no CUDAExecutionProvider"):
            engine.Predictor(tiny_onnx[0], device="cuda:0")
        # a CUDA provider that is listed but cannot start: ONNX Runtime falls back to the CPU, we refuse
        real = ort.get_available_providers
        monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", *real()])
        with pytest.raises(RuntimeError, match="could not start its CUDA provider"):
            engine.Predictor(tiny_onnx[0], device="cuda")
    assert engine.Predictor(tiny_onnx[0], device="cpu").backend.providers == ["CPUExecutionProvider"]
