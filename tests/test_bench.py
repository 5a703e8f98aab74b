"""`segrt bench`: files written, ratios, the torch eager row doing the same work, bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import engine
from engine.bench import bench_image, bench_predictor, bench_torch_model, parse_shape, run_bench
from engine.cli import main


def test_run_bench_writes_report(tmp_path: Path, tiny_onnx) -> None:
    res = run_bench(tiny_onnx[0], (32, 48), runs=3, warmup=1, threads=1, out_dir=tmp_path)
    assert set(res["results_ms"]) == {"segrt (onnxruntime)", "bare onnxruntime"}
    assert set(res["results_ms"]["segrt (onnxruntime)"]) == {"pre", "infer", "post", "end_to_end"}
    assert res["ratios"]["end_to_end / bare network"] > 0
    names = sorted(Path(f).name for f in res["files"])
    assert names == ["engine_bench_tiny_32x48.json", "engine_bench_tiny_32x48.md", "engine_bench_tiny_32x48.png"]
    assert json.loads((tmp_path / names[0]).read_text())["shape"] == [32, 48]
    assert (tmp_path / names[2]).read_bytes()[:4] == b"\x89PNG"


def test_torch_row_does_the_same_work(tiny_onnx) -> None:
    path, w = tiny_onnx
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1, bias=False), torch.nn.AvgPool2d(2))
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(w)[:, :, None, None])
    img = bench_image((40, 64))
    p = engine.Predictor(path, input_size=(40, 64))
    _, ours = bench_predictor(p, img, runs=2, warmup=0)
    meta = {"mean": p.meta.mean, "std": p.meta.std}
    stats, theirs = bench_torch_model(model, meta, img, (40, 64), runs=2, warmup=0)
    assert set(stats) == {"pre", "infer", "post", "end_to_end"}
    assert (ours == theirs).mean() >= 0.999


def test_bad_arguments(tmp_path: Path, tiny_onnx, capsys) -> None:
    for text in ("512", "axb", "0x4"):
        with pytest.raises(ValueError, match="shape"):
            parse_shape(text)
    with pytest.raises(ValueError, match="--torch"):
        run_bench(tiny_onnx[0], (8, 8), backends=("onnxruntime", "torch"), out_dir=None)
    with pytest.raises(ValueError, match="unknown backend"):
        run_bench(tiny_onnx[0], (8, 8), backends=("tensorflow",), out_dir=None)
    with pytest.raises(ValueError, match="runs"):
        run_bench(tiny_onnx[0], (8, 8), runs=0, out_dir=None)
    assert main(["bench", str(tiny_onnx[0]), "--shape", "16x24", "--runs", "2", "--warmup", "0",
                 "--out-dir", str(tmp_path), "--name", "x"]) == 0
    assert (tmp_path / "x.md").exists() and "end_to_end / bare network" in capsys.readouterr().out
    assert main(["bench", str(tmp_path / "nope.onnx"), "--shape", "16x24", "--out-dir", str(tmp_path)]) == 2
    assert main(["bench", str(tiny_onnx[0]), "--shape", "big", "--out-dir", str(tmp_path)]) == 2
    assert np.isfinite(json.loads((tmp_path / "x.json").read_text())["ratios"]["end_to_end / bare network"])
