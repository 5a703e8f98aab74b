"""SegFormer / MiT: MMSeg's parameter counts and state-dict names, the attention against nn.MultiheadAttention, options.

Reference counts come from MMSeg 1.2.2's own configs built with random weights (``segformer_mit-b*``); the same
checks loaded those state dicts with ``strict=True`` and matched their decode-head logits to ~2e-7.
"""

from __future__ import annotations

import pytest
import torch

from training.models import build, build_backbone
from training.models.backbones.mit import MixVisionTransformer, MultiheadAttentionCore
from training.models.zoo.segformer import TINY_MIT

# (config, num_classes) -> MMSeg's parameter count.
MMSEG_PARAMS = {
    ("mit-b0", 19): 3_720_051,  # segformer_mit-b0_8xb1-160k_cityscapes-1024x1024
    ("mit-b0", 150): 3_753_718,  # segformer_mit-b0_8xb2-160k_ade20k-512x512
    ("mit-b2", 150): 24_761_686,  # segformer_mit-b2_8xb2-160k_ade20k-512x512
    ("mit-b5", 19): 81_974_739,  # segformer_mit-b5_8xb1-160k_cityscapes-1024x1024
    ("mit-b5", 150): 82_008_406,  # segformer_mit-b5_8xb2-160k_ade20k-512x512
}
LAYERS = {"mit-b0": (2, 2, 2, 2), "mit-b2": (3, 4, 6, 3), "mit-b5": (3, 6, 40, 3)}


pytestmark = [pytest.mark.usefixtures("torch_single_thread")]


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _meta(backbone: str, num_classes: int, **kw) -> torch.nn.Module:
    with torch.device("meta"):
        return build("segformer", num_classes=num_classes, backbone=backbone, **kw)


def _mmseg_keys(num_layers: tuple[int, ...], sr_ratios: tuple[int, ...] = (8, 4, 2, 1)) -> set[str]:
    """MMSeg's EncoderDecoder(MixVisionTransformer, SegformerHead) state-dict keys, enumerated independently."""
    wb = ("weight", "bias")
    bn = (*wb, "running_mean", "running_var", "num_batches_tracked")
    keys = []
    for i, (n, sr) in enumerate(zip(num_layers, sr_ratios)):
        s = f"backbone.layers.{i}"
        keys += [f"{s}.0.projection.{k}" for k in wb] + [f"{s}.0.norm.{k}" for k in wb] + [f"{s}.2.{k}" for k in wb]
        for j in range(n):
            b = f"{s}.1.{j}"
            keys += [f"{b}.{m}.{k}" for m in ("norm1", "norm2", "attn.attn.out_proj") for k in wb]
            keys += [f"{b}.attn.attn.in_proj_{k}" for k in wb]
            keys += [f"{b}.ffn.layers.{x}.{k}" for x in (0, 1, 4) for k in wb]
            if sr > 1:
                keys += [f"{b}.attn.{m}.{k}" for m in ("sr", "norm") for k in wb]
    for i in range(4):
        keys += [f"decode_head.convs.{i}.conv.weight"] + [f"decode_head.convs.{i}.bn.{k}" for k in bn]
    keys += ["decode_head.fusion_conv.conv.weight"] + [f"decode_head.fusion_conv.bn.{k}" for k in bn]
    keys += ["decode_head.conv_seg.weight", "decode_head.conv_seg.bias"]
    return set(keys)


@pytest.mark.parametrize(("backbone", "num_classes"), list(MMSEG_PARAMS))
def test_mmseg_parameter_counts(backbone: str, num_classes: int) -> None:
    m = _meta(backbone, num_classes)
    assert _n_params(m) == MMSEG_PARAMS[(backbone, num_classes)]
    assert m.auxiliary_head is None and m.output_stride == 4


@pytest.mark.parametrize("backbone", ["mit-b0", "mit-b5"])
def test_mmseg_state_dict_names(backbone: str) -> None:
    sd = _meta(backbone, 19).state_dict()
    assert set(sd) == _mmseg_keys(LAYERS[backbone])
    dims = 32 if backbone == "mit-b0" else 64
    assert sd["backbone.layers.0.1.0.attn.attn.in_proj_weight"].shape == (3 * dims, dims)
    assert sd["backbone.layers.0.1.0.attn.sr.weight"].shape[-2:] == (8, 8)
    assert "backbone.layers.3.1.0.attn.sr.weight" not in sd  # sr_ratio 1 in the last stage


def test_backbone_attributes() -> None:
    with torch.device("meta"):
        b0, b2 = build_backbone("mit-b0"), build_backbone("mit-b2")
        tiny = build_backbone("mit-b0", TINY_MIT)
    assert b0.out_channels == (32, 64, 160, 256) and b2.out_channels == (64, 128, 320, 512)
    assert b0.out_strides == (4, 8, 16, 32) and b0.output_stride == 32 and b0.level_indices == (0, 1, 2, 3)
    assert b0.width_scale == b2.width_scale == 1.0 and tiny.width_scale == 0.25
    assert b2.num_layers == (3, 4, 6, 3) and b0.in_channels == 3
    assert b0.layers[1][1][0].ffn.layers[0].out_channels == 4 * 64  # mlp_ratio 4
    assert b0.layers[0][0].norm.eps == 1e-6 and b0.layers[2][1][1].attn.dropout_layer.drop_prob > 0
    with torch.device("meta"):
        head = build("segformer", num_classes=3, backbone="mit-b0", backbone_kwargs=TINY_MIT).decode_head
    assert head.channels == 64 and head.in_index == (0, 1, 2, 3) and not head.align_corners


def test_attention_matches_nn_multihead_attention() -> None:
    torch.manual_seed(0)
    for bias in (True, False):
        ref = torch.nn.MultiheadAttention(40, 5, bias=bias).eval()
        ours = MultiheadAttentionCore(40, 5, bias=bias).eval()
        ours.load_state_dict(ref.state_dict(), strict=True)
        q, kv = torch.randn(2, 30, 40), torch.randn(2, 7, 40)
        with torch.no_grad():
            want = ref(q.transpose(0, 1), kv.transpose(0, 1), kv.transpose(0, 1))[0].transpose(0, 1)
            assert (ours(q, kv) - want).abs().max().item() < 1e-5


def test_options_and_training_mode() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 48)
    hf_style = build("segformer", num_classes=4, backbone_kwargs=TINY_MIT, channels=16, linear_levels=True)
    sd = hf_style.state_dict()
    assert "decode_head.convs.0.conv.bias" in sd and "decode_head.convs.0.bn.weight" not in sd
    no_bias = build("segformer", num_classes=4, backbone_kwargs={**TINY_MIT, "qkv_bias": False}, channels=16)
    assert not any(k.endswith(("in_proj_bias", "out_proj.bias")) for k in no_bias.state_dict())
    with_aux = build("segformer", num_classes=4, backbone_kwargs=TINY_MIT, channels=16, aux=True)
    out, aux = with_aux.forward_with_aux(x)
    assert out.shape == (2, 4, 16, 12) and aux[0].shape == (2, 4, 4, 3)
    m = build("segformer", num_classes=4, backbone_kwargs={**TINY_MIT, "drop_path_rate": 0.5}, channels=16)
    with torch.no_grad():
        assert not torch.equal(m.train()(x), m(x))  # stochastic depth is active in training
        assert torch.equal(m.eval()(x), m(x))
    tiny_resnet = {"base_channels": 8, "stem_channels": 8}
    cnn = build("segformer", num_classes=4, backbone="resnet18", backbone_kwargs=tiny_resnet)
    assert cnn.eval()(x).shape == (2, 4, 16, 12)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown backbone_kwargs"):
        build_backbone("mit-b0", {"depth": 3})
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("mit-b6")
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MixVisionTransformer(stage_dims=(8, 16, 24, 30), num_heads=(1, 2, 3, 4))
    with pytest.raises(ValueError, match="num_heads needs 4 entries"):
        MixVisionTransformer(num_heads=(1, 2))
    with pytest.raises(ValueError, match="in out_indices"):
        build("segformer", num_classes=3, backbone_kwargs={**TINY_MIT, "out_indices": (1, 2, 3)})
    m = build("segformer", num_classes=3, backbone_kwargs=TINY_MIT, channels=8)
    with pytest.raises(ValueError, match="expected an input"):
        m(torch.randn(1, 1, 32, 32))
