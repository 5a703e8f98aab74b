"""The torch-free deployment half of the demo, on a tiny model and dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import make_tiny_onnx
from training.data import generate_dataset
from training.data.synthetic import CLASSES


def test_demo_engine_runs_without_torch(tmp_path: Path) -> None:
    from engine.metadata import ModelMeta

    root = generate_dataset(tmp_path / "data" / "synthetic", n_train=1, n_val=2, height=64, width=128)
    model, _ = make_tiny_onnx(tmp_path / "m.onnx", num_classes=len(CLASSES),
                              meta=ModelMeta(classes=list(CLASSES), output_stride=2))
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "training.demo_engine", str(model), "--data", str(root), "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "mIoU" in res.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["pixAcc"] <= 1.0 and set(metrics["per_class_IoU"]) == set(CLASSES)
    latency = json.loads((out / "latency.json").read_text())
    assert latency["torch_imported"] is False and latency["frames"] == 120
    assert {"pre", "infer", "post"} <= set(latency["stages_ms"])
    assert (out / "overlay.mp4").stat().st_size > 0 and len(list(out.glob("overlay_*.png"))) == 2
