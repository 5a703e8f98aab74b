"""Import of torchvision segmentation checkpoints (training.convert.torchvision), without torchvision.

The fixtures ``tests/fixtures/torchvision_<arch>.json`` list every key and shape of the real torchvision 0.29.1
models (``weights=None``, ``num_classes=3``, ``aux_loss=True`` where it exists), BatchNorms as ``prefix: channels``,
and torchvision's own parameter count. Against the real torchvision (a separate venv), the converted models gave
the same parameter counts and classifier logits within 1.5e-5 (0 for FCN and LR-ASPP).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from training.convert.torchvision import ARCHS, build_torchvision_model, convert_torchvision, prefix_table, rename_keys

FIXTURES = Path(__file__).parent / "fixtures"
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


pytestmark = [pytest.mark.usefixtures("torch_single_thread")]


def _fixture(arch: str) -> tuple[dict, dict[str, tuple[int, ...]]]:
    fx = json.loads((FIXTURES / f"torchvision_{arch}.json").read_text())
    shapes = {k: tuple(v) for k, v in fx["tensors"].items()}
    for prefix, c in fx["bn"].items():
        shapes.update({f"{prefix}.{k}": (() if k == "num_batches_tracked" else (c,)) for k in BN_KEYS})
    assert len(shapes) == fx["num_keys"]
    return fx, shapes


def _random_checkpoint(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, s in shapes.items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(s, generator=g) + 0.5
        else:
            sd[k] = torch.randn(s, generator=g) / max(1, torch.Size(s[1:]).numel()) ** 0.5
    return sd


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_torchvision_key_maps_with_its_shape(arch: str) -> None:
    fx, shapes = _fixture(arch)
    with torch.device("meta"):
        model = build_torchvision_model(arch, fx["num_classes"], aux=fx["aux_loss"])
    renamed, unmatched = rename_keys(list(shapes), prefix_table(model, arch))
    assert not unmatched
    ours = model.state_dict()
    assert sorted(renamed.values()) == sorted(ours)  # a bijection onto our state dict
    assert [k for k, v in renamed.items() if tuple(ours[v].shape) != shapes[k]] == []
    assert sum(p.numel() for p in model.parameters()) == fx["num_params"]


def test_key_examples() -> None:
    _, shapes = _fixture("deeplabv3_mobilenet_v3_large")
    with torch.device("meta"):
        model = build_torchvision_model("deeplabv3_mobilenet_v3_large", 3, aux=True)
    renamed, _ = rename_keys(list(shapes), prefix_table(model, "deeplabv3_mobilenet_v3_large"))
    expected = {
        "backbone.0.1.running_var": "backbone.layer0.bn.running_var",
        "backbone.1.block.0.0.weight": "backbone.layer1.depthwise_conv.conv.weight",  # no expand conv
        "backbone.4.block.2.fc1.bias": "backbone.layer4.se.conv1.conv.bias",
        "backbone.4.block.3.1.weight": "backbone.layer4.linear_conv.bn.weight",
        "backbone.7.block.2.0.weight": "backbone.layer7.linear_conv.conv.weight",  # no SE in layer 7
        "backbone.16.0.weight": "backbone.layer16.conv.weight",
        "classifier.0.convs.4.1.weight": "decode_head.image_pool.1.conv.weight",
        "classifier.0.project.1.bias": "decode_head.project.bn.bias",
        "classifier.1.weight": "decode_head.bottleneck.conv.weight",
        "classifier.4.bias": "decode_head.conv_seg.bias",
        "aux_classifier.0.weight": "auxiliary_head.convs.0.conv.weight",
    }
    assert {k: renamed[k] for k in expected} == expected
    bb = model.backbone
    assert bb.out_indices == (4, 16) and bb.out_strides == (8, 16) and model.output_stride == 16
    assert bb.layer13.depthwise_conv.conv.dilation == (2, 2) and bb.layer13.depthwise_conv.conv.stride == (1, 1)
    assert bb.layer0.conv.padding == (1, 1)  # torchvision's symmetric padding, not TF "same"
    with torch.device("meta"):
        fcn = build_torchvision_model("fcn_resnet101", 3, aux=True)
    layer3 = fcn.backbone.layer3  # replace_stride_with_dilation: the first dilated block keeps dilation 1
    assert layer3[0].conv2.dilation == (1, 1) and layer3[1].conv2.dilation == (2, 2)
    assert fcn.backbone.layer4[0].conv2.dilation == (2, 2) and fcn.auxiliary_head.channels == 256


def _tv_deeplab_head(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """torchvision's DeepLabHead written out with F ops on its own key names (image pool last, project, 3x3)."""
    def cbr(prefix: str, conv: str, bn: str, inp: torch.Tensor, **kw) -> torch.Tensor:
        y = F.conv2d(inp, sd[f"{prefix}{conv}.weight"], **kw)
        p = f"{prefix}{bn}."
        y = F.batch_norm(y, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"], sd[p + "bias"])
        return F.relu(y)

    branches = [cbr("classifier.0.convs.0.", "0", "1", x)]
    branches += [cbr(f"classifier.0.convs.{i}.", "0", "1", x, padding=d, dilation=d)
                 for i, d in zip((1, 2, 3), (12, 24, 36))]
    pooled = cbr("classifier.0.convs.4.", "1", "2", F.adaptive_avg_pool2d(x, 1))
    branches.append(F.interpolate(pooled, size=x.shape[2:], mode="bilinear", align_corners=False))
    y = cbr("classifier.0.project.", "0", "1", torch.cat(branches, 1))
    y = cbr("classifier.", "1", "2", y, padding=1)
    return F.conv2d(y, sd["classifier.4.weight"], sd["classifier.4.bias"])


def _tv_lraspp_head(sd: dict, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """torchvision's LRASPPHead written out with F ops on its own key names."""
    p = "classifier.cbr.1."
    x = F.batch_norm(F.conv2d(high, sd["classifier.cbr.0.weight"]), sd[p + "running_mean"], sd[p + "running_var"],
                     sd[p + "weight"], sd[p + "bias"]).relu()
    x = x * torch.sigmoid(F.conv2d(F.adaptive_avg_pool2d(high, 1), sd["classifier.scale.1.weight"]))
    x = F.interpolate(x, size=low.shape[2:], mode="bilinear", align_corners=False)
    return (F.conv2d(low, sd["classifier.low_classifier.weight"], sd["classifier.low_classifier.bias"])
            + F.conv2d(x, sd["classifier.high_classifier.weight"], sd["classifier.high_classifier.bias"]))


@pytest.mark.parametrize("arch", ["deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"])
def test_convert_full_size_mobilenet_models(arch: str) -> None:
    fx, shapes = _fixture(arch)
    sd = _random_checkpoint(shapes)
    model, report = convert_torchvision(sd, arch)
    assert report == {"arch": arch, "model": ARCHS[arch][0], "backbone": "mobilenetv3-large", "num_classes": 3,
                      "aux": fx["aux_loss"], "tensors": len(shapes), "params": fx["num_params"]}
    assert not model.training
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        feats = model.extract_feat(x)
        out = model(x)
        ref = _tv_deeplab_head(sd, feats[1]) if arch.startswith("deeplab") else _tv_lraspp_head(sd, *feats)
    assert out.shape == (1, 3, *model.logits_hw(97, 131))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # Self-consistency: our weights written under torchvision's names load back to the same logits.
    table = prefix_table(model, arch)
    renamed, _ = rename_keys(list(shapes), table)
    ours = model.state_dict()
    again, _ = convert_torchvision({tv: ours[k] for tv, k in renamed.items()}, arch, num_classes=3)
    with torch.no_grad():
        assert torch.equal(again(x), out)


def test_aux_is_optional_and_bad_checkpoints_are_named() -> None:
    arch = "deeplabv3_mobilenet_v3_large"
    _, shapes = _fixture(arch)
    sd = _random_checkpoint(shapes)
    no_aux = {k: v for k, v in sd.items() if not k.startswith("aux_classifier.")}
    model, report = convert_torchvision({"model": no_aux, "epoch": 3}, arch)  # torchvision's training checkpoint
    assert model.auxiliary_head is None and not report["aux"]
    with pytest.raises(ValueError, match=r"missing keys: \['backbone.layer5.se.conv1.conv.weight'\]"):
        convert_torchvision({k: v for k, v in sd.items() if k != "backbone.5.block.2.fc1.weight"}, arch)
    with pytest.raises(ValueError, match="unexpected keys: .*'backbone.17.0.weight'"):
        convert_torchvision({**sd, "backbone.17.0.weight": torch.zeros(1)}, arch)
    with pytest.raises(ValueError, match="shape mismatches.*classifier.1.weight"):
        convert_torchvision({**sd, "classifier.1.weight": torch.zeros(256, 256, 1, 1)}, arch)
    with pytest.raises(ValueError, match="num_classes=21 but .* 3 classes"):
        convert_torchvision(sd, arch, num_classes=21)
    with pytest.raises(ValueError, match="unknown torchvision architecture 'fcn_vgg16'"):
        convert_torchvision(sd, "fcn_vgg16")
    with pytest.raises(ValueError, match="classifier.high_classifier.weight"):
        convert_torchvision(sd, "lraspp_mobilenet_v3_large")
    with pytest.raises(ValueError, match="not tensors"):
        convert_torchvision({**sd, "meta": "x"}, arch)
