"""engine.quantize / ``segrt quantize``: int8 QDQ models that engine.Predictor opens unchanged, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

import engine
from engine.cli import main
from engine.metadata import ModelMeta
from engine.quantize import PROVENANCE_KEY, calib_folder, compare, quantize_model
from tests.conftest import make_tiny_onnx
from training.data import SegFolderDataset, generate_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("q") / "ds", n_train=6, n_val=3, height=48, width=64)


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("input_size", [None, (32, 48)])
def test_quantized_model_runs_in_predictor(tmp_path: Path, dataset: Path, input_size) -> None:
    meta = ModelMeta(classes=[f"c{i}" for i in range(8)], input_size=input_size, output_stride=2)
    src, _ = make_tiny_onnx(tmp_path / "tiny.onnx", num_classes=8, meta=meta)
    out = quantize_model(src, dataset, tmp_path / "tiny.int8.onnx", num_images=4)
    assert out == tmp_path / "tiny.int8.onnx" and out.is_file()
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(out)
    fp32, int8 = engine.Predictor(src), engine.Predictor(out)
    assert int8.meta == fp32.meta
    info = json.loads(int8.backend.session.get_modelmeta().custom_metadata_map[PROVENANCE_KEY])
    assert info["calibration_images"] == 4 and info["calibration_folder"].endswith("train")
    ds = SegFolderDataset(dataset, "val")
    agree = [(fp32.run(ds[i]["image"]) == int8.run(ds[i]["image"])).mean() for i in range(len(ds))]
    assert min(agree) >= 0.9


def test_options_and_plain_folder(tmp_path: Path, dataset: Path) -> None:
    src, _ = make_tiny_onnx(tmp_path / "tiny.onnx")
    out = quantize_model(src, dataset / "images" / "val", tmp_path / "q.onnx", num_images=None, method="percentile",
                         per_channel=False, activation_type="int8", reduce_range=True)
    info = json.loads(engine.Predictor(out).backend.session.get_modelmeta().custom_metadata_map[PROVENANCE_KEY])
    assert info["calibration_images"] == 3 and info["method"] == "percentile" and info["activation_type"] == "int8"
    assert calib_folder(dataset / "images" / "val") == dataset / "images" / "val"
    assert calib_folder(dataset) == dataset / "images" / "train"


def test_compare_report(tmp_path: Path, dataset: Path) -> None:
    src, _ = make_tiny_onnx(tmp_path / "tiny.onnx", num_classes=8)
    out = quantize_model(src, dataset, tmp_path / "q.onnx", num_images=2)
    r = compare(src, out, dataset, runs=2, warmup=0, gap_s=0.0)
    assert set(r["latency_ms"]) == {"fp32 bare network", "fp32 end to end", "int8 bare network", "int8 end to end"}
    assert r["images"] == 3 and 0.0 <= r["quality"]["int8"]["mIoU"] <= 1.0 and r["label_agreement"] >= 0.9
    assert r["speedup"]["end to end"] > 0 and r["quantization"]["calibration_images"] == 2


def test_bad_input(tmp_path: Path, dataset: Path) -> None:
    src, _ = make_tiny_onnx(tmp_path / "tiny.onnx")
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        quantize_model(src, missing, tmp_path / "q.onnx")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty.*no images"):
        quantize_model(src, empty, tmp_path / "q.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf \x00\xff" * 10)
    with pytest.raises(ValueError, match="junk.onnx: not an ONNX model"):
        quantize_model(junk, dataset, tmp_path / "q.onnx")
    with pytest.raises(FileNotFoundError, match="absent.onnx"):
        quantize_model(tmp_path / "absent.onnx", dataset, tmp_path / "q.onnx")
    with pytest.raises(ValueError, match="method"):
        quantize_model(src, dataset, tmp_path / "q.onnx", method="magic")
    with pytest.raises(ValueError, match="num_images"):
        quantize_model(src, dataset, tmp_path / "q.onnx", num_images=0)
    assert not (tmp_path / "q.onnx").exists()


def test_cli(tmp_path: Path, dataset: Path, capsys: pytest.CaptureFixture) -> None:
    src, _ = make_tiny_onnx(tmp_path / "tiny.onnx", num_classes=8)
    junk = tmp_path / "junk.onnx"
    junk.write_text("not onnx")
    for model, calib in ((junk, dataset), (src, tmp_path / "missing_dir")):
        assert main(["quantize", str(model), "--calib", str(calib), "-o", str(tmp_path / "q.onnx")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("segrt quantize: error:") and "\n" not in err
        assert (junk.name if model == junk else "missing_dir") in err
    out, res = tmp_path / "q.onnx", tmp_path / "res"
    assert main(["quantize", str(src), "--calib", str(dataset), "-o", str(out), "--num-images", "2",
                 "--report", str(dataset), "--runs", "1", "--warmup", "0", "--out-dir", str(res)]) == 0
    assert out.is_file()
    report = json.loads((res / "quantize_tiny.json").read_text())
    assert report["command"].startswith(f"segrt quantize {src} --calib {dataset}")
    assert (res / "quantize_tiny.md").read_text().startswith("# int8 quantization")


def test_cli_reports_on_the_calibration_dataset_by_default(tmp_path: Path, dataset: Path, capsys) -> None:
    """The issue's plain command reports speed-up and mIoU change on the dataset's validation split; a bare image
    folder gets no report; --report none skips it."""
    src, _ = make_tiny_onnx(tmp_path / "tiny.onnx", num_classes=8)
    common = ["--num-images", "2", "--runs", "1", "--warmup", "0", "--out-dir"]
    assert main(["quantize", str(src), "--calib", str(dataset), "-o", str(tmp_path / "a.onnx"), *common,
                 str(tmp_path / "auto")]) == 0
    report = json.loads((tmp_path / "auto" / "quantize_tiny.json").read_text())
    assert f"--report {dataset} --split val" in report["command"] and "mIoU" in capsys.readouterr().out
    assert main(["quantize", str(src), "--calib", str(dataset), "-o", str(tmp_path / "b.onnx"), "--report", "none",
                 *common, str(tmp_path / "none")]) == 0
    images = dataset / "images" / "train"  # an image folder, not a dataset root: nothing to score against
    assert main(["quantize", str(src), "--calib", str(images), "-o", str(tmp_path / "c.onnx"), *common,
                 str(tmp_path / "folder")]) == 0
    assert not (tmp_path / "none").exists() and not (tmp_path / "folder").exists()
