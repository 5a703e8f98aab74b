"""Tests of training.models: MMSeg-compatible names and sizes, shapes, gradients, pooling parity, ONNX export."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.models import Segmentor, build, build_from_config, list_models, model_info, register
from training.models.backbones.resnet import ResNet
from training.models.layers import adaptive_avg_pool2d
from training.models.registry import D16

TINY = {"base_channels": 8, "stem_channels": 8}
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _bn(prefix: str) -> list[str]:
    return [f"{prefix}.{k}" for k in BN_KEYS]


def _mmseg_resnet_keys(depth: int, deep_stem: bool = True) -> set[str]:
    """State-dict keys of MMSeg's ResNet/ResNetV1c, enumerated independently from the model code."""
    bottleneck, blocks = {18: (False, (2, 2, 2, 2)), 50: (True, (3, 4, 6, 3)), 101: (True, (3, 4, 23, 3))}[depth]
    keys: list[str] = []
    if deep_stem:
        for conv, bn in ((0, 1), (3, 4), (6, 7)):
            keys += [f"backbone.stem.{conv}.weight", *_bn(f"backbone.stem.{bn}")]
    else:
        keys += ["backbone.conv1.weight", *_bn("backbone.bn1")]
    n_convs = 3 if bottleneck else 2
    for stage, n in enumerate(blocks):
        for b in range(n):
            p = f"backbone.layer{stage + 1}.{b}"
            for c in range(1, n_convs + 1):
                keys += [f"{p}.conv{c}.weight", *_bn(f"{p}.bn{c}")]
            if b == 0 and (bottleneck or stage > 0):  # stride or channel change
                keys += [f"{p}.downsample.0.weight", *_bn(f"{p}.downsample.1")]
    return set(keys)


def _conv_module(prefix: str) -> list[str]:
    return [f"{prefix}.conv.weight", *_bn(f"{prefix}.bn")]


AUX_KEYS = {*_conv_module("auxiliary_head.convs.0"), "auxiliary_head.conv_seg.weight", "auxiliary_head.conv_seg.bias"}


def test_registry_lists_models() -> None:
    assert {"fcn", "pspnet", "deeplabv3", "deeplabv3plus", "upernet", "fpn"} <= set(list_models())
    info = model_info("deeplabv3")
    assert info["capabilities"] == {"onnx": True, "dynamic_hw": True, "compile": True}
    assert "dilations" in info["options"] and info["defaults"]["backbone"] == "resnet50"
    with pytest.raises(ValueError, match="nope"):
        model_info("nope")
    with pytest.raises(ValueError, match="capabilities"):
        register("half_declared", capabilities={"onnx": True})


def test_pspnet_r50_d8_matches_mmseg_names_shapes_and_size() -> None:
    m = build("pspnet", num_classes=19)
    sd = m.state_dict()
    psp = {k for i in range(4) for k in _conv_module(f"decode_head.psp_modules.{i}.1")}
    expected = _mmseg_resnet_keys(50) | psp | set(_conv_module("decode_head.bottleneck")) | AUX_KEYS
    expected |= {"decode_head.conv_seg.weight", "decode_head.conv_seg.bias"}
    assert set(sd) == expected
    shapes = {
        "backbone.stem.0.weight": (32, 3, 3, 3),
        "backbone.stem.3.weight": (32, 32, 3, 3),
        "backbone.stem.6.weight": (64, 32, 3, 3),
        "backbone.layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "backbone.layer4.2.conv3.weight": (2048, 512, 1, 1),
        "decode_head.psp_modules.3.1.conv.weight": (512, 2048, 1, 1),
        "decode_head.bottleneck.conv.weight": (512, 4096, 3, 3),
        "decode_head.conv_seg.weight": (19, 512, 1, 1),
        "auxiliary_head.convs.0.conv.weight": (256, 1024, 3, 3),
        "auxiliary_head.conv_seg.weight": (19, 256, 1, 1),
    }
    for k, s in shapes.items():
        assert tuple(sd[k].shape) == s, k
    # By hand: torchvision's ResNet-50 minus fc is 23,508,032; the deep stem swaps conv1+bn1 (9,408+128) for
    # 864+64 + 9,216+64 + 18,432+128 = 28,768, so +19,232. PSP head: 4 x (2048*512 + 1024) + (4096*512*9 + 1024)
    # + (512*19 + 19). Aux: 1024*256*9 + 512 + 256*19 + 19.
    backbone = 23_508_032 + 28_768 - 9_536
    decode = 4 * (2048 * 512 + 1024) + (4096 * 512 * 9 + 1024) + (512 * 19 + 19)
    auxiliary = 1024 * 256 * 9 + 512 + 256 * 19 + 19
    assert _n_params(m.backbone) == backbone == 23_527_264
    assert _n_params(m.decode_head) == decode == 23_083_539
    assert _n_params(m.auxiliary_head) == auxiliary == 2_364_691
    assert _n_params(m) == 48_975_494
    # Dilations of MMSeg's D8 v1c: stage 3 first block contracted 2 -> 1, stage 4 first block 4 -> 2.
    assert m.backbone.layer3[0].conv2.dilation == (1, 1) and m.backbone.layer3[1].conv2.dilation == (2, 2)
    assert m.backbone.layer4[0].conv2.dilation == (2, 2) and m.backbone.layer4[2].conv2.padding == (4, 4)
    assert m.output_stride == 8 and m.align_corners is False and m.num_classes == 19
    assert all(bn.eps == 1e-5 for bn in m.modules() if isinstance(bn, torch.nn.BatchNorm2d))


def test_fcn_r18_d8_matches_mmseg_names_and_size() -> None:
    m = build("fcn", num_classes=19, backbone="resnet18")
    sd = m.state_dict()
    head = {*_conv_module("decode_head.convs.0"), *_conv_module("decode_head.convs.1"),
            *_conv_module("decode_head.conv_cat"), "decode_head.conv_seg.weight", "decode_head.conv_seg.bias"}
    assert set(sd) == _mmseg_resnet_keys(18) | head | AUX_KEYS
    assert tuple(sd["decode_head.convs.0.conv.weight"].shape) == (128, 512, 3, 3)
    assert tuple(sd["decode_head.conv_cat.conv.weight"].shape) == (128, 640, 3, 3)
    assert tuple(sd["auxiliary_head.convs.0.conv.weight"].shape) == (64, 256, 3, 3)
    # BasicBlock: only conv1 is dilated (MMSeg), conv2 keeps dilation 1.
    assert m.backbone.layer4[1].conv1.dilation == (4, 4) and m.backbone.layer4[1].conv2.dilation == (1, 1)
    assert _n_params(m.backbone) == 11_689_512 - 513_000 + 19_232  # torchvision r18 - fc + deep stem
    assert _n_params(m) == 12_822_342


def test_pspnet_r18_size_and_v1b_stem() -> None:
    assert _n_params(build("pspnet", num_classes=19, backbone="resnet18")) == 12_790_086
    m = build("pspnet", num_classes=19, backbone="resnet50-v1b", aux=False)
    assert m.auxiliary_head is None
    assert {k for k in m.state_dict() if k.startswith("backbone.")} == _mmseg_resnet_keys(50, deep_stem=False)
    assert _n_params(m.backbone) == 23_508_032


@pytest.mark.parametrize(("name", "stride_kwargs", "stride"), [("pspnet", {}, 8), ("fcn", {}, 8), ("pspnet", D16, 16)])
@pytest.mark.parametrize("size", [(64, 80), (67, 85)])
def test_output_shape_and_stride(name: str, stride_kwargs: dict, stride: int, size: tuple[int, int]) -> None:
    m = build(name, num_classes=5, backbone="resnet18", backbone_kwargs={**TINY, **stride_kwargs}).eval()
    assert isinstance(m, Segmentor) and m.output_stride == stride
    with torch.no_grad():
        out = m(torch.randn(2, 3, *size))
    assert out.shape == (2, 5, -(-size[0] // stride), -(-size[1] // stride))


def test_forward_with_aux_and_backward() -> None:
    m = build("pspnet", num_classes=4, backbone="resnet50", backbone_kwargs=TINY).train()
    x = torch.randn(2, 3, 48, 40)
    out, aux = m.forward_with_aux(x)
    assert out.shape == (2, 4, 6, 5) and len(aux) == 1 and aux[0].shape == (2, 4, 6, 5)
    target = torch.randint(0, 4, (2, 48, 40))
    loss = sum(F.cross_entropy(F.interpolate(o, size=x.shape[2:], mode="bilinear"), target) for o in [out, *aux])
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing, missing
    no_aux = build("fcn", num_classes=4, backbone="resnet18", backbone_kwargs=TINY, aux=False)
    assert no_aux.forward_with_aux(x)[1] == []


def test_bad_input_is_named() -> None:
    m = build("fcn", num_classes=3, backbone="resnet18", backbone_kwargs=TINY)
    with pytest.raises(ValueError, match="shape"):
        m(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match="dtype"):
        m(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adaptive_avg_pool_matches_torch(dtype: torch.dtype) -> None:
    sizes = [1, 2, 3, 5, 6, 7, 12, 13, 31, 64, 97]
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for h, w, bins in itertools.product(sizes, sizes, [1, 2, 3, 6, (2, 5)]):
        x = torch.randn(2, 3, h, w, dtype=dtype)
        torch.testing.assert_close(adaptive_avg_pool2d(x, bins), F.adaptive_avg_pool2d(x, bins), atol=tol, rtol=tol)


def test_pspnet_onnx_export_dynamic_hw(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    torch.manual_seed(0)
    m = build("pspnet", num_classes=6, backbone="resnet18", backbone_kwargs=TINY).eval()
    for mod in m.modules():  # non-trivial BN statistics so the parity check means something
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.weight.data.uniform_(0.5, 1.5)
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "pspnet.onnx"
    h, w = torch.export.Dim("height", min=16, max=4096), torch.export.Dim("width", min=16, max=4096)
    torch.onnx.export(m, (torch.randn(1, 3, 64, 96),), str(path), dynamo=True, opset_version=18,
                      input_names=["image"], output_names=["logits"],
                      dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=64), 2: h, 3: w}})
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"AveragePool", "GlobalAveragePool"}, ops  # pooling stays size-agnostic
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims][1] == 3 and all(dims[i].dim_param for i in (0, 2, 3))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 72, 56), (2, 3, 101, 130)]:
        x = torch.randn(*shape)
        (got,) = sess.run(None, {"image": x.numpy()})
        with torch.no_grad():
            ref = m(x).numpy()
        assert got.shape == ref.shape == (shape[0], 6, -(-shape[2] // 8), -(-shape[3] // 8))
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)


def test_build_from_config() -> None:
    cfg = {"name": "pspnet", "num_classes": 3, "backbone": "resnet18", "backbone_kwargs": {**TINY, **D16},
           "aux": False, "pool_scales": [1, 2], "channels": 8}
    m = build_from_config(cfg)
    assert m.output_stride == 16 and m.auxiliary_head is None and len(m.decode_head.psp_modules) == 2
    with pytest.raises(ValueError, match="bogus"):
        build_from_config({**cfg, "bogus": 1})
    with pytest.raises(ValueError, match="num_convs"):  # an FCN option is unknown to PSPNet
        build_from_config({**cfg, "num_convs": 1})
    with pytest.raises(ValueError, match="num_classes"):
        build_from_config({"name": "fcn"})
    with pytest.raises(ValueError, match="nope"):
        build_from_config({"name": "nope", "num_classes": 2})
    with pytest.raises(ValueError, match="resnet7"):
        build("fcn", num_classes=2, backbone="resnet7")
    with pytest.raises(ValueError, match="widths"):
        build("fcn", num_classes=2, backbone_kwargs={"widths": 3})
    with pytest.raises(ValueError, match="depth"):
        ResNet(depth=42)


# ---- DeepLabV3, DeepLabV3+, UPerNet, semantic FPN, MobileNetV2: key lists written from MMSeg's source ----------


def _dsconv(prefix: str) -> list[str]:
    """mmcv DepthwiseSeparableConvModule: depthwise_conv / pointwise_conv, each a ConvModule with BN."""
    return [*_conv_module(f"{prefix}.depthwise_conv"), *_conv_module(f"{prefix}.pointwise_conv")]


SEG = {"decode_head.conv_seg.weight", "decode_head.conv_seg.bias"}


def _mmseg_mobilenet_v2_keys() -> set[str]:
    """MMSeg MobileNetV2: conv1 ConvModule; layer{i}.{b}.conv.{0,1[,2]} ConvModules (no expand conv in layer1)."""
    keys = _conv_module("backbone.conv1")
    for layer, n_blocks in enumerate((1, 2, 3, 4, 3, 3, 1), start=1):
        for b in range(n_blocks):
            for c in range(2 if layer == 1 else 3):
                keys += _conv_module(f"backbone.layer{layer}.{b}.conv.{c}")
    return set(keys)


def test_deeplabv3_r50_d8_matches_mmseg() -> None:
    m = build("deeplabv3", num_classes=19)
    sd = m.state_dict()
    head = {*_conv_module("decode_head.image_pool.1"), *_conv_module("decode_head.bottleneck"), *SEG}
    head |= {k for i in range(4) for k in _conv_module(f"decode_head.aspp_modules.{i}")}
    assert set(sd) == _mmseg_resnet_keys(50) | head | AUX_KEYS
    assert tuple(sd["decode_head.image_pool.1.conv.weight"].shape) == (512, 2048, 1, 1)
    assert tuple(sd["decode_head.aspp_modules.0.conv.weight"].shape) == (512, 2048, 1, 1)
    assert tuple(sd["decode_head.aspp_modules.3.conv.weight"].shape) == (512, 2048, 3, 3)
    assert tuple(sd["decode_head.bottleneck.conv.weight"].shape) == (512, 2560, 3, 3)
    convs = [m.decode_head.aspp_modules[i].conv for i in range(4)]
    assert [c.dilation[0] for c in convs] == [1, 12, 24, 36] and [c.padding[0] for c in convs] == [0, 12, 24, 36]
    # By hand: image pool and the 1x1 branch are 2048*512 + 2*512 each; three 3x3 branches 2048*512*9 + 1024;
    # bottleneck 5*512*512*9 + 1024; conv_seg 512*19 + 19.
    decode = 2 * (2048 * 512 + 1024) + 3 * (2048 * 512 * 9 + 1024) + (2560 * 512 * 9 + 1024) + (512 * 19 + 19)
    assert _n_params(m.decode_head) == decode == 42_221_075
    assert _n_params(m) == 23_527_264 + decode + 2_364_691 == 68_113_030
    assert m.output_stride == 8
    # Output stride 16 (MMSeg -d16): rates halve.
    d16 = build("deeplabv3", num_classes=3, backbone="resnet18", backbone_kwargs={**TINY, "output_stride": 16})
    assert d16.output_stride == 16 and d16.decode_head.dilations == (1, 6, 12, 18)


def test_deeplabv3plus_r50_d8_matches_mmseg() -> None:
    m = build("deeplabv3plus", num_classes=19)
    sd = m.state_dict()
    head = {*_conv_module("decode_head.image_pool.1"), *_conv_module("decode_head.aspp_modules.0"), *SEG}
    head |= {k for i in (1, 2, 3) for k in _dsconv(f"decode_head.aspp_modules.{i}")}
    head |= {*_conv_module("decode_head.bottleneck"), *_conv_module("decode_head.c1_bottleneck")}
    head |= {*_dsconv("decode_head.sep_bottleneck.0"), *_dsconv("decode_head.sep_bottleneck.1")}
    assert set(sd) == _mmseg_resnet_keys(50) | head | AUX_KEYS
    shapes = {
        "decode_head.aspp_modules.1.depthwise_conv.conv.weight": (2048, 1, 3, 3),
        "decode_head.aspp_modules.1.pointwise_conv.conv.weight": (512, 2048, 1, 1),
        "decode_head.bottleneck.conv.weight": (512, 2560, 3, 3),  # a plain 3x3 ConvModule, as MMSeg's
        "decode_head.c1_bottleneck.conv.weight": (48, 256, 1, 1),
        "decode_head.sep_bottleneck.0.depthwise_conv.conv.weight": (560, 1, 3, 3),
        "decode_head.sep_bottleneck.0.pointwise_conv.conv.weight": (512, 560, 1, 1),
        "decode_head.sep_bottleneck.1.pointwise_conv.conv.weight": (512, 512, 1, 1),
    }
    for k, s in shapes.items():
        assert tuple(sd[k].shape) == s, k
    assert m.decode_head.aspp_modules[3].depthwise_conv.conv.dilation == (36, 36)
    # By hand: a depthwise separable module with BN on both parts is Cin*9 + 2*Cin + Cin*Cout + 2*Cout.
    def ds(cin: int, cout: int) -> int:
        return cin * 9 + 2 * cin + cin * cout + 2 * cout

    decode = (2 * (2048 * 512 + 1024) + 3 * ds(2048, 512) + (2560 * 9 * 512 + 1024) + (256 * 48 + 96)
              + ds(560, 512) + ds(512, 512) + (512 * 19 + 19))
    assert _n_params(m.decode_head) == decode == 17_697_923
    assert _n_params(m) == 23_527_264 + decode + 2_364_691 == 43_589_878  # real MMSeg 1.2.2: 43,589,878
    assert m.output_stride == 4  # logits at the resolution of layer1


def test_upernet_r50_matches_mmseg() -> None:
    m = build("upernet", num_classes=19)
    sd = m.state_dict()
    head = {*_conv_module("decode_head.bottleneck"), *_conv_module("decode_head.fpn_bottleneck"), *SEG}
    head |= {k for i in range(4) for k in _conv_module(f"decode_head.psp_modules.{i}.1")}
    head |= {k for i in range(3) for k in (*_conv_module(f"decode_head.lateral_convs.{i}"),
                                           *_conv_module(f"decode_head.fpn_convs.{i}"))}
    assert set(sd) == _mmseg_resnet_keys(50) | head | AUX_KEYS
    assert tuple(sd["decode_head.lateral_convs.0.conv.weight"].shape) == (512, 256, 1, 1)
    assert tuple(sd["decode_head.lateral_convs.2.conv.weight"].shape) == (512, 1024, 1, 1)
    assert tuple(sd["decode_head.bottleneck.conv.weight"].shape) == (512, 4096, 3, 3)
    assert tuple(sd["decode_head.fpn_bottleneck.conv.weight"].shape) == (512, 2048, 3, 3)
    # Undilated ResNetV1c (strides 1,2,2,2): same weights as D8, different strides.
    assert m.backbone.layer4[0].conv2.stride == (2, 2) and m.backbone.layer4[1].conv2.dilation == (1, 1)
    decode = (4 * (2048 * 512 + 1024) + (4096 * 512 * 9 + 1024) + ((256 + 512 + 1024) * 512 + 3 * 1024)
              + 3 * (512 * 512 * 9 + 1024) + (2048 * 512 * 9 + 1024) + (512 * 19 + 19))
    assert _n_params(m.decode_head) == decode == 40_523_283
    assert _n_params(m) == 23_527_264 + decode + 2_364_691 == 66_415_238
    assert m.output_stride == 4
    r18 = build("upernet", num_classes=19, backbone="resnet18")  # MMSeg upernet_r18: channels stay 512 / 256
    assert r18.decode_head.channels == 512 and r18.auxiliary_head.channels == 256


def test_fpn_r50_matches_mmseg() -> None:
    m = build("fpn", num_classes=19)
    sd = m.state_dict()
    neck = {f"neck.{kind}.{i}.conv.{p}" for kind in ("lateral_convs", "fpn_convs") for i in range(4)
            for p in ("weight", "bias")}
    towers = {"0.0", "1.0", "2.0", "2.2", "3.0", "3.2", "3.4"}  # conv, upsample, conv, ... per level
    head = {k for t in towers for k in _conv_module(f"decode_head.scale_heads.{t}")} | SEG
    assert set(sd) == _mmseg_resnet_keys(50) | neck | head  # no auxiliary head in MMSeg's fpn_r50
    assert tuple(sd["neck.lateral_convs.3.conv.weight"].shape) == (256, 2048, 1, 1)
    assert tuple(sd["decode_head.scale_heads.3.4.conv.weight"].shape) == (128, 128, 3, 3)
    neck_n = (256 + 512 + 1024 + 2048) * 256 + 4 * 256 + 4 * (256 * 256 * 9 + 256)
    towers_n = 4 * (256 * 128 * 9 + 256) + 3 * (128 * 128 * 9 + 256)
    assert _n_params(m.neck) == neck_n and _n_params(m.decode_head) == towers_n + 128 * 19 + 19
    assert _n_params(m) == 28_497_907 and m.output_stride == 4


def test_mobilenet_v2_d8_matches_mmseg() -> None:
    m = build("deeplabv3plus", num_classes=19, backbone="mobilenetv2")
    sd = m.state_dict()
    assert {k for k in sd if k.startswith("backbone.")} == _mmseg_mobilenet_v2_keys()
    shapes = {
        "backbone.conv1.conv.weight": (32, 3, 3, 3),
        "backbone.layer1.0.conv.0.conv.weight": (32, 1, 3, 3),  # depthwise, no expand conv
        "backbone.layer1.0.conv.1.conv.weight": (16, 32, 1, 1),
        "backbone.layer2.0.conv.0.conv.weight": (96, 16, 1, 1),
        "backbone.layer7.0.conv.2.conv.weight": (320, 960, 1, 1),
        "decode_head.image_pool.1.conv.weight": (512, 320, 1, 1),
        "decode_head.c1_bottleneck.conv.weight": (48, 24, 1, 1),
        "auxiliary_head.convs.0.conv.weight": (256, 96, 3, 3),
    }
    for k, s in shapes.items():
        assert tuple(sd[k].shape) == s, k
    bb = m.backbone
    # m-v2-d8: strides (1,2,2,1,1,1,1), dilations (1,1,1,2,2,4,4) on the first block of each layer only.
    assert bb.layer4[0].conv[1].conv.stride == (1, 1) and bb.layer4[0].conv[1].conv.dilation == (2, 2)
    assert bb.layer4[1].conv[1].conv.dilation == (1, 1) and bb.layer6[0].conv[1].conv.padding == (4, 4)
    assert isinstance(bb.layer1[0].conv[0].activate, torch.nn.ReLU6)
    assert isinstance(bb.layer1[0].conv[1].activate, torch.nn.Identity)  # linear bottleneck
    assert bb.out_channels == (24, 32, 96, 320) and bb.output_stride == 8 and m.output_stride == 4
    # torchvision's mobilenet_v2 (3,504,872) minus classifier (1,281,000) and its last 1x1 conv (320*1280 + 2*1280).
    assert _n_params(bb) == 3_504_872 - 1_281_000 - 412_160 == 1_811_712
    assert build("pspnet", num_classes=19, backbone="mobilenetv2").decode_head.channels == 512


@pytest.mark.parametrize("spec", [{"output_stride": 16}, D16])
def test_fcn_d16_variant(spec: dict) -> None:
    m = build("fcn", num_classes=4, backbone="resnet18", backbone_kwargs={**TINY, **spec}).eval()
    assert m.output_stride == 16 and m.backbone.layer3[0].conv1.stride == (2, 2)
    with torch.no_grad():
        assert m(torch.randn(1, 3, 64, 96)).shape == (1, 4, 4, 6)
    with pytest.raises(ValueError, match="output_stride"):
        build("fcn", num_classes=4, backbone_kwargs={"output_stride": 12})


def test_head_needing_a_level_the_backbone_lacks_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="stride 32.*UNet"):
        build("pspnet", num_classes=3, backbone="unet")
