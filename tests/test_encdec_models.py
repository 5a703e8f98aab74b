"""Encoder-decoder segmentors: U-Net (MMSeg), ENet, SegNet, LinkNet and PAN (smp layouts).

Reference numbers: U-Net parameter counts of MMSeg 1.2.2's own configs (``unet-s5-d16_fcn`` on Cityscapes, 19
classes; ``_deeplabv3``/``_pspnet`` on DRIVE, 2 classes) built with random weights; LinkNet/PAN counts of
segmentation_models.pytorch 0.6.0 (``smp.Linknet("resnet18"|"resnet34")``, ``smp.PAN("resnet50")``, 19 classes),
whose state dicts load into ours after the prefix renames in the module docstrings (logits matched to <= 5e-7).
ENet and SegNet are checked against their papers' published sizes (0.37M; 29.5M).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.models import build, build_backbone, build_from_config
from training.models.heads.segnet import SegNetHead
from training.models.heads.unpool import unpool_like

pytestmark = [pytest.mark.usefixtures("torch_single_thread")]


def _params(name: str, **kwargs) -> tuple[int, dict[str, torch.Size]]:
    with torch.device("meta"):
        m = build(name, **kwargs)
    return sum(p.numel() for p in m.parameters()), {k: v.shape for k, v in m.state_dict().items()}


@pytest.mark.parametrize(("decoder", "num_classes", "expected"), [
    ("fcn", 19, 29_062_886), ("aspp", 2, 29_064_996), ("psp", 2, 29_046_276),
])
def test_unet_params_match_mmseg(decoder: str, num_classes: int, expected: int) -> None:
    n, _ = _params("unet", num_classes=num_classes, decoder=decoder)
    assert n == expected


def test_unet_mmseg_key_names() -> None:
    _, keys = _params("unet", num_classes=19)
    assert keys["backbone.encoder.0.0.convs.0.conv.weight"] == (64, 3, 3, 3)
    assert keys["backbone.encoder.4.1.convs.1.conv.weight"] == (1024, 1024, 3, 3)  # encoder.4.0 is the max-pool
    assert keys["backbone.decoder.3.upsample.interp_upsample.1.conv.weight"] == (512, 1024, 1, 1)
    assert keys["backbone.decoder.0.conv_block.convs.0.conv.weight"] == (64, 128, 3, 3)
    assert "backbone.decoder.0.conv_block.convs.1.bn.running_var" in keys
    assert keys["decode_head.convs.0.conv.weight"] == (64, 64, 3, 3)
    assert keys["auxiliary_head.convs.0.conv.weight"] == (64, 128, 3, 3)
    assert not any(k.startswith("backbone.encoder.1.0.") for k in keys)


def test_unet_shapes_and_size_divisor() -> None:
    m = build("unet", num_classes=3, backbone_kwargs={"base_channels": 4}).eval()
    assert m.size_divisor == 16 and m.output_stride == 1
    assert m.backbone.out_strides == (16, 8, 4, 2, 1) and m.backbone.out_channels == (64, 32, 16, 8, 4)
    with torch.no_grad():
        assert m(torch.randn(1, 3, 32, 48)).shape == (1, 3, 32, 48)
        with pytest.raises(ValueError, match="multiples of 16"):
            m(torch.randn(1, 3, 32, 40))
        with pytest.raises(ValueError, match="multiples of 16"):
            m.backbone(torch.randn(1, 3, 24, 32))
    # stride-2 encoder stages instead of max-pools, and a stage without downsampling (1x1 "upsample" conv)
    bb = build_backbone("unet", {"base_channels": 4, "num_stages": 3, "strides": (1, 2, 1),
                                 "enc_num_convs": (1, 1, 1), "dec_num_convs": (1, 1), "downsamples": (False, False),
                                 "enc_dilations": (1, 1, 1), "dec_dilations": (1, 1)})
    assert bb.size_divisor == 2 and bb.out_strides == (2, 2, 1)
    assert [o.shape[2] for o in bb(torch.randn(1, 3, 16, 16))] == [8, 8, 16]


def test_unet_options_and_errors() -> None:
    with pytest.raises(ValueError, match="decoder must be"):
        build("unet", num_classes=2, decoder="uper")
    with pytest.raises(ValueError, match="output stride is fixed"):
        build("unet", num_classes=2, backbone_kwargs={"output_stride": 8})
    with pytest.raises(ValueError, match="needs a UNet backbone"):
        build("unet", num_classes=2, backbone="resnet18")
    with pytest.raises(ValueError, match="strides needs 5 entries"):
        build_backbone("unet", {"strides": (1, 1)})
    m = build_from_config({"name": "unet", "num_classes": 2, "aux": False, "decoder": "psp",
                           "backbone_kwargs": {"base_channels": 4}})
    assert m.auxiliary_head is None and m.decode_head.channels == 1  # MMSeg's 16, scaled by 4/64


def test_enet_matches_the_paper() -> None:
    n, keys = _params("enet", num_classes=19)
    assert 0.35e6 < n < 0.38e6  # "0.37 M" in the paper (Table 3); ours: 364,311 with 19 classes
    assert n == 364_311
    assert keys["backbone.initial.conv.weight"] == (13, 3, 3, 3)
    assert keys["backbone.stage1.0.reduce.0.weight"] == (16, 16, 2, 2)  # 2x2 stride-2 projection
    assert keys["backbone.stage2.3.conv.0.weight"] == (32, 32, 1, 5)  # asymmetric 1x5 then 5x1
    assert keys["backbone.stage2.3.conv.1.weight"] == (32, 32, 5, 1)
    assert keys["backbone.stage3.7.act.weight"] == (128,)  # per-channel PReLU
    assert keys["decode_head.stage4.0.ext.3.weight"] == (16, 16, 3, 3)  # transposed conv
    assert keys["decode_head.conv_seg.weight"] == (16, 19, 2, 2)  # fullconv


def test_enet_full_resolution_and_size_divisor() -> None:
    m = build("enet", num_classes=4).eval()
    assert m.size_divisor == 8 and m.output_stride == 1
    assert m.backbone.stage2[8].conv[0].dilation == (16, 16)
    with torch.no_grad():
        assert m(torch.randn(1, 3, 32, 48)).shape == (1, 4, 32, 48)
        with pytest.raises(ValueError, match="multiples of 8"):
            m(torch.randn(1, 3, 32, 44))
    assert len(build("enet", num_classes=4, aux=True).forward_with_aux(torch.randn(2, 3, 16, 16))[1]) == 1


def test_segnet_matches_the_paper() -> None:
    n, keys = _params("segnet", num_classes=11)  # CamVid's 11 classes
    assert 29.3e6 < n < 29.6e6  # "29.5 M" in the paper; ours: no conv bias before BN
    assert n == 29_441_419
    enc = sum(v.numel() for k, v in keys.items() if k.startswith("backbone.") and "running" not in k
              and "num_batches" not in k)
    assert enc == 14_718_912  # VGG16's 13 convs (14.71M) + BN
    assert keys["backbone.stages.4.2.conv.weight"] == (512, 512, 3, 3)
    assert keys["decode_head.stages.3.2.conv.weight"] == (256, 512, 3, 3)
    assert keys["decode_head.conv_seg.weight"] == (11, 64, 3, 3)


def test_segnet_any_size() -> None:
    m = build("segnet", num_classes=3, backbone_kwargs={"channels": [4, 4, 8, 8, 8], "depths": [1, 1, 1, 1, 1]})
    with torch.no_grad():
        assert m.eval()(torch.randn(1, 3, 67, 85)).shape == (1, 3, 67, 85)
    with pytest.raises(ValueError, match="one depth >= 1 per encoder stage"):
        SegNetHead([8, 8, 8], 8, num_classes=2, in_index=(0, 1, 2), depths=(1, 1, 1))


@pytest.mark.parametrize(("backbone", "expected"), [("resnet18-v1b", 11_664_371), ("resnet34-v1b", 21_772_531)])
def test_linknet_params_match_smp(backbone: str, expected: int) -> None:
    n, keys = _params("linknet", num_classes=19, backbone=backbone)
    assert n == expected
    assert keys["backbone.conv1.weight"] == (64, 3, 7, 7)
    assert keys["decode_head.blocks.0.block.1.0.weight"] == (128, 128, 4, 4)  # smp's names
    assert keys["decode_head.blocks.4.block.2.0.weight"] == (32, 16, 1, 1)
    assert keys["decode_head.conv_seg.weight"] == (19, 32, 1, 1)


def test_linknet_any_size_and_errors() -> None:
    m = build("linknet", num_classes=2, backbone_kwargs={"base_channels": 8, "stem_channels": 8}).eval()
    assert m.output_stride == 1
    with torch.no_grad():
        assert m(torch.randn(1, 3, 67, 85)).shape == (1, 2, 68, 86) == (1, 2, *m.logits_hw(67, 85))
    with pytest.raises(ValueError, match="must be a ResNet"):
        build("linknet", num_classes=2, backbone="mobilenetv2")
    with pytest.raises(ValueError, match="output stride is fixed"):
        build("linknet", num_classes=2, backbone_kwargs={"output_stride": 8})


def test_pan_params_match_smp() -> None:
    n, keys = _params("pan", num_classes=19)
    assert n == 24_265_018
    assert keys["decode_head.fpa.down1.1.conv.weight"] == (1, 2048, 7, 7)
    assert keys["decode_head.fpa.down3.2.conv.weight"] == (1, 1, 3, 3)
    assert keys["decode_head.gau1.conv1.1.bn.weight"] == (32,)
    assert keys["decode_head.gau1.conv2.conv.weight"] == (32, 256, 3, 3)
    assert keys["decode_head.conv_seg.weight"] == (19, 32, 3, 3)


def test_pan_output_stride_and_dilation() -> None:
    with torch.device("meta"):
        m = build("pan", num_classes=2)
    assert m.output_stride == 4 and m.backbone.out_strides == (4, 8, 16, 16)
    assert m.backbone.layer4[0].conv2.dilation == (2, 2)  # smp dilates every conv of layer4
    m = build("pan", num_classes=2, backbone="mobilenetv2", backbone_kwargs={"widen_factor": 0.25}).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 67, 85)).shape == (1, 2, 17, 22)


def test_unpool_like_is_max_unpool_with_encoder_indices() -> None:
    g = torch.Generator().manual_seed(0)
    for h, w in [(8, 10), (7, 9), (33, 64)]:
        skip = torch.randint(-2, 3, (2, 3, h, w), generator=g).float().relu()  # many ties: the first max wins
        pooled, idx = F.max_pool2d(skip, 2, 2, return_indices=True)
        x = torch.randn(pooled.shape, generator=g)
        ref = torch.nn.MaxUnpool2d(2, 2)(x, idx, output_size=skip.shape[2:])
        assert torch.equal(unpool_like(x, skip), ref)
    with pytest.raises(ValueError, match="channels"):
        unpool_like(torch.randn(1, 2, 4, 4), torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="does not match the 2x2 pooling"):
        unpool_like(torch.randn(1, 3, 4, 4), torch.randn(1, 3, 10, 8))
