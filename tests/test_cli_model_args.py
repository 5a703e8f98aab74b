"""`segrt predict` / `segrt video` model options (--backend, --precision, --compile, --cuda-graphs) reach
engine.Predictor as its keyword arguments; torch-only options on other model files are a one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest

import engine
from engine.cli import _predictor, build_parser, main


class FakePredictor:
    """Records how the CLI constructed it."""

    calls: list[tuple[str, dict]] = []

    def __init__(self, model: str, **kw: object) -> None:
        FakePredictor.calls.append((model, kw))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakePredictor]:
    FakePredictor.calls = []
    monkeypatch.setattr(engine, "Predictor", FakePredictor)
    return FakePredictor


def _kw(argv: list[str]) -> dict:
    _predictor(build_parser().parse_args(argv))
    return FakePredictor.calls[-1][1]


@pytest.mark.parametrize("head", [["predict", "img.png", "-o", "out"], ["video", "clip.mp4"]])
def test_defaults_pass_no_torch_options(fake, head: list[str]) -> None:
    kw = _kw([*head, "-m", "m.onnx"])
    assert fake.calls[-1][0] == "m.onnx"
    assert kw["backend"] == "auto" and kw["device"] == "auto"
    assert not {"precision", "compile", "cuda_graphs"} & set(kw)


@pytest.mark.parametrize("head", [["predict", "img.png", "-o", "out"], ["video", "clip.mp4"]])
def test_torch_options_are_passed(fake, head: list[str]) -> None:
    kw = _kw([*head, "-m", "m.pt2", "--backend", "torch", "--precision", "fp16", "--compile", "--cuda-graphs",
              "--device", "cuda:1"])
    assert kw["backend"] == "torch" and kw["device"] == "cuda:1"
    assert (kw["precision"], kw["compile"], kw["cuda_graphs"]) == ("fp16", True, True)
    assert _kw([*head, "-m", "m.pt", "--precision", "bf16"])["precision"] == "bf16"
    assert "precision" not in _kw([*head, "-m", "m.pt", "--precision", "fp32"])


def test_bad_choices_are_rejected(capsys) -> None:
    for argv in (["--precision", "int4"], ["--backend", "tflite"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["predict", "x.png", "-o", "out", "-m", "m.onnx", *argv])
    assert "invalid choice" in capsys.readouterr().err


def test_help_says_which_model_files(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["video", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--cuda-graphs" in text and "torch models (.pt/.pth/.pt2)" in text and ".plan" in text


def test_torch_option_on_an_onnx_model_is_a_one_line_error(tiny_onnx, tmp_path: Path, capsys) -> None:
    code = main(["predict", str(tmp_path / "nothing.png"), "-o", str(tmp_path / "out"), "-m", str(tiny_onnx[0]),
                 "--compile", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "apply to the torch backend only" in err and len(err.strip().splitlines()) == 1


def test_video_blocks_ort_threads_unless_asked(fake) -> None:
    assert _kw(["video", "clip.mp4", "-m", "m.onnx"])["spin"] is False
    assert _kw(["video", "clip.mp4", "-m", "m.onnx", "--spin"])["spin"] is True
    assert "spin" not in _kw(["predict", "img.png", "-o", "out", "-m", "m.onnx"])
