"""ViT backbone, SETR and Segmenter: MMSeg parameter counts and key names, position-embedding resizing, errors.

Reference numbers come from MMSegmentation 1.2.2 itself (its config files built with random weights): the full-size
models below have exactly these parameter counts there, and with MMSeg's state dict loaded (``strict=True``) our
eval logits match MMSeg's to <= 4e-5 (mask transformer; <= 2e-6 for the others) at 64x128, 67x85 and 512x512.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.models import build, build_backbone, model_info
from training.models.backbones.vit import VisionTransformer, resize_pos_embed
from training.models.heads.setr import SETRMLAHead, SETRUPHead
from training.models.necks.mla import MLANeck

TINY = {"embed_dims": 32, "num_layers": 2, "num_heads": 2, "img_size": 64}


pytestmark = [pytest.mark.usefixtures("torch_single_thread")]


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# MMSeg 1.2.2, ADE20K (150 classes) configs, auxiliary heads included.
MMSEG_PARAMS = [
    ("setr_naive", {}, 305_557_592),  # setr_vit-l_naive_8xb2-160k_ade20k-512x512
    ("setr_pup", {}, 317_290_072),  # setr_vit-l_pup_8xb2-160k_ade20k-512x512
    ("setr_mla", {}, 309_569_262),  # setr_vit-l-mla_8xb1-160k_ade20k-512x512
    ("segmenter_mask", {}, 6_713_196),  # segmenter_vit-t_mask_8xb1-160k_ade20k-512x512
    ("segmenter_mask", {"backbone": "vit-small"}, 26_033_580),  # segmenter_vit-s_mask
    ("segmenter_mask", {"backbone": "vit-base"}, 102_496_812),  # segmenter_vit-b_mask
    ("segmenter_linear", {}, 22_040_982),  # segmenter_vit-s_fcn_8xb1-160k_ade20k-512x512
]


@pytest.mark.parametrize(("name", "kwargs", "expected"), MMSEG_PARAMS)
def test_full_size_parameter_counts_match_mmseg(name: str, kwargs: dict, expected: int) -> None:
    with torch.device("meta"):
        m = build(name, num_classes=150, **kwargs)
    assert _n_params(m) == expected


@pytest.mark.parametrize(("variant", "expected"), [
    ("tiny", 5_523_840), ("small", 21_664_512), ("base", 85_796_352), ("large", 303_298_560),
])
def test_backbone_parameter_counts_match_mmseg(variant: str, expected: int) -> None:
    """MMSeg ``VisionTransformer`` at its default img_size 224 (no patch bias, no final norm)."""
    with torch.device("meta"):
        bb = build_backbone(f"vit-{variant}", output_stride=16)
    assert _n_params(bb) == expected
    assert bb.out_indices == (bb.num_layers - 1,) and bb.out_strides == (16,) and bb.width_scale == 1.0


def test_mmseg_key_names() -> None:
    with torch.device("meta"):
        naive = build("setr_naive", num_classes=150).state_dict()
        mla = build("setr_mla", num_classes=150).state_dict()
        mask = build("segmenter_mask", num_classes=150).state_dict()
    assert tuple(naive["backbone.pos_embed"].shape) == (1, 32 * 32 + 1, 1024)
    for key in ("backbone.cls_token", "backbone.patch_embed.projection.weight", "backbone.layers.0.ln1.weight",
                "backbone.layers.23.attn.attn.in_proj_weight", "backbone.layers.23.attn.attn.in_proj_bias",
                "backbone.layers.23.attn.attn.out_proj.weight", "backbone.layers.0.ln2.bias",
                "backbone.layers.0.ffn.layers.0.0.weight", "backbone.layers.0.ffn.layers.1.bias",
                "decode_head.norm.weight", "decode_head.up_convs.0.0.conv.weight",
                "decode_head.up_convs.0.0.bn.running_var", "decode_head.conv_seg.weight",
                "auxiliary_head.0.up_convs.1.0.conv.weight", "auxiliary_head.2.conv_seg.bias"):
        assert key in naive, key
    assert "backbone.patch_embed.projection.bias" not in naive and "backbone.ln1.weight" not in naive
    assert "auxiliary_head.3.conv_seg.weight" not in naive
    for key in ("neck.norm.3.weight", "neck.mla.channel_proj.0.conv.weight", "neck.mla.feat_extract.3.bn.weight",
                "decode_head.up_convs.3.1.conv.weight", "auxiliary_head.3.conv_seg.weight"):
        assert key in mla, key
    for key in ("backbone.ln1.weight", "decode_head.cls_emb", "decode_head.dec_proj.weight",
                "decode_head.patch_proj.weight", "decode_head.classes_proj.weight", "decode_head.decoder_norm.bias",
                "decode_head.mask_norm.weight", "decode_head.layers.1.attn.attn.in_proj_weight"):
        assert key in mask, key
    assert tuple(mask["decode_head.cls_emb"].shape) == (1, 150, 192)
    assert not any(k.startswith("decode_head.conv_seg") for k in mask)


def test_setr_defaults_strides_and_aux_heads() -> None:
    with torch.device("meta"):
        naive, pup, mla = (build(n, num_classes=19) for n in ("setr_naive", "setr_pup", "setr_mla"))
        base = build("setr_pup", num_classes=19, backbone="vit-base")
    assert naive.backbone.out_indices == (9, 14, 19, 23) and mla.backbone.out_indices == (5, 11, 17, 23)
    assert not mla.backbone.with_cls_token and naive.backbone.interpolate_mode == "bilinear"
    assert base.backbone.out_indices == (2, 5, 8, 11)
    assert (naive.output_stride, pup.output_stride, mla.output_stride) == (4, 1, 4)
    assert pup.logits_hw(67, 85) == (80, 96)
    assert len(naive.auxiliary_head) == 3 and len(mla.auxiliary_head) == 4
    assert [h.in_index for h in naive.auxiliary_head] == [0, 1, 2] and naive.decode_head.in_index == 3
    with torch.device("meta"):
        assert build("setr_naive", num_classes=19, aux=False).auxiliary_head is None


def test_tiny_setr_pup_forward_at_odd_size() -> None:
    m = build("setr_pup", num_classes=3, backbone_kwargs=TINY).eval()
    assert m.backbone.out_indices == (0, 1) and len(m.auxiliary_head) == 1
    with torch.no_grad():
        out, aux = m.forward_with_aux(torch.randn(1, 3, 67, 85))
    assert out.shape == (1, 3, 80, 96) and aux[0].shape == (1, 3, 80, 96)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_pos_embed_resize_is_identity_at_training_grid(mode: str) -> None:
    pos = torch.randn(1, 1 + 4 * 3, 8)
    assert torch.equal(resize_pos_embed(pos, (4, 3), (4, 3), mode), pos)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_pos_embed_resize_matches_interpolate_at_odd_grid(mode: str) -> None:
    pos = torch.randn(1, 1 + 4 * 4, 8)
    out = resize_pos_embed(pos, (5, 7), (4, 4), mode)
    grid = pos[0, 1:].T.reshape(1, 8, 4, 4)  # channel-first, row-major tokens
    ref = F.interpolate(grid, size=(5, 7), mode=mode, align_corners=False)[0].reshape(8, 35).T
    assert out.shape == (1, 36, 8)
    assert torch.equal(out[0, 0], pos[0, 0])
    torch.testing.assert_close(out[0, 1:], ref)


def test_bicubic_and_bilinear_differ_only_off_the_training_grid() -> None:
    torch.manual_seed(0)
    bil = VisionTransformer(interpolate_mode="bilinear", **TINY).eval()
    bic = VisionTransformer(interpolate_mode="bicubic", **TINY).eval()
    bic.load_state_dict(bil.state_dict())
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        torch.testing.assert_close(bil(x)[0], bic(x)[0])
        x = torch.randn(1, 3, 67, 85)
        a, b = bil(x)[0], bic(x)[0]
    assert a.shape == b.shape == (1, 32, 5, 6)
    assert (a - b).abs().max() > 1e-4


def test_corner_padding_equals_explicit_zero_padding() -> None:
    torch.manual_seed(0)
    m = VisionTransformer(**TINY).eval()
    x = torch.randn(2, 3, 67, 85)
    padded = F.pad(x, [0, 96 - 85, 0, 80 - 67])
    with torch.no_grad():
        torch.testing.assert_close(m(x)[0], m(padded)[0])
        same = VisionTransformer(patch_pad="same", **TINY).eval()
        same.load_state_dict(m.state_dict())
        assert same(x)[0].shape == (2, 32, 5, 6)
        assert (same(x)[0] - m(x)[0]).abs().max() > 1e-4


def test_backbone_options() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 40, 50)
    m = VisionTransformer(output_cls_token=True, final_norm=True, out_indices=(0, 1), **TINY).eval()
    outs = m(x)
    assert len(outs) == 2 and outs[0][0].shape == (2, 32, 3, 4) and outs[0][1].shape == (2, 32)
    assert m.ln1 is not None and m.level_indices == (0, 0, 0, 1)
    nocls = VisionTransformer(with_cls_token=False, pre_norm=True, patch_norm=True, patch_bias=True, **TINY)
    assert {"ln_pre.weight", "patch_embed.norm.weight", "patch_embed.projection.bias"} <= set(nocls.state_dict())
    assert nocls(x)[0].is_contiguous()
    drop = VisionTransformer(drop_path_rate=0.5, **TINY).train()
    assert drop.layers[0].ffn.dropout_layer.__class__.__name__ == "Identity"  # linspace starts at 0
    assert drop.layers[1].ffn.dropout_layer.drop_prob == 0.5
    assert torch.isfinite(drop(x)[0]).all()


def test_width_scale_and_registry() -> None:
    with torch.device("meta"):
        bb = build_backbone("vit-large", {"embed_dims": 32, "num_heads": 2, "output_stride": 16})
    assert bb.width_scale == 32 / 1024
    for name in ("setr_naive", "setr_pup", "setr_mla", "segmenter_linear", "segmenter_mask"):
        assert all(model_info(name)["capabilities"].values()), name


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"interpolate_mode": "nearest"}, "interpolate_mode"),
    ({"with_cls_token": False, "output_cls_token": True}, "output_cls_token"),
    ({"out_indices": (1, 0)}, "out_indices"),
    ({"out_indices": (2,)}, "out_indices"),
    ({"num_heads": 3}, "divisible"),
    ({"patch_pad": "edge"}, "patch_pad"),
    ({"img_size": 8}, "img_size"),
])
def test_backbone_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        VisionTransformer(**{**TINY, **kwargs})


def test_input_and_build_errors() -> None:
    m = VisionTransformer(**TINY)
    with pytest.raises(ValueError, match="expected"):
        m(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match="backbone must be"):
        build("setr_naive", num_classes=3, backbone="resnet50")
    with pytest.raises(ValueError, match="unknown backbone_kwargs"):
        build("segmenter_linear", num_classes=3, backbone_kwargs={"depth": 3})
    with pytest.raises(ValueError, match="output stride"):
        build_backbone("vit-tiny", output_stride=8)
    with pytest.raises(ValueError, match="aux_channels"):
        build("setr_mla", num_classes=3, backbone_kwargs=TINY, aux_channels=64)
    with pytest.raises(ValueError, match="channels"):
        SETRMLAHead([8, 8], 20, num_classes=3, in_index=(0, 1), mla_channels=4)
    with pytest.raises(ValueError, match="kernel_size"):
        SETRUPHead(8, 8, num_classes=3, kernel_size=5)
    with pytest.raises(ValueError, match="feature maps"):
        MLANeck([8, 8], 4)([torch.randn(1, 8, 2, 2)])
