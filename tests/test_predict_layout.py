"""`segrt predict` output layout: outputs mirror the inputs' folders, overlays and scores live in their own folders,
and clashing outputs (or outputs over inputs) are errors before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import engine
from engine.predict import load_image, plan_outputs, predict_files


def _img(path: Path, seed: int, size: tuple[int, int] = (20, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def _rel(plans, out: Path) -> dict[str, str]:
    return {pl.source.relative_to(out.parent).as_posix(): pl.labels.relative_to(out).as_posix() for pl in plans}


def test_same_names_in_subfolders_are_mirrored(tmp_path: Path, tiny_onnx) -> None:
    src = tmp_path / "in"
    _img(src / "a" / "x.png", 1)
    _img(src / "b" / "x.png", 2, (22, 26))
    out = tmp_path / "out"
    report = predict_files(engine.Predictor(tiny_onnx[0]), [src], out, overlay=True, scores=True, progress=False)
    assert report.ok and sorted(p.relative_to(out).as_posix() for p in report.written) == ["a/x.png", "b/x.png"]
    p = engine.Predictor(tiny_onnx[0])
    for sub in ("a", "b"):  # each output holds the labels of its own input, whatever the walk order
        assert np.array_equal(np.asarray(Image.open(out / sub / "x.png")), p.run(load_image(src / sub / "x.png")))
        assert (out / "overlays" / sub / "x.jpg").is_file() and (out / "scores" / sub / "x.npy").is_file()


def test_glob_base_single_files_and_duplicates(tmp_path: Path) -> None:
    src = tmp_path / "in"
    for i, rel in enumerate(("top.png", "sub/b.png", "sub/deep/c.png")):
        _img(src / rel, i)
    out = tmp_path / "out"
    plans, missing = plan_outputs([str(src / "**" / "*.png")], out)
    assert _rel(plans, out) == {"in/top.png": "top.png", "in/sub/b.png": "sub/b.png",
                                "in/sub/deep/c.png": "sub/deep/c.png"} and not missing
    plans, _ = plan_outputs([str(src / "sub" / "*" / "*.png")], out)  # relative to the glob's non-magic base
    assert _rel(plans, out) == {"in/sub/deep/c.png": "deep/c.png"}
    plans, _ = plan_outputs([src / "sub" / "deep" / "c.png"], out)  # a file named itself: OUT/<name>
    assert _rel(plans, out) == {"in/sub/deep/c.png": "c.png"}
    # a file reached twice goes once, to its deepest relative path, whichever input comes first
    for specs in ([src, src / "sub" / "b.png"], [src / "sub" / "b.png", src]):
        plans, _ = plan_outputs(specs, out)
        assert _rel(plans, out)["in/sub/b.png"] == "sub/b.png" and len(plans) == 3


def test_suffix_twins_keep_their_suffix_and_overlays_cannot_clash(tmp_path: Path, tiny_onnx) -> None:
    src = tmp_path / "in"
    _img(src / "a.jpg", 1)
    _img(src / "a.png", 2)
    _img(src / "a_overlay.png", 3)  # the old NAME_overlay.png scheme wrote a's overlay over this one's labels
    _img(src / "a_scores.png", 4)
    out = tmp_path / "out"
    plans, _ = plan_outputs([src], out, overlay_ext="png", scores=True)
    assert _rel(plans, out) == {"in/a.jpg": "a.jpg.png", "in/a.png": "a.png.png", "in/a_overlay.png": "a_overlay.png",
                                "in/a_scores.png": "a_scores.png"}
    predict_files(engine.Predictor(tiny_onnx[0]), [src], out, overlay=True, overlay_format="png", scores=True,
                  progress=False)
    labels = sorted(p.name for p in out.glob("*.png"))
    assert labels == ["a.jpg.png", "a.png.png", "a_overlay.png", "a_scores.png"]
    assert all(Image.open(out / n).mode == "P" for n in labels)  # every label file is a label map, no overlay
    assert sorted(p.name for p in (out / "overlays").iterdir()) == labels
    assert all(Image.open(out / "overlays" / n).mode == "RGB" for n in labels)
    assert sorted(p.name for p in (out / "scores").iterdir()) == [n[:-4] + ".npy" for n in labels]


def test_clashes_are_errors_before_any_work(tmp_path: Path, tiny_onnx) -> None:
    p = engine.Predictor(tiny_onnx[0])
    one, two = _img(tmp_path / "one" / "x.png", 1), _img(tmp_path / "two" / "x.png", 2)
    out = tmp_path / "out"
    for specs in ([one.parent, two.parent], [one, two]):
        with pytest.raises(ValueError, match=r"one/x.png and .*two/x.png would both be written to .*out/x.png"):
            predict_files(p, specs, out, progress=False)
        assert not out.exists()  # nothing read, nothing written
    # an input folder with its own 'overlays' subfolder: its labels would land on the overlays of the top level
    src = tmp_path / "prev"
    _img(src / "x.png", 3)
    _img(src / "overlays" / "x.png", 4)
    with pytest.raises(ValueError, match="would both be written to .*overlays/x.png"):
        predict_files(p, [src], out, overlay=True, overlay_format="png", progress=False)
    assert not out.exists()
    assert predict_files(p, [src], out, overlay=True, progress=False).ok  # jpg overlays do not clash with PNG labels
    # outputs written into the input folder must not overwrite an input
    own = tmp_path / "own"
    before = _img(own / "a.png", 5).read_bytes()
    _img(own / "b.jpg", 6)
    _img(own / "b.png", 7)
    with pytest.raises(ValueError, match="own/a.png: the outputs of .*own/a.png would overwrite that input itself"):
        predict_files(p, [own], own, progress=False)
    assert (own / "a.png").read_bytes() == before
    assert sorted(f.name for f in own.iterdir()) == ["a.png", "b.jpg", "b.png"]


def test_output_folder_inside_the_input_is_not_read_back(tmp_path: Path, tiny_onnx) -> None:
    src = tmp_path / "in"
    _img(src / "a.png", 1)
    _img(src / "sub" / "b.png", 2)
    p = engine.Predictor(tiny_onnx[0])
    out = src / "results"
    first = predict_files(p, [src], out, overlay=True, progress=False)
    second = predict_files(p, [src], out, overlay=True, progress=False)  # earlier outputs are not inputs now
    assert [w.relative_to(out).as_posix() for w in first.written] == ["a.png", "sub/b.png"]
    assert second.written == first.written and second.ok
    assert not (out / "results").exists()


def test_glob_does_not_read_the_output_folder_back(tmp_path: Path, tiny_onnx) -> None:
    src = tmp_path / "in"
    _img(src / "a.png", 1)
    p = engine.Predictor(tiny_onnx[0])
    out = src / "results"
    pattern = str(src / "**" / "*.png")
    first = predict_files(p, [pattern], out, progress=False)
    second = predict_files(p, [pattern], out, progress=False)  # out/a.png matches the pattern, yet is no input
    assert [w.relative_to(out).as_posix() for w in first.written] == ["a.png"] == [
        w.relative_to(out).as_posix() for w in second.written]
    assert not (out / "results").exists()
