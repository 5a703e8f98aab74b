"""`segrt bench` on ONNX models: files written, ratios, the torch eager row doing the same work, --also models,
bad arguments, row names and the configuration recorded. Torch artifacts (.pt/.pt2): tests/test_bench_torch.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import engine
from engine import bench
from engine.bench import bench_image, bench_predictor, bench_torch_model, parse_shape, run_bench
from engine.cli import main
from engine.metadata import ModelMeta
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
    with pytest.raises(ValueError, match="--torch CKPT"):
        run_bench(tiny_onnx[0], (8, 8), rows=("onnxruntime", "torch"), out_dir=None)
    with pytest.raises(ValueError, match="unknown bench row 'tensorflow'"):
        run_bench(tiny_onnx[0], (8, 8), rows=("tensorflow",), out_dir=None)
    with pytest.raises(ValueError, match="no bench rows"):
        run_bench(tiny_onnx[0], (8, 8), rows=" , ", out_dir=None)
    with pytest.raises(ValueError, match="runs"):
        run_bench(tiny_onnx[0], (8, 8), runs=0, out_dir=None)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        run_bench(tiny_onnx[0], (8, 8), threads=-1, out_dir=None)
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        run_bench(tiny_onnx[0], (8, 8), precision="fp8", out_dir=None)
    # torch-only options on an ONNX model: rejected by the backend, naming them
    with pytest.raises(ValueError, match=r"\['cuda_graphs'\] apply to the torch backend only"):
        run_bench(tiny_onnx[0], (8, 8), cuda_graphs=True, out_dir=None)
    with pytest.raises(ValueError, match=r"\['precision'\] apply to the torch backend only"):
        run_bench(tiny_onnx[0], (8, 8), precision="bf16", out_dir=None)
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
    with pytest.raises(ValueError, match="needs the segrt rows"):
        run_bench(tiny_onnx[0], (8, 8), rows=("torch",), torch_ckpt=tiny_onnx[0], also=[tiny_onnx[0]],
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


def test_configuration_and_threads_are_recorded(tmp_path: Path, tiny_onnx) -> None:
    res = run_bench(tiny_onnx[0], (16, 24), runs=1, warmup=0, out_dir=None)  # no threads: every core
    assert (res["backend"], res["device"], res["precision"]) == ("onnxruntime", "cpu", None)
    assert res["options"] == {"compile": False, "cuda_graphs": False}
    assert res["threads"] == os.cpu_count()
    assert set(res["configs"]) == {"segrt (onnxruntime)", "bare onnxruntime"}
    for config in res["configs"].values():
        assert config["threads"] == os.cpu_count()  # read back from the ONNX Runtime session
        assert config["model"] == str(tiny_onnx[0]) and config["network_shape"] == [16, 24]
    res = run_bench(tiny_onnx[0], (16, 24), runs=1, warmup=0, threads=1, out_dir=tmp_path, name="one")
    assert res["threads"] == 1 and res["configs"]["segrt (onnxruntime)"]["threads"] == 1
    md = (tmp_path / "one.md").read_text()
    assert "- `segrt (onnxruntime)`: onnxruntime on cpu, the file's precision, 1 thread, network 16x24" in md
    assert "- `bare onnxruntime`:" not in md  # the same configuration as its engine row
    assert json.loads((tmp_path / "one.json").read_text())["row_names"] == {
        "segrt": "segrt (onnxruntime)", "bare": "bare onnxruntime", "also": {}}


def test_bare_network_runs_at_the_predictors_size(tmp_path: Path, monkeypatch) -> None:
    """A model with size_divisor 8 at 30x45: the engine runs the network at 32x48, and so does the bare row."""
    path, _ = make_tiny_onnx(tmp_path / "div8.onnx", meta=ModelMeta(classes=list("abcd"), output_stride=2,
                                                                   size_divisor=8))
    seen: list[tuple[int, int]] = []
    real = bench.bare_step

    def spy(p, shape):
        seen.append(tuple(shape))
        return real(p, shape)

    monkeypatch.setattr(bench, "bare_step", spy)
    res = run_bench(path, (30, 45), runs=1, warmup=0, threads=1, out_dir=None)
    assert seen == [(32, 48)] and res["network_shape"] == [32, 48] and res["shape"] == [30, 45]
    assert res["configs"]["bare onnxruntime"]["network_shape"] == [32, 48]


def test_old_backends_option_still_means_the_onnx_rows(tmp_path: Path, tiny_onnx) -> None:
    assert main(["bench", str(tiny_onnx[0]), "--shape", "16x24", "--backends", "onnxruntime", "--runs", "1",
                 "--warmup", "0", "--threads", "1", "--out-dir", str(tmp_path), "--name", "old"]) == 0
    saved = json.loads((tmp_path / "old.json").read_text())
    assert list(saved["results_ms"]) == ["segrt (onnxruntime)", "bare onnxruntime"]
    assert "--rows onnxruntime" in saved["command"] and "--backend " not in saved["command"]
    assert main(["bench", str(tiny_onnx[0]), "--shape", "16x24", "--rows", "segrt", "--device", "cpu", "--runs",
                 "1", "--warmup", "0", "--out-dir", str(tmp_path), "--name", "new"]) == 0
    saved = json.loads((tmp_path / "new.json").read_text())
    assert list(saved["results_ms"]) == ["segrt (onnxruntime)", "bare onnxruntime"]
    assert "--device cpu" in saved["command"]
    with pytest.warns(DeprecationWarning, match="rows="):  # the Python API's old keyword still works
        res = run_bench(tiny_onnx[0], (16, 24), backends="onnxruntime", runs=1, warmup=0, threads=1, out_dir=None)
    assert list(res["results_ms"]) == ["segrt (onnxruntime)", "bare onnxruntime"]


def test_row_names_say_backend_and_options() -> None:
    rows = bench.engine_rows
    assert rows({"backend": "onnxruntime", "device": "cpu"}) == ("segrt (onnxruntime)", "bare onnxruntime")
    assert rows({"backend": "onnxruntime", "device": "cpu"}, "m.int8.onnx") == (
        "segrt (onnxruntime, m.int8.onnx)", "bare onnxruntime (m.int8.onnx)")
    assert rows({"backend": "onnxruntime", "device": "cuda"}) == ("segrt (onnxruntime, cuda)",
                                                                  "bare onnxruntime (cuda)")
    assert rows({"backend": "torch", "device": "cuda:0", "precision": "fp16", "cuda_graphs": True}) == (
        "segrt (torch, fp16, cuda graphs)", "bare torch (fp16, cuda graphs)")
    assert rows({"backend": "torch", "device": "cuda:1", "precision": "bf16", "compile": True}) == (
        "segrt (torch, cuda:1, bf16, compiled)", "bare torch (cuda:1, bf16, compiled)")
    assert rows({"backend": "torch", "device": "cpu", "precision": "fp32"}) == ("segrt (torch)", "bare torch")
    assert rows({"backend": "tensorrt", "device": "cuda:0"}) == ("segrt (tensorrt)", "bare tensorrt")
    assert bench.default_name("m.pt2", (1024, 2048), {"backend": "torch", "device": "cuda:0", "precision": "fp16",
                                                      "cuda_graphs": True}) == \
        "engine_bench_m_torch_fp16_cuda-graphs_1024x2048"
    assert bench.default_name("m.onnx", (8, 16), {"backend": "onnxruntime", "device": "cpu"}) == \
        "engine_bench_m_8x16"


def test_ratios_follow_the_row_names() -> None:
    def row(ms: float) -> dict:
        return {s: {"median": ms, "p90": ms, "p99": ms, "mean": ms} for s in ("infer", "end_to_end")}

    names = {"segrt": "segrt (torch, fp16, cuda graphs)", "bare": "bare torch (fp16, cuda graphs)",
             "also": {"m.onnx": ["segrt (onnxruntime, cuda, m.onnx)", "bare onnxruntime (cuda, m.onnx)"]}}
    rows = {"segrt (torch, fp16, cuda graphs)": row(10.0), "bare torch (fp16, cuda graphs)": row(8.0),
            "segrt (onnxruntime, cuda, m.onnx)": row(20.0), "bare onnxruntime (cuda, m.onnx)": row(16.0),
            "torch eager": row(40.0)}
    r = bench.ratios(rows, ["m.onnx"], names)
    assert r["end_to_end / bare network"] == pytest.approx(1.25)
    assert r["torch eager / segrt"] == pytest.approx(4.0)
    assert r["segrt / segrt (m.onnx)"] == pytest.approx(0.5)
    assert r["bare torch (fp16, cuda graphs) / bare onnxruntime (cuda, m.onnx)"] == pytest.approx(0.5)
    assert r["torch eager / segrt (m.onnx)"] == pytest.approx(2.0)
    labels = {"segrt (torch, fp16, cuda graphs)": np.zeros(4), "torch eager": np.zeros(4),
              "segrt (onnxruntime, cuda, m.onnx)": np.array([0, 0, 1, 1])}
    agree = bench.agreement(labels, ["m.onnx"], names)
    assert agree == {"segrt (onnxruntime, cuda, m.onnx) vs segrt (torch, fp16, cuda graphs)": 0.5,
                     "torch eager vs segrt (torch, fp16, cuda graphs)": 1.0,
                     "torch eager vs segrt (onnxruntime, cuda, m.onnx)": 0.5}


def test_onnx_bench_runs_without_torch(tmp_path: Path, tiny_onnx) -> None:
    code = ("import sys; sys.modules['torch'] = None; from engine.cli import main; "
            f"sys.exit(main(['bench', {str(tiny_onnx[0])!r}, '--shape', '16x24', '--runs', '1', '--warmup', '0', "
            f"'--out-dir', {str(tmp_path)!r}, '--name', 'nt']))")
    r = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    saved = json.loads((tmp_path / "nt.json").read_text())
    assert "torch" not in saved["machine"] and list(saved["results_ms"]) == ["segrt (onnxruntime)", "bare onnxruntime"]
