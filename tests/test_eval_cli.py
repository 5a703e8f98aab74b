"""``segrt eval``: one code path (engine.Predictor) for model files and checkpoints, any dataset format, TTA modes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.cli import main
from engine.metadata import ModelMeta
from tests.conftest import make_tiny_onnx


def _folder_dataset(root: Path, n: int = 3, classes: int = 4) -> Path:
    """A tiny dataset in the custom folder format: images/val/*.png, masks/val/*.png, classes.yaml."""
    rng = np.random.default_rng(0)
    for sub in ("images/val", "masks/val"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(root / f"images/val/{i}.png")
        Image.fromarray(rng.integers(0, classes, (24, 32), dtype=np.uint8)).save(root / f"masks/val/{i}.png")
    (root / "classes.yaml").write_text("classes: [a, b, c, d]\n")
    return root


def test_eval_model_file_modes_and_output(tmp_path: Path, capsys) -> None:
    model, _ = make_tiny_onnx(tmp_path / "m.onnx", meta=ModelMeta(classes=list("abcd"), output_stride=2))
    data = _folder_dataset(tmp_path / "data")
    out = tmp_path / "metrics.json"
    assert main(["eval", str(model), "--data", str(data), "-o", str(out)]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert whole == json.loads(out.read_text())
    assert whole["samples"] == 3 and 0.0 <= whole["mIoU"] <= 1.0 and whole["mode"] == "whole"
    assert main(["eval", str(model), "--data", str(data), "--mode", "slide", "--crop", "16x16", "--flip",
                 "--scales", "1.0", "--limit", "2"]) == 0
    slide = json.loads(capsys.readouterr().out)
    assert slide["samples"] == 2 and slide["mode"] == "slide" and slide["flip"] is True


def test_eval_errors_name_the_problem(tmp_path: Path, capsys) -> None:
    model, _ = make_tiny_onnx(tmp_path / "m.onnx", num_classes=3, meta=ModelMeta(classes=list("abc"),
                                                                                  output_stride=2))
    data = _folder_dataset(tmp_path / "data")
    assert main(["eval", str(model), "--data", str(data)]) == 2
    assert "predicts 3 classes" in capsys.readouterr().err
    assert main(["eval", str(model), "--data", str(data), "--dataset", "nope"]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing.onnx"), "--data", str(data)]) == 2


def test_eval_of_a_model_file_does_not_import_torch(tmp_path: Path) -> None:
    model, _ = make_tiny_onnx(tmp_path / "m.onnx", meta=ModelMeta(classes=list("abcd"), output_stride=2))
    data = _folder_dataset(tmp_path / "data")
    code = ("import sys; from engine.cli import main; rc = main(['eval', sys.argv[1], '--data', sys.argv[2]]); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, str(model), str(data)], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert r.returncode == 0, r.stderr


def test_eval_of_a_checkpoint_matches_its_onnx_export(tmp_path: Path, capsys) -> None:
    torch = pytest.importorskip("torch")
    from training.checkpoint import save_atomic
    from training.config import Config, DataCfg, ModelCfg
    from training.export import export_onnx
    from training.models import build

    torch.manual_seed(0)
    kw = {"backbone": "resnet18", "backbone_kwargs": {"base_channels": 8, "stem_channels": 8}}
    m = build("fcn", num_classes=4, aux=False, **kw).eval()
    meta = {"classes": list("abcd"), "palette": [[0, 0, 0]] * 4, "input_size": [32, 48], "output_stride": 8}
    cfg = Config(model=ModelCfg(name="fcn", aux=False, **kw), data=DataCfg(input_size=(32, 48)))
    save_atomic({"state_dict": m.state_dict(), "config": cfg.to_dict(), "meta": meta}, tmp_path / "m.pt")
    export_onnx(m, meta, tmp_path / "m.onnx", sample_size=(32, 48))
    data = _folder_dataset(tmp_path / "data")
    results = []
    for f in ("m.pt", "m.onnx"):
        assert main(["eval", str(tmp_path / f), "--data", str(data), "--threads", "1"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0]["pixAcc"] == pytest.approx(results[1]["pixAcc"], abs=0.01)
    assert results[0]["mIoU"] == pytest.approx(results[1]["mIoU"], abs=0.02)
