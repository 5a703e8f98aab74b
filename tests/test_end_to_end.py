"""The whole path at tiny size: synthetic data -> train -> checkpoint/resume -> export -> engine.Predictor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import engine
from engine.cli import main as segrt
from training.checkpoint import load_checkpoint
from training.config import config_from_dict
from training.data import SegFolderDataset
from training.evaluate import predict_labels
from training.export import export_checkpoint, load_trained
from training.train import train


def tiny_config(tmp: Path, iters: int, work: str = "work") -> dict:
    return {
        "model": {"name": "pspnet", "backbone": "resnet18",
                  "backbone_kwargs": {"stem_channels": 8, "base_channels": 8}},
        "data": {"root": str(tmp / "data"), "synthetic": {"n_train": 6, "n_val": 3, "height": 64, "width": 128},
                 "input_size": [64, 128], "crop_size": [64, 128]},
        "train": {"iters": iters, "batch_size": 2, "eval_interval": 100, "checkpoint_interval": 2, "threads": 2},
        "work_dir": str(tmp / work),
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("e2e")
    metrics = train(config_from_dict(tiny_config(tmp, 4)), quiet=True)
    assert 0.0 <= metrics["mIoU"] <= 1.0 and set(metrics["per_class_IoU"]) >= {"road", "sky"}
    return tmp


def test_checkpoint_contents(trained: Path) -> None:
    ckpt = load_checkpoint(trained / "work" / "last.pt")
    assert ckpt["iter"] == 4
    assert any(k.startswith("backbone.") for k in ckpt["state_dict"])
    assert any(k.startswith("decode_head.conv_seg") for k in ckpt["state_dict"])
    assert ckpt["meta"]["classes"][0] == "road" and ckpt["meta"]["input_size"] == [64, 128]
    assert not list((trained / "work").glob("*.tmp"))


def test_resume_continues_exactly(tmp_path: Path) -> None:
    torch.use_deterministic_algorithms(True)
    try:
        train(config_from_dict(tiny_config(tmp_path, 4, "full")), quiet=True)
        cfg = config_from_dict(tiny_config(tmp_path, 4, "split"))
        train(cfg, quiet=True, stop_after=2)
        assert load_checkpoint(tmp_path / "split" / "last.pt")["iter"] == 2
        train(cfg, resume="auto", quiet=True)
    finally:
        torch.use_deterministic_algorithms(False)
    full = load_checkpoint(tmp_path / "full" / "last.pt")["state_dict"]
    split = load_checkpoint(tmp_path / "split" / "last.pt")["state_dict"]
    for k in full:
        assert torch.equal(full[k], split[k]), k


def test_export_and_predictor_agree_with_torch(trained: Path) -> None:
    ckpt = trained / "work" / "last.pt"
    onnx_path = export_checkpoint(ckpt, trained / "model.onnx")
    proto = onnx.load(onnx_path)
    assert proto.opset_import[0].version >= 17
    props = {p.key: p.value for p in proto.metadata_props}
    assert {"segrt.classes", "segrt.palette", "segrt.mean", "segrt.std", "segrt.input_size"} <= set(props)
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] == "batch" and dims[2] == "height" and dims[3] == "width"

    model, meta = load_trained(ckpt)
    p = engine.Predictor(onnx_path)
    assert p.classes == meta["classes"]
    ds = SegFolderDataset(trained / "data", "val")
    agree = []
    for i in range(len(ds)):
        img = ds[i]["image"]
        ref = predict_labels(model, img, meta["input_size"], meta["mean"], meta["std"]).numpy()
        agree.append((p.run(img) == ref).mean())
    assert np.mean(agree) >= 0.995


def test_cli_errors(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: {iterations: 3}\n")
    assert segrt(["train", str(cfg)]) == 2
    assert "iterations" in capsys.readouterr().err
    assert segrt(["export", str(tmp_path / "none.pt"), "-o", str(tmp_path / "x.onnx")]) == 2
    assert "none.pt" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert segrt(["export", str(bad), "-o", str(tmp_path / "x.onnx")]) == 2
    assert "bad.pt" in capsys.readouterr().err
