"""Every user-facing failure of `segrt` is one line `segrt <command>: error: <message>` on stderr with exit status 2
(Ctrl-C: 130); SEGRT_DEBUG=1 re-raises. `segrt video` keeps the stats measured up to a stage failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import engine
from engine import cli
from engine.backends.base import Backend
from engine.cli import main
from engine.metadata import ModelMeta
from engine.video import VideoWriter

ROOT = Path(__file__).resolve().parents[1]


def one_error(capsys: pytest.CaptureFixture, command: str) -> str:
    """The single stderr line of a failed command, without its prefix (asserts there is exactly one)."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    prefix = f"segrt {command}: error: "
    assert lines[0].startswith(prefix), err
    return lines[0][len(prefix):]


def predict(model: Path, tmp_path: Path, *extra: str) -> int:
    return main(["predict", str(tmp_path / "none.png"), "-o", str(tmp_path / "out"), "-m", str(model), "-q", *extra])


def bench(model: Path, tmp_path: Path, *extra: str) -> int:
    return main(["bench", str(model), "--shape", "16x24", "--runs", "1", "--warmup", "0", "--out-dir",
                 str(tmp_path / "res"), *extra])


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="onnxruntime has CUDA here")
@pytest.mark.parametrize("run", [predict, bench])
def test_cuda_device_without_the_cuda_provider(run, tiny_onnx, tmp_path: Path, capsys) -> None:
    assert run(tiny_onnx[0], tmp_path, "--device", "cuda") == 2  # a RuntimeError of the ONNX Runtime backend
    assert "onnxruntime has no CUDAExecutionProvider" in one_error(capsys, run.__name__)


@pytest.mark.parametrize("suffix, says", [(".onnx", "not a loadable ONNX model"),
                                          (".pt", "not a readable checkpoint"),
                                          (".pt2", "not a torch.export program archive"),
                                          (".plan", "TensorRT plan")])
@pytest.mark.parametrize("run", [predict, bench])
def test_corrupt_model_file(run, suffix: str, says: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    assert run(path, tmp_path) == 2
    msg = one_error(capsys, run.__name__)
    assert says in msg and f"junk{suffix}" in msg


@pytest.mark.parametrize("run", [predict, bench])
def test_missing_model_file(run, tmp_path: Path, capsys) -> None:
    assert run(tmp_path / "gone.onnx", tmp_path) == 2
    msg = one_error(capsys, run.__name__)
    assert "not found" in msg and "gone.onnx" in msg


@pytest.mark.parametrize("option", [["--compile"], ["--cuda-graphs"], ["--precision", "bf16"]])
def test_torch_only_option_on_an_onnx_model(option: list[str], tiny_onnx, tmp_path: Path, capsys) -> None:
    assert bench(tiny_onnx[0], tmp_path, *option) == 2
    assert "apply to the torch backend only, not onnxruntime" in one_error(capsys, "bench")
    assert predict(tiny_onnx[0], tmp_path, *option) == 2
    assert "apply to the torch backend only" in one_error(capsys, "predict")


def test_checkpoint_whose_head_does_not_fit(tmp_path: Path, capsys) -> None:
    """torch's own RuntimeError (state-dict size mismatch, many lines) becomes one line."""
    from tests.test_bench_torch import save_unet_checkpoint

    ckpt = save_unet_checkpoint(tmp_path / "bad_head.pt", num_classes=3, meta_classes=5)
    assert predict(ckpt, tmp_path, "--device", "cpu") == 2
    msg = one_error(capsys, "predict")
    assert "size mismatch" in msg and "decode_head" in msg


def test_os_error_is_one_line(tiny_onnx, tmp_path: Path, capsys) -> None:
    (tmp_path / "res").write_text("a file where the output folder should go")
    assert bench(tiny_onnx[0], tmp_path, "--threads", "1") == 2  # mkdir of the report folder: FileExistsError
    assert "res" in one_error(capsys, "bench")


def test_runtime_import_and_unexpected_errors(monkeypatch, tiny_onnx, tmp_path: Path, capsys) -> None:
    def boom(*_a, **_k):
        raise RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported")

    monkeypatch.setattr(engine, "Predictor", boom)
    assert predict(tiny_onnx[0], tmp_path) == 2
    assert one_error(capsys, "predict") == ("CUDA error: out of memory; CUDA kernel errors might be asynchronously "
                                            "reported")

    def missing(*_a, **_k):
        raise ImportError("the torch backend needs PyTorch, which is not installed")

    monkeypatch.setattr(engine, "Predictor", missing)
    assert predict(tiny_onnx[0], tmp_path) == 2
    assert one_error(capsys, "predict") == "the torch backend needs PyTorch, which is not installed"

    def bug(*_a, **_k):
        raise TypeError("x" * 5000)

    monkeypatch.setattr(engine, "Predictor", bug)
    assert predict(tiny_onnx[0], tmp_path) == 2
    msg = one_error(capsys, "predict")
    assert msg.startswith("TypeError: xxx") and "SEGRT_DEBUG=1" in msg and len(msg) < 1000


def test_debug_reraises_and_ctrl_c(monkeypatch, tiny_onnx, tmp_path: Path, capsys) -> None:
    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "Predictor", interrupted)
    assert predict(tiny_onnx[0], tmp_path) == 130
    assert capsys.readouterr().err.strip() == "segrt predict: interrupted"
    monkeypatch.setenv("SEGRT_DEBUG", "1")
    with pytest.raises(KeyboardInterrupt):
        predict(tiny_onnx[0], tmp_path)
    monkeypatch.undo()
    monkeypatch.setenv("SEGRT_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="gone.onnx"):
        predict(tmp_path / "gone.onnx", tmp_path)
    monkeypatch.setenv("SEGRT_DEBUG", "0")  # 0 means off
    assert predict(tmp_path / "gone.onnx", tmp_path) == 2


def test_no_torch_for_a_torch_artifact(tmp_path: Path) -> None:
    """A .pt2 file on a machine without torch: ImportError naming the extra, one line, exit 2."""
    import torch

    from training.export_program import save_program

    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1)).eval()
    pt2 = save_program(conv, {"classes": ["a", "b"]}, tmp_path / "conv.pt2", sample_size=(8, 8))
    code = ("import sys; sys.modules['torch'] = None; from engine.cli import main; "
            f"sys.exit(main(['predict', {str(tmp_path / 'x.png')!r}, '-o', {str(tmp_path / 'o')!r}, "
            f"'-m', {str(pt2)!r}, '-q']))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "SEGRT_DEBUG": ""})
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segrt predict: error: the torch backend needs PyTorch")
    assert "pip install 'segrt[train]'" in lines[0]


# ---- segrt video: the stats of a failed run ------------------------------------------------------------------

class FailingBackend(Backend):
    """Two classes of zero logits; raises on its ``fail_at``-th call."""

    name = "numpy"

    def __init__(self, fail_at: int) -> None:
        self.meta = ModelMeta(classes=["a", "b"])
        self.fail_at, self.calls = fail_at, 0

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls >= self.fail_at:
            raise RuntimeError("backend exploded")
        return np.zeros((x.shape[0], 2, x.shape[2] // 2, x.shape[3] // 2), np.float32)


def test_video_stage_failure_keeps_the_stats(monkeypatch, tmp_path: Path, capsys) -> None:
    src = tmp_path / "clip.mp4"
    with VideoWriter(src, 10, 64, 48) as vw:
        for i in range(12):
            vw.write(np.full((48, 64, 3), 20 * i, np.uint8))
    monkeypatch.setattr(cli, "_predictor", lambda a: engine.Predictor(FailingBackend(fail_at=5)))
    out = tmp_path / "out.mp4"
    assert main(["video", str(src), "-m", "unused.onnx", "-o", str(out), "-q"]) == 2
    assert one_error(capsys, "video") == "backend exploded"
    stats = json.loads(out.with_suffix(".stats.json").read_text())
    assert stats["error"] == "RuntimeError: backend exploded"
    assert 0 < stats["frames"] < 12 and stats["source"].endswith("clip.mp4")
    assert stats["stages_ms"]["infer"]["median"] >= 0 and "end_to_end" in stats["stages_ms"]
    # an explicit --stats path, and a stats file that cannot be written: a warning, the stage error still reported
    monkeypatch.setattr(cli, "_predictor", lambda a: engine.Predictor(FailingBackend(fail_at=3)))
    assert main(["video", str(src), "-m", "unused.onnx", "--stats", str(tmp_path / "s.json"), "-q"]) == 2
    assert json.loads((tmp_path / "s.json").read_text())["error"] == "RuntimeError: backend exploded"
    assert "stats up to the failure" in capsys.readouterr().out
    (tmp_path / "dir.json").mkdir()
    assert main(["video", str(src), "-m", "unused.onnx", "--stats", str(tmp_path / "dir.json"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "warning: the stats could not be written" in err and "error: backend exploded" in err


def test_video_rejects_a_bad_output_before_loading_the_model(tmp_path: Path, capsys) -> None:
    """A bad -o or --max-frames fails at once, before the model (here: a file that does not exist) is opened."""
    for extra, message in ((["-o", str(tmp_path / "out.xyz")], "unsupported video container"),
                           (["--max-frames", "0"], "max_frames")):
        code = main(["video", str(tmp_path / "clip.mp4"), "-m", str(tmp_path / "absent.onnx"), "-q", *extra])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "absent.onnx" not in err
