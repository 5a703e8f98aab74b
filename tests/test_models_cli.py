"""``segrt models`` and training.models.summary: parameter and FLOP counts on the meta device."""

from __future__ import annotations

import json

import pytest

from engine.cli import main
from training.models import build, list_models
from training.models.summary import measure, render_markdown


def test_measure_counts_params_and_flops_of_the_real_model() -> None:
    row = measure("fcn", (64, 128), num_classes=3, backbone="resnet18")
    m = build("fcn", num_classes=3, backbone="resnet18")
    assert row["params"] == sum(p.numel() for p in m.parameters())
    assert row["params_deploy"] == row["params"] - sum(p.numel() for p in m.auxiliary_head.parameters())
    assert row["logits"] == "8x16" and row["stride"] == 8 and row["backbone"] == "resnet18"
    # FLOPs scale with the pixel count for a fully convolutional model
    assert measure("fcn", (128, 256), num_classes=3, backbone="resnet18")["gflops"] == pytest.approx(
        4 * row["gflops"], rel=1e-6)
    assert row["gmacs"] == pytest.approx(row["gflops"] / 2)
    assert not any(p.is_meta for p in m.parameters())  # building on meta did not leak into later builds


def test_segrt_models_lists_every_model(capsys) -> None:
    assert main(["models", "--shape", "64x64", "--num-classes", "3"]) == 0
    text = capsys.readouterr().out
    for name in list_models():
        assert f"| {name} |" in text


def test_segrt_models_json_and_unknown_name(capsys) -> None:
    assert main(["models", "pspnet", "--shape", "64x64", "--json", "--backbone", "resnet18"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["model"] == "pspnet" and row["capabilities"]["onnx"] is True and row["params"] > 1e6
    with pytest.raises(SystemExit, match="unknown model"):
        main(["models", "no-such-model"])


def test_render_markdown_has_one_row_per_model() -> None:
    rows = [measure("fcn", (32, 32), num_classes=2, backbone="resnet18")]
    text = render_markdown(rows, "t")
    assert text.count("| fcn |") == 1
