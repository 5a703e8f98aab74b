"""INT8 calibration data and the TensorRT calibrator (engine/calibration.py), without TensorRT: batches of exactly the
calibration profile's OPT shape pre-processed like engine.Predictor, the cache and its key, the size check."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import engine.cudart as cudart
from engine import ops
from engine.calibration import CalibrationData, check_batch, make_calibrator
from engine.metadata import ModelMeta
from tests.fake_tensorrt import FakeCuda


def _images(folder: Path, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    imgs = []
    for i in range(n):
        img = rng.integers(0, 256, (20 + i, 30 + 2 * i, 3), dtype=np.uint8)
        sub = folder / ("sub" if i % 2 else "")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(sub / f"img{i:02d}.png")
        imgs.append(img)
    (folder / "notes.txt").write_text("not an image")
    return imgs


@pytest.mark.parametrize("input_size", [None, (24, 40)])
def test_batches_have_the_given_shape_and_predictor_preprocessing(tmp_path: Path, input_size: tuple | None) -> None:
    imgs = _images(tmp_path / "calib", 5)
    meta = ModelMeta(classes=["a", "b"], mean=(10.0, 20.0, 30.0), std=(50.0, 60.0, 70.0), input_size=input_size)
    data = CalibrationData(tmp_path / "calib", meta, (2, 3, 16, 32))
    # the metadata input_size does not matter: TensorRT calibrates at the profile's OPT shape, which is given here
    assert len(data) == 3 and data.size == (16, 32) and data.shape == (2, 3, 16, 32) and data.nbytes == 12288
    batches = list(data.batches())
    assert [b.shape for b in batches] == [(2, 3, 16, 32)] * 3 and all(b.dtype == np.float32 for b in batches)
    order = [0, 2, 4, 1, 3]  # sorted paths: img00, img02, img04, sub/img01, sub/img03
    got = np.concatenate(batches)
    for k, i in enumerate(order):
        ref = ops.preprocess(imgs[i], 16, 32, meta.mean, meta.std, align_corners=meta.align_corners)
        np.testing.assert_array_equal(got[k], ref[0])
    np.testing.assert_array_equal(got[5], got[4])  # the last batch is padded by repetition


def test_cache_and_errors(tmp_path: Path) -> None:
    _images(tmp_path / "calib", 1)
    cache = tmp_path / "out" / "m.plan.calib"
    data = CalibrationData(tmp_path / "calib", ModelMeta(), (1, 3, 8, 8), cache_path=cache)
    assert data.read_cache() is None
    data.write_cache(memoryview(b"TRT-calibration-table"))
    assert cache.read_bytes() == b"TRT-calibration-table" and data.read_cache() == b"TRT-calibration-table"
    assert CalibrationData(tmp_path / "calib", ModelMeta(), (1, 3, 8, 8)).read_cache() is None
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        CalibrationData(tmp_path / "empty", ModelMeta(), (1, 3, 8, 8))
    with pytest.raises(FileNotFoundError, match="calibration folder not found"):
        CalibrationData(tmp_path / "nope", ModelMeta(), (1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\].*\(1, 1, 8, 8\)"):
        CalibrationData(tmp_path / "calib", ModelMeta(), (1, 1, 8, 8))
    (tmp_path / "calib" / "broken.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="broken.png cannot be read"):
        list(CalibrationData(tmp_path / "calib", ModelMeta(), (1, 3, 8, 8)).batches())


def test_cache_key_rejects_a_stale_cache(tmp_path: Path) -> None:
    _images(tmp_path / "calib", 2)
    cache = tmp_path / "m.plan.calib"
    a = CalibrationData(tmp_path / "calib", ModelMeta(), (1, 3, 8, 8), cache_path=cache)
    a.cache_key = a.fingerprint("model-1")
    a.write_cache(b"table-1")
    assert (tmp_path / "m.plan.calib.json").is_file() and a.read_cache() == b"table-1"
    b = CalibrationData(tmp_path / "calib", ModelMeta(), (1, 3, 8, 16), cache_path=cache)
    assert b.fingerprint("model-1") != a.cache_key != a.fingerprint("model-2")  # shape and model both count
    b.cache_key = b.fingerprint("model-1")
    with pytest.warns(UserWarning, match="m.plan.calib was made for another model, image set or shape"):
        assert b.read_cache() is None
    (tmp_path / "m.plan.calib.json").unlink()  # a cache from elsewhere without a key is used as it is
    assert b.read_cache() == b"table-1"


def test_check_batch() -> None:
    check_batch(np.zeros((2, 3, 4, 4), np.float32), (2, 3, 4, 4), 2 * 3 * 16 * 4)
    for bad in (np.zeros((2, 3, 4, 5), np.float32), np.zeros((2, 3, 4, 4), np.float64),
                np.zeros((2, 3, 4, 8), np.float32)[..., ::2], [[0.0]]):
        with pytest.raises(ValueError, match=r"OPT shape \(2, 3, 4, 4\) float32 \(384 bytes\).*wrong size"):
            check_batch(bad, (2, 3, 4, 4), 384)


class _Base:
    def __init__(self) -> None:
        pass


def test_calibrator_feeds_checked_batches_and_keeps_errors(tmp_path: Path, monkeypatch) -> None:
    _images(tmp_path / "calib", 3)
    cuda = FakeCuda()
    monkeypatch.setattr(cudart, "runtime", lambda: cuda)
    trt = types.SimpleNamespace(IInt8EntropyCalibrator2=_Base, __version__="10.16.1")
    data = CalibrationData(tmp_path / "calib", ModelMeta(), (2, 3, 8, 12))
    cal = make_calibrator(trt, data, "input")
    assert cal.get_batch_size() == 2 and len(cuda.mem[cal.device]) == data.nbytes
    assert cal.get_batch(["input"]) == [cal.device] and cal.batches_fed == 1
    ref = next(data.batches())
    np.testing.assert_array_equal(np.frombuffer(cuda.mem[cal.device], np.float32).reshape(2, 3, 8, 12), ref)
    assert cal.get_batch(["input"]) == [cal.device] and cal.get_batch(["input"]) is None and cal.error is None
    wrong = make_calibrator(trt, data, "input")
    assert wrong.get_batch(["image", "mask"]) is None
    assert isinstance(wrong.error, ValueError) and "asks for ['image', 'mask']" in str(wrong.error)
    assert wrong.get_batch(["input"]) is None  # after an error calibration stays ended
    (tmp_path / "calib" / "zz_broken.png").write_bytes(b"garbage")
    broken = make_calibrator(trt, CalibrationData(tmp_path / "calib", ModelMeta(), (4, 3, 8, 12)), "input")
    assert broken.get_batch(["input"]) is None and "zz_broken.png cannot be read" in str(broken.error)
    device = broken.device
    del broken
    assert device in cuda.freed
