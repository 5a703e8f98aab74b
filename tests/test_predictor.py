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


def test_engine_imports_without_torch() -> None:
    code = "import sys, engine, engine.ops, engine.video, engine.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
