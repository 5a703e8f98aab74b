"""Import of Hugging Face ``UperNetForSemanticSegmentation`` (ConvNeXt backbone) into segrt's ``upernet``.

The reference is the real transformers model, built offline from a tiny config with random weights (norm affines,
BN statistics and layer scales randomised too, so nothing is an identity).
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from training.convert.hf_upernet import convert_hf_upernet, hf_upernet_model_config, upernet_from_hf_config
from training.models import build_from_config

transformers = pytest.importorskip("transformers")
HW = (64, 96)


pytestmark = [pytest.mark.usefixtures("torch_single_thread")]


def _hf_config(**upernet: object) -> transformers.UperNetConfig:
    backbone = dict(depths=[1, 1, 2, 1], hidden_sizes=[8, 16, 24, 32], layer_scale_init_value=0.5,
                    drop_path_rate=0.2, out_features=["stage1", "stage2", "stage3", "stage4"])
    backbone.update(upernet.pop("backbone", {}))
    kwargs = dict(hidden_size=16, auxiliary_channels=8, pool_scales=[1, 2, 3, 6], num_labels=5)
    kwargs.update(upernet)
    return transformers.UperNetConfig(backbone_config=transformers.ConvNextConfig(**backbone), **kwargs)


def _hf_model(config: transformers.UperNetConfig, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = transformers.UperNetForSemanticSegmentation(config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.dim() == 1:  # biases, norm affines, BN means, layer scales
                t.copy_(torch.randn(t.shape, generator=g) * 0.2 + (1.0 if name.endswith("weight") else 0.0))
            else:
                t.copy_(torch.randn(t.shape, generator=g) / t[0].numel() ** 0.5)
    return model


def _hf_logits(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """HF's decode (and auxiliary) logits before its final upsampling to the input size."""
    with torch.no_grad():
        feats = model.backbone(x).feature_maps
        aux = model.auxiliary_head(feats) if model.auxiliary_head is not None else None
        return model.decode_head(feats), aux


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_logits_and_params_match_transformers() -> None:
    hf = _hf_model(_hf_config())
    ours, report = convert_hf_upernet(hf.state_dict(), hf.config)
    assert not ours.training
    assert _count(ours) == _count(hf) == report["params"]
    assert report["filled_bn_counters"] == [] and report["num_classes"] == 5
    x = torch.randn(2, 3, *HW)
    ref, ref_aux = _hf_logits(hf, x)
    with torch.no_grad():
        got = ours(x)
        got_aux = ours.auxiliary_head(ours.extract_feat(x))
        full = hf(pixel_values=x).logits
    assert got.shape == ref.shape == (2, 5, *ours.logits_hw(*HW))
    assert (got - ref).abs().max() <= 1e-4
    assert (got_aux - ref_aux).abs().max() <= 1e-4
    # HF's forward only adds the bilinear resize to the input size, which segrt leaves to the engine.
    assert (F.interpolate(got, size=HW, mode="bilinear", align_corners=False) - full).abs().max() <= 1e-4


def test_model_config_rebuilds_the_architecture(tmp_path) -> None:
    config = _hf_config()
    cfg = hf_upernet_model_config(config)
    assert cfg == {
        "name": "upernet", "num_classes": 5, "backbone": "convnext-tiny",
        "backbone_kwargs": {"depths": (1, 1, 2, 1), "channels": (8, 16, 24, 32), "in_channels": 3,
                            "stem_patch_size": 4, "drop_path_rate": 0.2, "layer_scale_init_value": 0.5},
        "aux": True, "channels": 16, "pool_scales": (1, 2, 3, 6), "aux_channels": 8,
    }
    a = build_from_config(cfg)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    for source in (config.to_dict(), str(path)):  # a plain mapping and a config.json file read the same
        b = upernet_from_hf_config(source)
        assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    big = transformers.ConvNextConfig(depths=[3, 3, 27, 3], hidden_sizes=[128, 256, 512, 1024],
                                      out_features=["stage1", "stage2", "stage3", "stage4"])
    assert hf_upernet_model_config(transformers.UperNetConfig(backbone_config=big))["backbone"] == "convnext-base"


def test_variants_without_aux_head_or_layer_scale_and_with_other_aux_layout() -> None:
    for kwargs in ({"use_auxiliary_head": False, "backbone": {"layer_scale_init_value": 0.0}},
                   {"auxiliary_num_convs": 2, "auxiliary_concat_input": True, "pool_scales": [1, 3]}):
        hf = _hf_model(_hf_config(**kwargs), seed=1)
        ours, report = convert_hf_upernet(hf.state_dict(), hf.config)
        assert _count(ours) == _count(hf)
        x = torch.randn(1, 3, *HW)
        ref, ref_aux = _hf_logits(hf, x)
        with torch.no_grad():
            assert (ours(x) - ref).abs().max() <= 1e-4
            if ref_aux is not None:
                assert (ours.auxiliary_head(ours.extract_feat(x)) - ref_aux).abs().max() <= 1e-4
    assert report["aux_layout"] == {"num_convs": 2, "concat_input": True}


def test_bad_state_dicts_and_configs_are_named() -> None:
    config = _hf_config()
    sd = _hf_model(config).state_dict()
    broken = {k: v for k, v in sd.items() if k != "backbone.encoder.stages.2.layers.1.pwconv2.weight"}
    with pytest.raises(ValueError, match=r"missing keys \['backbone\.stages\.2\.1\.pointwise_conv2\.weight'\]"):
        convert_hf_upernet(broken, config)
    with pytest.raises(ValueError, match="unexpected keys.*decode_head.extra.weight"):
        convert_hf_upernet({**sd, "decode_head.extra.weight": torch.zeros(1)}, config)
    with pytest.raises(ValueError, match="shape mismatches.*backbone.norm3.weight"):
        convert_hf_upernet({**sd, "backbone.hidden_states_norms.stage4.weight": torch.zeros(3)}, config)
    no_counters = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert convert_hf_upernet(no_counters, config)[1]["filled_bn_counters"]
    with pytest.raises(ValueError, match="map names to tensors"):
        convert_hf_upernet({"a": 1}, config)
    with pytest.raises(ValueError, match="out_features"):
        hf_upernet_model_config(_hf_config(backbone={"out_features": ["stage4"]}))
    with pytest.raises(ValueError, match="hidden_act"):
        hf_upernet_model_config(_hf_config(backbone={"hidden_act": "relu"}))
    with pytest.raises(ValueError, match="model_type must be 'convnext'"):
        hf_upernet_model_config(transformers.UperNetConfig())  # the default ResNet backbone
    with pytest.raises(ValueError, match="config must be"):
        hf_upernet_model_config(42)


def test_full_size_convnext_tiny_matches_hf_and_mmseg_param_count() -> None:
    backbone = transformers.ConvNextConfig(depths=[3, 3, 9, 3], hidden_sizes=[96, 192, 384, 768],  # lists: HF's
                                           out_features=["stage1", "stage2", "stage3", "stage4"])  # tuple default fails
    config = transformers.UperNetConfig(backbone_config=backbone, num_labels=150)  # openmmlab/upernet-convnext-tiny
    with torch.device("meta"):
        hf = transformers.UperNetForSemanticSegmentation(config)
        ours = upernet_from_hf_config(config)
    assert _count(ours) == _count(hf) == 60_242_636  # also MMSeg's convnext-tiny_upernet (tests/test_convnext.py)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in build_from_config(hf_upernet_model_config(config)).state_dict().items()}
