"""benchmarks/gpu_kernels.py: without a GPU it says why, exits 0 and writes nothing; its pure helpers; its references.

The CUDA kernels themselves are checked by the script on a GPU machine. Here its correctness checks run on the CPU
with the CPU kernels of engine._C standing in for the CUDA launchers (the same math), which tests the references,
comparisons and tolerances of the script, and that a wrong kernel is reported as FAIL.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_kernels.py"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gk() -> ModuleType:
    return _load("gpu_kernels")


@pytest.fixture(scope="module")
def gc() -> ModuleType:
    return _load("gpu_common")


def _python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def test_no_gpu_exits_zero_with_reason_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "results" / "gpu_kernels"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}  # no GPU, even on a GPU machine
    proc = subprocess.run([_python(), str(SCRIPT), "--out", str(out), "--quick"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "skipped, nothing written" in lines[0]
    assert "torch.cuda.is_available() is False" in lines[0]
    assert list(tmp_path.rglob("*")) == []


def test_main_in_process_without_gpu(gk: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the subprocess test covers the no-GPU path")
    assert "is_available() is False" in gk.unavailable_reason()
    assert gk.main(["--out", str(tmp_path / "r"), "--quick"]) == 0
    assert "skipped, nothing written" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_bandwidth_arithmetic(gc: ModuleType) -> None:
    assert gc.bandwidth_gbs(2e9, 1000.0) == pytest.approx(2.0)
    assert gc.copy_bandwidth_gbs(1 << 30, 1.0) == pytest.approx(2 * (1 << 30) / 1e-3 / 1e9)
    assert gc.percent_of(2100.0, 3000.0) == pytest.approx(70.0)
    assert gc.speedup(9.0, 3.0) == pytest.approx(3.0)
    assert gc.tensor_bytes((8, 19, 128, 256), 4) == 8 * 19 * 128 * 256 * 4
    assert gc.median([5.0, 1.0, 3.0, 100.0]) == pytest.approx(4.0)
    for bad in (lambda: gc.bandwidth_gbs(1.0, 0.0), lambda: gc.percent_of(1.0, 0.0), lambda: gc.speedup(1.0, -1.0),
                lambda: gc.median([])):
        with pytest.raises(ValueError):
            bad()


def test_table_and_paths(gc: ModuleType, tmp_path: Path) -> None:
    assert gc.fmt(None) == "-" and gc.fmt(True) == "yes" and gc.fmt(0.123456) == "0.1235" and gc.fmt("a|b") == "a\\|b"
    table = gc.markdown_table(["a", "b"], [[1, 2.5], [None, False]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | 2.5 |", "| - | no |"]
    with pytest.raises(ValueError, match="2 cells"):
        gc.markdown_table(["a"], [[1, 2]])
    assert gc.out_paths("x/r.json") == (Path("x/r.json"), Path("x/r.md"))
    assert gc.out_paths("x/gpu_kernels") == (Path("x/gpu_kernels.json"), Path("x/gpu_kernels.md"))
    target = tmp_path / "d" / "f.txt"
    gc.atomic_write_text(target, "one")
    gc.atomic_write_text(target, "two")
    assert target.read_text() == "two" and [p.name for p in target.parent.iterdir()] == ["f.txt"]


def test_write_report(gc: ModuleType, tmp_path: Path) -> None:
    report: dict[str, Any] = {
        "command": "python benchmarks/gpu_kernels.py --quick", "date": "2026-01-01T00:00:00+00:00", "quick": True,
        "environment": {"device": "NVIDIA H100", "capability": "9.0", "sms": 132, "memory_gib": 79.1, "torch": "2.11",
                        "cuda": "12.8", "python": "3.12.3", "tf32_matmul": False, "tf32_cudnn": True, "git": "abc"},
        "device_bandwidth_gbs": 3000.0,
        "timing_setup": {"warmup": 3, "iters": 10, "cca_warmup": 1, "cca_iters": 5, "copy_mib": 256.0,
                         "flush_mib": 256.0},
        "all_pass": True,
        "correctness": [{"kernel": "overlay", "case": "5x7", "dtype": "uint8", "align_corners": None, "max_err": 0.0,
                         "tol": 1.0, "passed": True, "note": "abs"}],
        "timings": [{"kernel": "resize_argmax", "case": "1x19x128x256->1024x2048 float32", "ours_ms": 0.05,
                     "reference": "F.interpolate+argmax", "ref_ms": 0.5, "speedup": 10.0, "ours_gbs": 2100.0,
                     "pct_of_measured": 70.0, "target": ">= 70% of measured BW", "target_met": True,
                     "ours_peak_mib": 2.0, "ref_peak_mib": 160.0}],
        "notes": ["torch.compile skipped"],
    }
    json_path, md_path = gc.write_report(report, tmp_path / "gpu_kernels")
    assert json.loads(json_path.read_text()) == report
    md = md_path.read_text()
    assert "python benchmarks/gpu_kernels.py --quick" in md and "3000 GB/s" in md and "1/1 pass" in md
    row = "| resize_argmax | 1x19x128x256->1024x2048 float32 | 0.05 | F.interpolate+argmax | 0.5 | 10 | 2100 | 70 |"
    assert row in md
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_kernels.json", "gpu_kernels.md"]


class CpuLaunchers:
    """The script's Launchers interface over the CPU kernels of engine._C (float16 runs as float32)."""

    def __init__(self, break_resize: bool = False) -> None:
        from engine import _C

        self.c, self.broken = _C, break_resize

    @staticmethod
    def _f32(t: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.detach().float().numpy())

    def resize_bilinear(self, x: torch.Tensor, oh: int, ow: int, ac: bool) -> torch.Tensor:
        out = torch.from_numpy(self.c.resize_bilinear(self._f32(x), oh, ow, ac)).to(x.dtype)
        return out + 1 if self.broken else out

    def resize_argmax(self, x: torch.Tensor, oh: int, ow: int, ac: bool,
                      scores: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        labels, sc = self.c.resize_argmax(self._f32(x), oh, ow, ac, True)
        return torch.from_numpy(labels), torch.from_numpy(sc)

    def preprocess(self, img: torch.Tensor, oh: int, ow: int, mean: Any, std: Any, bgr: bool, ac: bool,
                   dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(self.c.preprocess(img.numpy(), oh, ow, list(mean), list(std), bgr, ac, None)).to(dtype)

    def overlay(self, frame: torch.Tensor, labels: torch.Tensor, palette: torch.Tensor, alpha: float) -> torch.Tensor:
        return torch.from_numpy(self.c.overlay(frame.numpy(), labels.numpy(), palette.numpy(), alpha, None))

    def cca_forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, lse = self.c.criss_cross_attention_forward(*(self._f32(t) for t in (q, k, v)))
        return torch.from_numpy(out).to(v.dtype), torch.from_numpy(lse)

    def cca_backward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, g: torch.Tensor,
                     lse: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        grads = self.c.criss_cross_attention_backward(*(self._f32(t) for t in (q, k, v, out, g)),
                                                      None if lse is None else lse.numpy())
        return tuple(torch.from_numpy(x).to(q.dtype) for x in grads)


def test_checks_pass_on_cpu_kernels_and_catch_a_wrong_one(gk: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gk, "DEVICE", "cpu")
    torch.manual_seed(0)
    checks: list[dict[str, Any]] = []
    for check in (gk.check_resize, gk.check_preprocess, gk.check_overlay, gk.check_cca):
        check(CpuLaunchers(), checks, True)
    kernels = {c["kernel"] for c in checks}
    assert {"resize_bilinear", "resize_argmax.labels", "resize_argmax.scores", "preprocess", "overlay", "cca.forward",
            "cca.lse", "cca.backward (op)", "cca.backward (lse)"} <= kernels
    assert [c for c in checks if not c["passed"]] == []
    broken: list[dict[str, Any]] = []
    gk.check_resize(CpuLaunchers(break_resize=True), broken, True)
    wrong = [c for c in broken if c["kernel"] == "resize_bilinear"]
    assert wrong and not any(c["passed"] for c in wrong)


def test_overlay_reference_matches_engine(gk: ModuleType) -> None:
    from engine import ops

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    labels = rng.integers(0, 256, (6, 9), dtype=np.uint8)
    ref = gk.overlay_reference(*(torch.from_numpy(a) for a in (frame, labels, palette)), 0.4)
    assert np.abs(ref.numpy().astype(int) - ops.overlay(frame, labels, palette, 0.4).astype(int)).max() <= 1
