"""`segrt predict` and the palettes: outputs, palette choice, failures reported, exit codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import engine
from engine.cli import main
from engine.metadata import ModelMeta
from engine.palettes import ADE20K, CAMVID, CITYSCAPES, get_palette, resolve_palette, voc_palette
from engine.predict import collect_inputs, load_image
from tests.conftest import make_tiny_onnx


@pytest.fixture
def images(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(d / "a.jpg")
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(d / "sub" / "b.png")
    Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(d / "sub" / "grey.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)).save(d / "rgba.png")
    (d / "notes.txt").write_text("not an image")
    return d


def test_palettes() -> None:
    assert len(voc_palette(21)) == 21 and voc_palette(21)[1] == (128, 0, 0) and voc_palette(21)[15] == (192, 128, 128)
    assert len(CITYSCAPES) == 19 and len(ADE20K) == 150 and len(CAMVID) == 12
    assert len(set(ADE20K)) >= 148 and ADE20K[0] == (120, 120, 120)
    assert get_palette("ADE-20k") is ADE20K
    with pytest.raises(ValueError, match="unknown palette"):
        get_palette("nope")
    assert np.array_equal(resolve_palette(19), np.array(CITYSCAPES, np.uint8))  # by class count
    assert np.array_equal(resolve_palette(11), np.array(CAMVID[:11], np.uint8))
    own = [[1, 2, 3], [4, 5, 6]]
    assert resolve_palette(2, own).tolist() == own  # the model's own wins
    assert resolve_palette(2, own, "voc").tolist() == [[0, 0, 0], [128, 0, 0]]  # the override wins over both
    assert resolve_palette(5).shape == (5, 3)


def test_predict_writes_outputs(tmp_path: Path, images: Path) -> None:
    meta = ModelMeta(classes=["a", "b", "c"], palette=[[10, 20, 30], [40, 50, 60], [70, 80, 90]], output_stride=2)
    model, _ = make_tiny_onnx(tmp_path / "m.onnx", num_classes=3, meta=meta)
    out = tmp_path / "out"
    rc = main(["predict", str(images), "-m", str(model), "-o", str(out), "--overlay", "--scores", "--batch", "2",
               "-q"])
    assert rc == 0
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    rels = ("a", "rgba", "sub/b", "sub/grey")  # the input folder's layout, mirrored
    assert names == sorted([f"{r}.png" for r in rels] + [f"overlays/{r}.jpg" for r in rels]
                           + [f"scores/{r}.npy" for r in rels])
    lab = Image.open(out / "a.png")
    assert lab.mode == "P" and lab.size == (40, 30)
    assert lab.getpalette()[:9] == [10, 20, 30, 40, 50, 60, 70, 80, 90]
    p = engine.Predictor(model)
    assert np.array_equal(np.asarray(lab), p.run(load_image(images / "a.jpg")))
    assert np.array_equal(np.asarray(Image.open(out / "sub" / "b.png")), p.run(load_image(images / "sub" / "b.png")))
    scores = np.load(out / "scores" / "a.npy")
    assert scores.dtype == np.float16 and scores.shape == (30, 40)
    assert Image.open(out / "overlays" / "a.jpg").size == (40, 30)
    rc = main(["predict", str(images / "a.jpg"), "-m", str(model), "-o", str(out), "--palette", "cityscapes", "-q"])
    assert rc == 0 and Image.open(out / "a.png").getpalette()[:3] == [128, 64, 128]


def test_predict_reports_bad_inputs(tmp_path: Path, images: Path, tiny_onnx, capsys) -> None:
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "out"
    rc = main(["predict", str(images / "*.jpg"), str(tmp_path / "missing.png"), "-m", str(tiny_onnx[0]),
               "-o", str(out), "-q", "--mode", "slide", "--crop", "16x16", "--scales", "1,0.5", "--flip"])
    err = capsys.readouterr().err
    assert rc == 1 and "broken.jpg" in err and "missing.png" in err
    assert (out / "a.png").exists() and not (out / "broken.png").exists()
    assert main(["predict", str(tmp_path / "nothing*.png"), "-m", str(tiny_onnx[0]), "-o", str(out), "-q"]) == 1
    assert main(["predict", str(images), "-m", str(tmp_path / "nope.onnx"), "-o", str(out)]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert main(["predict", str(images), "-m", str(tiny_onnx[0]), "-o", str(out), "--palette", "x"]) == 2
    assert main(["predict", str(images), "-m", str(tiny_onnx[0]), "-o", str(out), "--scales", "a,b"]) == 2


def test_collect_and_load(tmp_path: Path, images: Path) -> None:
    files, missing = collect_inputs([images, images / "a.jpg", str(images / "**" / "*.png"), tmp_path / "x"])
    assert [f.name for f in files] == ["a.jpg", "rgba.png", "b.png", "grey.png"]
    assert missing == [(str(tmp_path / "x"), "no such file or folder")]
    grey = load_image(images / "sub" / "grey.png")
    assert grey.shape == (20, 24, 3) and grey.dtype == np.uint8
    with pytest.raises(ValueError, match="notes.txt"):
        load_image(images / "notes.txt")
    with pytest.raises(FileNotFoundError, match="gone.png"):
        load_image(images / "gone.png")
