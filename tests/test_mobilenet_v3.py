"""MobileNetV3 backbones and the LR-ASPP head: MMSeg's names, sizes, strides, padding and pooling.

Reference numbers come from the real MMSegmentation 1.2.2 (``lraspp_m-v3-d8`` / ``-s`` configs built with random
weights; our models load their state dicts with ``strict=True`` and give the same logits within 6e-7).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.models import build, build_backbone
from training.models.backbones.mobilenet_v3 import AdaptivePaddingConv2d, MobileNetV3
from training.models.heads.lraspp import WindowAvgPool2d

BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# (mid, out, with_se) per block of MMSeg's arch_settings, written out again independently of the model code.
LARGE = [(16, 16, 0), (64, 24, 0), (72, 24, 0), (72, 40, 1), (120, 40, 1), (120, 40, 1), (240, 80, 0),
         (200, 80, 0), (184, 80, 0), (184, 80, 0), (480, 112, 1), (672, 112, 1), (672, 160, 1), (960, 160, 1),
         (960, 160, 1)]
SMALL = [(16, 16, 1), (72, 24, 0), (88, 24, 0), (96, 40, 1), (240, 40, 1), (240, 40, 1), (120, 48, 1), (144, 48, 1),
         (288, 96, 1), (576, 96, 1), (576, 96, 1)]


pytestmark = [pytest.mark.usefixtures("torch_single_thread")]


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _conv_module(prefix: str, bias: bool = False, bn: bool = True) -> list[str]:
    keys = [f"{prefix}.conv.weight"] + ([f"{prefix}.conv.bias"] if bias else [])
    return keys + ([f"{prefix}.bn.{k}" for k in BN_KEYS] if bn else [])


def _mmseg_backbone_keys(arch: list[tuple[int, int, int]]) -> set[str]:
    keys = _conv_module("backbone.layer0")
    in_ch = 16
    for i, (mid, out, se) in enumerate(arch, start=1):
        p = f"backbone.layer{i}"
        if mid != in_ch:
            keys += _conv_module(f"{p}.expand_conv")
        keys += _conv_module(f"{p}.depthwise_conv") + _conv_module(f"{p}.linear_conv")
        if se:
            keys += _conv_module(f"{p}.se.conv1", bias=True, bn=False) + _conv_module(f"{p}.se.conv2", True, False)
        in_ch = out
    return set(keys + _conv_module(f"backbone.layer{len(arch) + 1}"))


def _lraspp_head_keys() -> set[str]:
    keys = ["decode_head.conv_seg.weight", "decode_head.conv_seg.bias", "decode_head.conv_up_input.weight",
            "decode_head.conv_up_input.bias", "decode_head.image_pool.1.conv.weight"]
    keys += _conv_module("decode_head.aspp_conv")
    for i in range(2):
        keys += [f"decode_head.convs.conv{i}.weight", *_conv_module(f"decode_head.conv_ups.conv_up{i}")]
    return set(keys)


@pytest.mark.parametrize(("arch", "table", "params", "backbone_params"),
                         [("large", LARGE, 3_284_547, 2_971_952), ("small", SMALL, 1_140_787, 927_008)])
def test_lraspp_matches_mmseg_names_and_size(arch: str, table: list, params: int, backbone_params: int) -> None:
    with torch.device("meta"):
        m = build("lraspp", num_classes=19, backbone=f"mobilenetv3-{arch}")
    sd = m.state_dict()
    assert set(sd) == _mmseg_backbone_keys(table) | _lraspp_head_keys()
    assert _n_params(m) == params and _n_params(m.backbone) == backbone_params
    assert m.auxiliary_head is None and m.output_stride == 2 and m.backbone.output_stride == 8
    bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    assert bns and all(bn.eps == 1e-3 for bn in bns)  # norm_cfg eps=0.001 of the lraspp configs


def test_lraspp_large_shapes_and_layout() -> None:
    with torch.device("meta"):
        m = build("lraspp", num_classes=19)
    sd = m.state_dict()
    shapes = {
        "backbone.layer0.conv.weight": (16, 3, 3, 3),
        "backbone.layer1.depthwise_conv.conv.weight": (16, 1, 3, 3),
        "backbone.layer4.se.conv1.conv.weight": (24, 72, 1, 1),
        "backbone.layer4.se.conv2.conv.bias": (72,),
        "backbone.layer13.expand_conv.bn.weight": (672,),
        "backbone.layer16.conv.weight": (960, 160, 1, 1),
        "decode_head.image_pool.1.conv.weight": (128, 960, 1, 1),
        "decode_head.convs.conv1.weight": (64, 24, 1, 1),
        "decode_head.conv_ups.conv_up0.conv.weight": (128, 160, 1, 1),
        "decode_head.conv_up_input.bias": (128,),
    }
    for k, s in shapes.items():
        assert tuple(sd[k].shape) == s, k
    bb = m.backbone
    assert bb.out_indices == (1, 3, 16) and bb.out_channels == (16, 24, 960) and bb.out_strides == (2, 4, 8)
    # d8: layer7 and layer13 lose their stride; dilation 2 from layer7, 4 from layer13 (padding = dilation * (k-1)/2).
    dw7, dw13, dw14 = (getattr(bb, f"layer{i}").depthwise_conv.conv for i in (7, 13, 14))
    assert dw7.stride == (1, 1) and dw7.dilation == (2, 2) and dw7.padding == (2, 2)
    assert bb.layer12.depthwise_conv.conv.dilation == (2, 2)
    assert dw13.stride == (1, 1) and dw13.dilation == (4, 4) and dw13.padding == (8, 8) and dw14.dilation == (4, 4)
    assert not bb.layer7.with_res_shortcut and bb.layer8.with_res_shortcut and not bb.layer1.with_expand_conv
    # The stride-2 convs use TensorFlow "same" padding, as mmcv's Conv2dAdaptivePadding.
    for i in (2, 4):
        assert isinstance(getattr(bb, f"layer{i}").depthwise_conv.conv, AdaptivePaddingConv2d)
    assert isinstance(bb.layer0.conv, AdaptivePaddingConv2d) and isinstance(bb.layer0.activate, torch.nn.Hardswish)
    assert isinstance(bb.layer4.se.conv2.activate, torch.nn.Hardsigmoid)
    assert isinstance(bb.layer3.depthwise_conv.activate, torch.nn.ReLU)


def test_small_layout_and_reduction_factor() -> None:
    with torch.device("meta"):
        bb = build_backbone("mobilenetv3-small")
        reduced = build("lraspp", num_classes=19, backbone_kwargs={"reduction_factor": 2})
    assert bb.out_indices == (0, 1, 12) and bb.out_channels == (16, 16, 576) and bb.out_strides == (2, 4, 8)
    assert bb.layer4.depthwise_conv.conv.dilation == (2, 2) and bb.layer9.depthwise_conv.conv.dilation == (4, 4)
    assert bb.layer9.depthwise_conv.conv.padding == (8, 8)
    # MMSeg with backbone reduction_factor=2: 1,731,139 parameters (last stage halved, last conv still 960).
    assert _n_params(reduced) == 1_731_139
    assert reduced.backbone.layer13.linear_conv.conv.weight.shape == (80, 336, 1, 1)


@pytest.mark.parametrize(("output_stride", "strides"), [(8, (4, 8, 8, 8)), (16, (4, 8, 16, 16)), (32, (4, 8, 16, 32))])
def test_output_stride_variants(output_stride: int, strides: tuple) -> None:
    bb = build_backbone("mobilenetv3-large", {"widen_factor": 0.25, "out_indices": (3, 6, 12, 16),
                                              "output_stride": output_stride}).eval()
    assert bb.out_strides == strides and bb.output_stride == output_stride
    with torch.no_grad():
        outs = bb(torch.randn(1, 3, 67, 85))
    assert [tuple(o.shape[2:]) for o in outs] == [(-(-67 // s), -(-85 // s)) for s in strides]
    assert [o.shape[1] for o in outs] == list(bb.out_channels)


@pytest.mark.parametrize("size", [(8, 10), (9, 11), (7, 7)])
def test_adaptive_padding_is_tensorflow_same(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    conv = AdaptivePaddingConv2d(2, 3, 3, stride=2)
    x = torch.randn(1, 2, *size)
    # "same": ceil(n/2) outputs; the odd total padding puts the extra row/column at the bottom/right.
    pads = [(t // 2, t - t // 2) for t in ((-(-n // 2) - 1) * 2 + 3 - n for n in size)]
    ref = F.conv2d(F.pad(x, [*pads[1], *pads[0]]), conv.weight, conv.bias, stride=2)
    assert torch.equal(conv(x), ref) and ref.shape[2:] == tuple(-(-n // 2) for n in size)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [(49, 49), (64, 128), (80, 130), (128, 256)])
def test_window_pool_matches_avg_pool_and_interpolate(size: tuple[int, int], align_corners: bool) -> None:
    x = torch.randn(2, 3, *size)
    pool = WindowAvgPool2d(49, (16, 20))
    got = pool(x)
    ref = F.avg_pool2d(x, 49, stride=(16, 20))
    assert got.shape[2:] == (ref.shape[2] + 1, ref.shape[3] + 1)  # plus a copy of the last row and column
    torch.testing.assert_close(got[:, :, :-1, :-1], ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[:, :, -1], got[:, :, -2])
    up = F.interpolate(ref, size=size, mode="bilinear", align_corners=align_corners)
    torch.testing.assert_close(pool.upsample(got, size, align_corners), up, rtol=1e-5, atol=1e-6)


def test_window_pool_on_maps_smaller_than_the_window() -> None:
    # Where AvgPool2d fails, a side shorter than the window is averaged whole.
    pool = WindowAvgPool2d(49, (16, 20))
    x = torch.randn(1, 2, 8, 10)
    torch.testing.assert_close(pool(x)[:, :, :1, :1], x.mean((2, 3), keepdim=True))
    torch.testing.assert_close(pool.upsample(pool(x), (8, 10)), x.mean((2, 3), keepdim=True).expand(-1, -1, 8, 10))
    x = torch.randn(1, 2, 30, 100)
    ref = F.avg_pool2d(x, (30, 49), stride=(16, 20))
    assert ref.shape[2:] == (1, 3)
    torch.testing.assert_close(pool(x)[:, :, :-1, :-1], ref, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # emitted inside torch.export
def test_lraspp_onnx_keeps_the_pool_dynamic_below_and_above_the_window(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    m = build("lraspp", num_classes=3, backbone_kwargs={"widen_factor": 0.25}).eval()
    assert m.decode_head.channels == 32 and m.decode_head.branch_channels == (8, 16)
    dyn = torch.export.Dim.DYNAMIC
    program = torch.onnx.export(m, (torch.randn(1, 3, 64, 80),), dynamo=True, opset_version=18,
                                dynamic_shapes={"x": {0: dyn, 2: dyn, 3: dyn}})
    program.save(str(tmp_path / "lraspp.onnx"))
    sess = ort.InferenceSession(str(tmp_path / "lraspp.onnx"), providers=["CPUExecutionProvider"])
    # 8x10 map (window clamped to the map), 49x50 (one 49x49 window) and 60x82 (2 windows across).
    for hw in [(64, 80), (392, 400), (480, 656)]:
        x = torch.randn(1, 3, *hw)
        with torch.no_grad():
            ref = m(x)
        (got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        assert got.shape == ref.shape == (1, 3, hw[0] // 2, hw[1] // 2)
        assert float(abs(got - ref.numpy()).max()) <= 1e-4 * float(ref.abs().max())


def test_lraspp_errors() -> None:
    with pytest.raises(ValueError, match="mobilenetv3-large|small"):
        build("lraspp", num_classes=3, backbone="mobilenetv3-medium")
    with pytest.raises(ValueError, match="widen"):
        build("lraspp", num_classes=3, backbone_kwargs={"widen": 0.5})
    with pytest.raises(ValueError, match="output_stride"):
        build_backbone("mobilenetv3-large", {"output_stride": 4})
    with pytest.raises(ValueError, match="out_indices"):
        build_backbone("mobilenetv3-small", {"out_indices": (13,)})
    with pytest.raises(ValueError, match="branch_channels"):
        build("lraspp", num_classes=3, backbone_kwargs={"widen_factor": 0.25, "out_indices": (3, 16)})
    with pytest.raises(ValueError, match="arch"):
        MobileNetV3(arch="medium")
