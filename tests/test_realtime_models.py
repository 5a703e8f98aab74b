"""BiSeNetV1, BiSeNetV2 and STDC: MMSeg parameter counts and key names, auxiliary heads, the STDC boundary head.

Reference numbers come from MMSegmentation 1.2.2 models built from its own configs (``bisenetv1_r18-d32`` /
``r50-d32``, ``bisenetv2_fcn``, ``stdc1`` / ``stdc2`` Cityscapes, 19 classes); their state dicts loaded into ours
with ``strict=True`` give the same logits (max abs diff <= 5e-7).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.models import build, build_backbone, model_info
from training.models.backbones.bisenetv2 import BiSeNetV2, avg_pool3x3_s2
from training.models.backbones.stdc import STDCNet
from training.models.heads.stdc import STDCHead

# (model, build keywords) -> MMSeg's parameter count. MMSeg's STDC models hold 3 more: STDCHead's constant
# fusion_kernel is a frozen nn.Parameter there (8,573,022 / 12,603,486) and a buffer here (same state-dict key).
FULL_SIZE = [
    ("bisenetv1", {}, 13_425_721),
    ("bisenetv1", {"backbone": "resnet50-v1b"}, 59_243_385),
    ("bisenetv2", {}, 14_804_255),
    ("stdc", {}, 8_573_022 - 3),
    ("stdc", {"backbone": "stdc2"}, 12_603_486 - 3),
]
TINY_STDC = {"backbone": "stdc1", "backbone_kwargs": {"channels": (8, 8, 16, 32, 64)}}


pytestmark = [pytest.mark.usefixtures("torch_single_thread")]


def _meta(name: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        return build(name, num_classes=19, **kwargs)


@pytest.mark.parametrize(("name", "kwargs", "params"), FULL_SIZE, ids=lambda v: str(v))
def test_full_size_parameter_count_matches_mmseg(name: str, kwargs: dict, params: int) -> None:
    m = _meta(name, **kwargs)
    assert sum(p.numel() for p in m.parameters()) == params


def test_bisenetv1_keys_and_heads() -> None:
    m = _meta("bisenetv1")
    keys = set(m.state_dict())
    for k in ("backbone.context_path.backbone.conv1.weight", "backbone.context_path.backbone.layer4.1.bn2.bias",
              "backbone.context_path.arm16.atten_conv_layer.1.bn.weight",
              "backbone.context_path.gap_conv.1.conv.weight",
              "backbone.context_path.conv_head32.conv.weight", "backbone.spatial_path.layer1.conv.weight",
              "backbone.ffm.conv1.bn.running_var", "backbone.ffm.conv_atten.0.conv.weight",
              "decode_head.convs.0.conv.weight", "auxiliary_head.1.conv_seg.bias"):
        assert k in keys, k
    assert not any("stem" in k for k in keys)  # MMSeg's config uses ResNet (v1b: 7x7 conv1), not ResNetV1c
    assert m.backbone.context_path.backbone.conv1.kernel_size == (7, 7)
    assert [h.in_index for h in m.auxiliary_head] == [1, 2]
    assert m.decode_head.channels == 256 and m.auxiliary_head[0].channels == 64
    assert m.output_stride == 8


def test_bisenetv2_keys_and_heads() -> None:
    m = _meta("bisenetv2")
    keys = set(m.state_dict())
    for k in ("backbone.detail.detail_branch.2.2.conv.weight", "backbone.semantic.stage1.fuse_last.bn.weight",
              "backbone.semantic.stage4.0.shortcut.0.pointwise_conv.bn.bias",
              "backbone.semantic.stage4_CEBlock.gap.1.running_mean",
              "backbone.bga.detail_dwconv.0.pointwise_conv.conv.bias",
              "backbone.bga.detail_down.0.bn.weight", "auxiliary_head.3.convs.1.conv.weight"):
        assert k in keys, k
    assert len(m.auxiliary_head) == 4
    assert [h.in_index for h in m.auxiliary_head] == [1, 2, 3, 4]
    assert [h.channels for h in m.auxiliary_head] == [16, 64, 256, 1024]
    assert m.decode_head.channels == 1024 and m.backbone.out_strides == (8, 4, 8, 16, 32)


def test_stdc_keys_and_heads() -> None:
    m = _meta("stdc")
    keys = set(m.state_dict())
    for k in ("backbone.backbone.stages.0.conv.weight", "backbone.backbone.stages.2.0.downsample.conv.weight",
              "backbone.backbone.stages.4.1.layers.3.bn.weight", "backbone.arms.1.atten_conv_layer.1.conv.weight",
              "backbone.convs.0.conv.weight", "backbone.conv_avg.bn.bias", "backbone.ffm.attention.1.conv.weight",
              "auxiliary_head.2.laplacian_kernel", "auxiliary_head.2.fusion_kernel"):
        assert k in keys, k
    assert "backbone.ffm.attention.1.conv.bias" not in keys  # bias-free convs without norm, as MMSeg
    heads = m.auxiliary_head
    assert len(heads) == 3 and isinstance(heads[2], STDCHead) and heads[2].num_classes == 2
    assert [h.in_index for h in heads] == [2, 1, 0] and m.decode_head.in_index == 3
    assert "fusion_kernel" not in dict(heads[2].named_parameters())
    assert len(_meta("stdc", boundary_head=False).auxiliary_head) == 2
    assert len(_meta("stdc", backbone="stdc2").backbone.backbone.stages[3]) == 5


@pytest.mark.parametrize("name", ["bisenetv1", "bisenetv2", "stdc"])
def test_defaults_and_aux_off(name: str) -> None:
    info = model_info(name)
    assert info["defaults"]["aux"] is True
    assert all(info["capabilities"].values())
    assert _meta(name, aux=False).auxiliary_head is None


def test_stdc_boundary_head_trains_with_its_own_loss() -> None:
    torch.manual_seed(0)
    m = build("stdc", num_classes=5, **TINY_STDC).train()
    x = torch.randn(2, 3, 64, 80)
    label = torch.randint(0, 5, (2, 64, 80))
    out, aux = m.forward_with_aux(x)
    assert aux[2].shape == (2, 2, 8, 10)
    seg = [F.cross_entropy(F.interpolate(o, size=(64, 80), mode="bilinear"), label) for o in (out, aux[0], aux[1])]
    (sum(seg) + m.auxiliary_head[2].loss(aux[2], label)).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


def test_stdc_detail_targets() -> None:
    head = STDCHead(4, 4, num_classes=2, num_convs=1, concat_input=False)
    label = torch.zeros(1, 16, 16, dtype=torch.long)
    assert head.detail_targets(label).sum() == 0
    label[:, :, 8:] = 1
    t = head.detail_targets(label)[0]
    assert t.dtype == torch.int64 and t.shape == (16, 16)
    assert (t[4:12, 8:10] == 1).all()  # the edge (stride 1) and its stride-2 echo
    assert (t[4:12, :8] == 0).all() and (t[4:12, 10:14] == 0).all()
    with pytest.raises(ValueError, match="labels"):
        head.detail_targets(label[0])
    with pytest.raises(ValueError, match="logits"):
        head.loss(torch.zeros(1, 1, 4, 4), label)


def test_avg_pool_matches_torch() -> None:
    x = torch.randn(2, 3, 9, 12)
    ref = F.avg_pool2d(x, 3, stride=2, padding=1)
    assert torch.allclose(avg_pool3x3_s2(x), ref, atol=1e-6)


def test_registered_backbones() -> None:
    bb = build_backbone("stdc2", {"channels": (8, 8, 16, 32, 64)})
    assert isinstance(bb, STDCNet) and bb.out_strides == (8, 16, 32) and bb.variant == "stdc2"
    assert isinstance(build_backbone("bisenetv2"), BiSeNetV2)
    m = build("fcn", num_classes=3, backbone="stdc1", backbone_kwargs={"channels": (8, 8, 16, 32, 64)}).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 64, 64)).shape == (1, 3, 2, 2)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="bisenetv2"):
        build("bisenetv2", num_classes=3, backbone="resnet18")
    with pytest.raises(ValueError, match="stdc"):
        build("stdc", num_classes=3, backbone="mobilenetv2")
    with pytest.raises(ValueError, match="strides"):  # a dilated context backbone
        build("bisenetv1", num_classes=3, backbone_kwargs={"output_stride": 8, "base_channels": 8})
    with pytest.raises(ValueError, match="unknown backbone_kwargs"):
        build("stdc", num_classes=3, backbone_kwargs={"variant": "stdc2"})
    with pytest.raises(ValueError, match="bga_channels"):
        BiSeNetV2(bga_channels=64)
    with pytest.raises(ValueError, match="variant"):
        STDCNet("stdc3")
    with pytest.raises(ValueError, match="aux_channels"):
        build("bisenetv2", num_classes=3, aux_channels=(8, 8))
