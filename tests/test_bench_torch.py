"""`segrt bench` on torch artifacts (.pt checkpoints, .pt2 programs) on the CPU: engine, bare-network and eager rows,
--compile and --precision, thread counts, network size; GPU options (cuda graphs) through a fake Predictor."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import bench
from engine.backends.base import Backend
from engine.bench import run_bench
from engine.cli import main
from engine.metadata import ModelMeta
from engine.predictor import Predictor
from training.checkpoint import save_atomic
from training.config import Config, DataCfg, ModelCfg
from training.export import export_checkpoint
from training.export_program import save_program
from training.models import build

UNET_KW = {"base_channels": 4}  # U-Net S5-D16: size_divisor 16


def save_unet_checkpoint(path: Path, num_classes: int = 3, meta_classes: int | None = None) -> Path:
    """A tiny U-Net segrt checkpoint (keys as training.train writes them); ``meta_classes`` other than
    ``num_classes`` makes a checkpoint whose head does not fit its metadata."""
    torch.manual_seed(0)
    model = build("unet", num_classes=num_classes, backbone_kwargs=dict(UNET_KW)).eval()
    cfg = Config(model=ModelCfg(name="unet", backbone_kwargs=dict(UNET_KW)), data=DataCfg(input_size=(32, 48)))
    meta = {"classes": [f"c{i}" for i in range(meta_classes or num_classes)], "mean": list(cfg.data.mean),
            "std": list(cfg.data.std), "output_stride": 1, "align_corners": False, "model": "unet"}
    return save_atomic({"state_dict": model.state_dict(), "optimizer": {}, "iter": 0, "scaler": {},
                        "config": cfg.to_dict(), "meta": meta, "best_mIoU": -1.0, "rng": {}, "metrics": {}}, path)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bench_torch")
    ckpt = save_unet_checkpoint(d / "unet.pt")
    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(2)).eval()
    pt2 = save_program(conv, {"classes": list("abcd")}, d / "conv.pt2", sample_size=(16, 16))
    return {"ckpt": ckpt, "pt2": pt2, "onnx": export_checkpoint(ckpt, d / "unet.onnx"), "dir": d}


@pytest.fixture(autouse=True)
def keep_torch_threads() -> Iterator[None]:
    """segrt bench sets torch's process-wide thread count; give the next test the count it had."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_checkpoint_rows_eager_from_model_and_network_size(files, tmp_path: Path, capsys) -> None:
    """A .pt MODEL with --rows segrt,torch: the eager row uses MODEL; at 30x45 every row runs the U-Net at 32x48
    (its size_divisor 16 rounds up; at 30x45 the U-Net itself would fail); without --threads all get every core."""
    assert main(["bench", str(files["ckpt"]), "--shape", "30x45", "--rows", "segrt,torch", "--runs", "2",
                 "--warmup", "1", "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    name = "engine_bench_unet_torch_30x45"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.{x}" for x in ("json", "md", "png")]
    res = json.loads((tmp_path / f"{name}.json").read_text())
    assert list(res["results_ms"]) == ["segrt (torch)", "bare torch", "torch eager"]
    assert set(res["results_ms"]["segrt (torch)"]) == set(bench.STAGES)
    assert (res["backend"], res["device"], res["precision"]) == ("torch", "cpu", "fp32")
    assert res["options"] == {"compile": False, "cuda_graphs": False}
    assert res["network_shape"] == [32, 48]
    assert {r: c["network_shape"] for r, c in res["configs"].items()} == {
        "segrt (torch)": [32, 48], "bare torch": [32, 48], "torch eager": [32, 48]}
    assert res["configs"]["torch eager"]["model"] == str(files["ckpt"])
    assert {c["threads"] for c in res["configs"].values()} == {os.cpu_count()} and res["threads"] == os.cpu_count()
    assert {"end_to_end / bare network", "torch eager / segrt"} <= set(res["ratios"])
    assert res["label_agreement"]["torch eager vs segrt (torch)"] >= 0.95
    assert "| segrt (torch) |" in out and "| bare torch |" in out and "torch eager / segrt" in out


def test_checkpoint_with_onnx_also_and_threads(files) -> None:
    """--also ONNX beside a .pt MODEL: one run, the same thread count for ONNX Runtime, the torch backend and
    eager (--torch given explicitly)."""
    res = run_bench(files["ckpt"], (32, 48), also=[files["onnx"]], torch_ckpt=files["ckpt"], runs=1, warmup=1,
                    threads=1, out_dir=None)
    assert list(res["results_ms"]) == ["segrt (torch)", "bare torch", "segrt (onnxruntime, unet.onnx)",
                                       "bare onnxruntime (unet.onnx)", "torch eager"]
    assert {r: c["threads"] for r, c in res["configs"].items()} == dict.fromkeys(res["configs"], 1)
    assert res["configs"]["segrt (onnxruntime, unet.onnx)"]["backend"] == "onnxruntime"
    assert {"segrt / segrt (unet.onnx)", "bare torch / bare onnxruntime (unet.onnx)",
            "torch eager / segrt (unet.onnx)"} <= set(res["ratios"])
    assert res["label_agreement"]["segrt (onnxruntime, unet.onnx) vs segrt (torch)"] >= 0.99


@pytest.mark.parametrize("compile_", [False, True])
def test_program_with_and_without_compile(files, tmp_path: Path, compile_: bool) -> None:
    res = run_bench(files["pt2"], (16, 24), compile=compile_, runs=2, warmup=1, threads=1, out_dir=tmp_path)
    tag = " (compiled)" if compile_ else ""
    engine_row = "segrt (torch, compiled)" if compile_ else "segrt (torch)"
    assert list(res["results_ms"]) == [engine_row, f"bare torch{tag}"]
    assert res["options"] == {"compile": compile_, "cuda_graphs": False} and res["backend"] == "torch"
    assert res["configs"][engine_row]["compile"] is compile_
    assert res["ratios"]["end_to_end / bare network"] > 0
    stem = "engine_bench_conv_torch_compiled_16x24" if compile_ else "engine_bench_conv_torch_16x24"
    assert sorted(Path(f).name for f in res["files"]) == [f"{stem}.{x}" for x in ("json", "md", "png")]
    assert f"| {engine_row} |" in (tmp_path / f"{stem}.md").read_text()


def test_bf16_on_cpu_is_named_and_recorded(files) -> None:
    res = run_bench(files["pt2"], (16, 24), precision="bf16", runs=1, warmup=0, threads=1, out_dir=None)
    assert list(res["results_ms"]) == ["segrt (torch, bf16)", "bare torch (bf16)"]
    assert res["precision"] == "bf16" and res["configs"]["segrt (torch, bf16)"]["precision"] == "bf16"


def test_torch_option_errors(files, tmp_path: Path, capsys) -> None:
    with pytest.raises(ValueError, match="cuda_graphs=True needs a CUDA device"):
        run_bench(files["pt2"], (16, 24), device="cpu", cuda_graphs=True, out_dir=None)
    with pytest.raises(ValueError, match="fp16' needs a CUDA device"):
        run_bench(files["pt2"], (16, 24), device="cpu", precision="fp16", out_dir=None)
    with pytest.raises(ValueError, match=r"conv.pt2 is not a \.pt/\.pth training checkpoint"):
        run_bench(files["pt2"], (16, 24), rows="segrt,torch", out_dir=None)  # eager needs a checkpoint
    with pytest.raises(ValueError, match="opens with the torch backend"):
        run_bench(files["pt2"], (16, 24), rows="onnxruntime", out_dir=None)
    with pytest.raises(ValueError, match="--warmup >= 1"):  # the first call compiles: it must not be measured
        run_bench(files["pt2"], (16, 24), compile=True, warmup=0, out_dir=None)
    assert main(["bench", str(files["pt2"]), "--shape", "16x24", "--cuda-graphs", "--device", "cpu",
                 "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("segrt bench: error: cuda_graphs=True needs a CUDA device") and err.count("\n") == 1


def test_eager_only_rows(files) -> None:
    """--rows torch on a checkpoint: just the eager row, at the checkpoint model's size_divisor."""
    res = run_bench(files["ckpt"], (30, 45), rows="torch", runs=1, warmup=0, threads=1, out_dir=None)
    assert list(res["results_ms"]) == ["torch eager"] and res["ratios"] == {}
    assert res["network_shape"] == [32, 48] and res["device"] == "cpu" and res["backend"] == "torch"


class FakeCudaTorch(Backend):
    """Stands in for the torch backend on a GPU: reports CUDA options, returns zero logits."""

    name = "torch"

    def __init__(self, precision: str | None, compile: bool, cuda_graphs: bool) -> None:
        self.meta = ModelMeta(classes=list("ab"), output_stride=4)
        self.device, self.precision, self.compiled, self.cuda_graphs = "cuda:0", precision, compile, cuda_graphs
        self.shapes: list[tuple[int, ...]] = []

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.shapes.append(tuple(x.shape))
        return np.zeros((x.shape[0], 2, x.shape[2] // 4, x.shape[3] // 4), np.float32)


def test_cuda_graphs_options_reach_the_predictor(tmp_path: Path, monkeypatch, capsys) -> None:
    """The issue's command, `segrt bench model.pt2 --device cuda --precision fp16 --cuda-graphs`, with the
    Predictor faked: the options arrive as segrt predict passes them and name the rows."""
    calls: list[tuple[str, dict]] = []

    def fake(path, input_size=None, **kw):
        calls.append((str(path), kw))
        be = FakeCudaTorch(kw.get("precision"), kw.get("compile", False), kw.get("cuda_graphs", False))
        return Predictor(be, input_size=input_size)

    monkeypatch.setattr(bench, "Predictor", fake)
    model = tmp_path / "model.pt2"
    model.write_bytes(b"not opened: the Predictor is faked")
    assert main(["bench", str(model), "--shape", "64x128", "--device", "cuda", "--precision", "fp16",
                 "--cuda-graphs", "--runs", "2", "--out-dir", str(tmp_path)]) == 0
    assert calls == [(str(model), {"backend": "auto", "device": "cuda", "threads": os.cpu_count(),
                                   "precision": "fp16", "cuda_graphs": True})]  # no compile: not asked for
    res = json.loads((tmp_path / "engine_bench_model_torch_fp16_cuda-graphs_64x128.json").read_text())
    assert list(res["results_ms"]) == ["segrt (torch, fp16, cuda graphs)", "bare torch (fp16, cuda graphs)"]
    assert set(res["results_ms"]["segrt (torch, fp16, cuda graphs)"]) == set(bench.STAGES)
    assert all(set(s) == {"median", "p90", "p99", "mean"} for s in res["results_ms"]["bare torch (fp16, cuda graphs)"]
               .values())
    assert (res["backend"], res["device"], res["precision"]) == ("torch", "cuda:0", "fp16")
    assert res["options"] == {"compile": False, "cuda_graphs": True}
    assert "--device cuda --precision fp16 --cuda-graphs" in res["command"]
    assert "end_to_end / bare network" in res["ratios"]
    assert "| segrt (torch, fp16, cuda graphs) |" in capsys.readouterr().out
    assert main(["bench", str(model), "--shape", "64x128", "--cuda-graphs", "--warmup", "0",
                 "--out-dir", str(tmp_path)]) == 2  # the capture would be measured
    assert "--warmup >= 1" in capsys.readouterr().err
