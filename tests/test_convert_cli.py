"""``segrt convert``: imported checkpoints become segrt checkpoints that export to ONNX and give the source's logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cli import main
from training.convert import convert, load_weights
from training.convert.mmseg_config import read_config
from training.convert.mmseg_models import model_spec
from training.export import export_onnx, load_trained
from training.models import build

transformers = pytest.importorskip("transformers")
ort = pytest.importorskip("onnxruntime")
FIXTURES = Path(__file__).parent / "fixtures" / "mmseg_configs"


pytestmark = [pytest.mark.usefixtures("torch_single_thread")]


def _hf_segformer(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    cfg = transformers.SegformerConfig(
        num_channels=3, num_encoder_blocks=4, depths=[1, 1, 1, 1], sr_ratios=[8, 4, 2, 1], hidden_sizes=[8, 16, 24, 32],
        num_attention_heads=[1, 2, 3, 4], decoder_hidden_size=16, num_labels=4,
        id2label={0: "road", 1: "car", 2: "sky", 3: "tree"}, label2id={"road": 0, "car": 1, "sky": 2, "tree": 3})
    torch.manual_seed(0)
    ref = transformers.SegformerForSemanticSegmentation(cfg).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    folder = tmp_path / "hf"
    ref.save_pretrained(folder)
    return folder, ref


def test_hf_folder_to_checkpoint_to_onnx(tmp_path: Path, capsys) -> None:
    folder, ref = _hf_segformer(tmp_path)
    out = tmp_path / "segformer.pt"
    assert main(["convert", "hf", str(folder), "-o", str(out)]) == 0
    assert '"format": "hf"' in capsys.readouterr().out
    model, meta = load_trained(out)
    assert meta["classes"] == ["road", "car", "sky", "tree"] and len(meta["palette"]) == 4
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        want = ref(pixel_values=x).logits.numpy()
        got = model(x).numpy()
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    onnx_path = export_onnx(model, meta, tmp_path / "segformer.onnx", sample_size=(64, 96))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (logits,) = sess.run(None, {"input": x.numpy()})
    assert np.abs(logits - want).max() <= 1e-4 * np.abs(want).max()


def test_hf_weights_file_needs_its_config(tmp_path: Path) -> None:
    folder, _ = _hf_segformer(tmp_path)
    weights = folder / "model.safetensors"
    with pytest.raises(ValueError, match="needs --config"):
        convert("hf", weights)
    model, report = convert("hf", weights, config=folder / "config.json")
    assert report["architecture"] == "SegformerForSemanticSegmentation" and model.num_classes == 4
    assert set(load_weights(weights)) and not model.training


def test_mmseg_checkpoint_through_the_cli(tmp_path: Path) -> None:
    config = FIXTURES / "fcn" / "fcn_r18-d8_4xb2-80k_cityscapes-512x1024.py"
    spec = model_spec(read_config(config)["model"])
    m = spec.model
    torch.manual_seed(0)
    src = build(m.name, num_classes=spec.num_classes, backbone=m.backbone, backbone_kwargs=m.backbone_kwargs,
                aux=m.aux, **m.head_kwargs).eval()
    ckpt = tmp_path / "fcn.pth"
    torch.save({"meta": {"mmseg_version": "1.2.2"}, "state_dict": src.state_dict()}, ckpt)
    out = tmp_path / "fcn.pt"
    assert main(["convert", "mmseg", str(ckpt), "--config", str(config), "-o", str(out)]) == 0
    model, meta = load_trained(out)
    assert len(meta["classes"]) == 19 and meta["classes"][0] == "road"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), src(x), atol=1e-5)


def test_cli_errors(tmp_path: Path, capsys) -> None:
    assert main(["convert", "hf", str(tmp_path / "missing"), "-o", str(tmp_path / "o.pt")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    assert main(["convert", "torchvision", str(bad), "--arch", "nope", "-o", str(tmp_path / "o.pt")]) == 2
    assert "--arch" in capsys.readouterr().err
    assert main(["convert", "torchvision", str(bad), "--arch", "fcn_resnet50", "-o", str(tmp_path / "o.pt")]) == 2
    assert "not a readable weights file" in capsys.readouterr().err
    assert not (tmp_path / "o.pt").exists()
