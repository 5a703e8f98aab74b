"""`segrt bench`: files written, ratios, the torch eager row doing the same work, --also models, bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import engine
from engine import bench
from engine.bench import bench_image, bench_predictor, bench_torch_model, parse_shape, run_bench
from engine.cli import main
from tests.conftest import make_tiny_onnx


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


def test_also_models_are_measured_in_the_same_run(tmp_path: Path, tiny_onnx, capsys) -> None:
    other, _ = make_tiny_onnx(tmp_path / "tiny.int8.onnx", seed=1)
    res = run_bench(tiny_onnx[0], (32, 48), also=[other], runs=2, warmup=0, threads=1, out_dir=tmp_path,
                    command="segrt bench tiny.onnx --also tiny.int8.onnx")
    assert list(res["results_ms"]) == ["segrt (onnxruntime)", "bare onnxruntime",
                                       "segrt (onnxruntime, tiny.int8.onnx)", "bare onnxruntime (tiny.int8.onnx)"]
    assert res["also"] == [str(other)] and res["also_labels"] == ["tiny.int8.onnx"]
    assert {"segrt / segrt (tiny.int8.onnx)", "end_to_end / bare network (tiny.int8.onnx)"} <= set(res["ratios"])
    agree = res["label_agreement"]["segrt (onnxruntime, tiny.int8.onnx) vs segrt (onnxruntime)"]
    assert 0.0 <= agree < 1.0  # different weights: some pixels differ
    md = (tmp_path / "engine_bench_tiny_32x48.md").read_text()
    assert md.startswith("# segrt bench: tiny.onnx, tiny.int8.onnx at 32x48")
    assert "segrt bench tiny.onnx --also tiny.int8.onnx" in md and "| bare onnxruntime (tiny.int8.onnx) |" in md
    # the CLI: repeated and multi-valued --also, the command recorded, a missing --also model is a clear error
    (tmp_path / "sub").mkdir()
    third, _ = make_tiny_onnx(tmp_path / "sub" / "tiny.onnx", seed=2)
    assert main(["bench", str(tiny_onnx[0]), "--shape", "16x24", "--runs", "1", "--warmup", "0", "--also",
                 str(other), "--also", str(third), "--out-dir", str(tmp_path), "--name", "y"]) == 0
    saved = json.loads((tmp_path / "y.json").read_text())
    assert saved["also_labels"] == ["tiny.int8.onnx", "sub/tiny.onnx"]
    assert "--also" in saved["command"] and "| segrt (onnxruntime, sub/tiny.onnx) |" in capsys.readouterr().out
    assert main(["bench", str(tiny_onnx[0]), "--shape", "16x24", "--also", str(tmp_path / "gone.onnx"),
                 "--out-dir", str(tmp_path)]) == 2
    assert "gone.onnx" in capsys.readouterr().err


def test_also_argument_errors(tmp_path: Path, tiny_onnx) -> None:
    with pytest.raises(ValueError, match="given twice"):
        bench.also_labels(tiny_onnx[0], [tiny_onnx[0]])
    with pytest.raises(ValueError, match="needs the onnxruntime backend"):
        run_bench(tiny_onnx[0], (8, 8), backends=("torch",), torch_ckpt=tiny_onnx[0], also=[tiny_onnx[0]],
                  out_dir=None)


def test_report_layout_with_torch_and_int8() -> None:
    def row(ms: float, stages: tuple[str, ...] = ("pre", "infer", "post", "end_to_end")) -> dict:
        return {s: {"median": ms, "p90": ms, "p99": ms, "mean": ms} for s in stages}

    bare = ("infer", "end_to_end")
    rows = {"segrt (onnxruntime)": row(100.0), "bare onnxruntime": row(95.0, bare),
            "segrt (onnxruntime, m.int8.onnx)": row(50.0), "bare onnxruntime (m.int8.onnx)": row(40.0, bare),
            "torch eager": row(200.0)}
    r = bench.ratios(rows, ["m.int8.onnx"])
    assert r["torch eager / segrt"] == pytest.approx(2.0)
    assert r["torch eager / segrt (m.int8.onnx)"] == pytest.approx(4.0)
    assert r["segrt / segrt (m.int8.onnx)"] == pytest.approx(2.0)
    assert r["bare onnxruntime / bare onnxruntime (m.int8.onnx)"] == pytest.approx(95 / 40)
    result = {"model": "m.onnx", "also": ["m.int8.onnx"], "shape": [512, 1024], "runs": 3, "warmup": 1, "threads": 2,
              "machine": {"cores": 2, "cpu": "x86_64", "onnxruntime": "1"}, "results_ms": rows, "ratios": r,
              "label_agreement": {"torch eager vs segrt (onnxruntime)": 1.0}}
    md = bench.markdown(result)
    assert "- torch eager / segrt (m.int8.onnx): **4.000x**" in md
    assert "target torch eager fp32 / segrt >= 3.5x: met (torch eager / segrt (m.int8.onnx): 4.00x)" in md
    assert "torch eager vs segrt (onnxruntime): 100.000%" in md
    r["torch eager / segrt (m.int8.onnx)"] = 3.0
    assert "3.5x: not met (torch eager / segrt (m.int8.onnx): 3.00x)" in bench.markdown(result)
