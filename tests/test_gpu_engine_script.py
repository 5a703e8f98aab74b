"""benchmarks/gpu_engine.py: without a GPU it says why, exits 0 and writes nothing; the model files it prepares open
in the engine's torch backend, and the segrt bench command it runs parses with the options it means."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_engine.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_engine", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the script would run")
def test_without_a_gpu_it_exits_0_and_writes_nothing(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, str(SCRIPT), "--work", str(tmp_path / "w"), "--out-dir",
                          str(tmp_path / "r")], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0 and "no CUDA GPU" in res.stdout
    assert not (tmp_path / "w").exists() and not (tmp_path / "r").exists()


def test_prepared_files_run_in_the_engine_and_the_command_parses(tmp_path: Path) -> None:
    import engine
    from engine.cli import build_parser

    mod = _load()
    ckpt, program = mod.prepare(tmp_path, "tiny", "pspnet", "resnet18", (64, 96),
                                backbone_kwargs={"base_channels": 8, "stem_channels": 8})
    img = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    a, b = engine.Predictor(ckpt).run(img), engine.Predictor(program).run(img)
    assert a.shape == (64, 96) and (a == b).mean() > 0.99
    args = build_parser().parse_args(["bench", *mod.bench_args(ckpt, program, (64, 96), 7, 2, "res", "stem")])
    assert (args.model, args.shape, args.device, args.precision, args.cuda_graphs) == (
        str(program), "64x96", "cuda", "fp16", True)
    assert (args.torch, args.runs, args.warmup, args.name) == (str(ckpt), 7, 2, "stem")
    rows = {"segrt (torch, fp16, cuda graphs)": {"end_to_end": {"median": 2.0}},
            "bare torch (fp16, cuda graphs)": {"end_to_end": {"median": 1.0}}}
    assert mod.summary({"results_ms": rows}) == [
        "segrt (torch, fp16, cuda graphs): 2.000 ms median, end to end = 500 FPS (targets: <= 3.0 ms, >= 500 FPS)",
        "bare torch (fp16, cuda graphs): 1.000 ms median, the network alone = 1000 FPS (targets: <= 3.0 ms, "
        ">= 500 FPS)"]
