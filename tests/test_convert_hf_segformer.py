"""Import of Hugging Face SegFormer checkpoints: the real ``transformers`` model (random weights, offline) vs ours."""

from __future__ import annotations

import json
import re

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import SegformerConfig, SegformerForSemanticSegmentation  # noqa: E402

from training.convert.hf_segformer import convert_hf_segformer, segformer_from_hf_config  # noqa: E402

TINY = {"hidden_sizes": [8, 16, 24, 32], "num_attention_heads": [1, 2, 3, 4], "depths": [1, 2, 1, 1],
        "decoder_hidden_size": 16, "num_labels": 5}
B0_ADE = {"num_labels": 150}  # SegformerConfig defaults are MiT-B0
B2_ADE = {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 6, 3], "decoder_hidden_size": 768, "num_labels": 150}

# transformers 5.x names -> the names in the Hub's checkpoint files (transformers 4.x), written out independently.
TO_HUB = [
    (r"^segformer\.stages\.(\d+)\.patch_embeddings\.", r"segformer.encoder.patch_embeddings.\1."),
    (r"^segformer\.stages\.(\d+)\.blocks\.(\d+)\.", r"segformer.encoder.block.\1.\2."),
    (r"^segformer\.stages\.(\d+)\.layer_norm\.", r"segformer.encoder.layer_norm.\1."),
    (r"attention\.q_proj", "attention.self.query"), (r"attention\.k_proj", "attention.self.key"),
    (r"attention\.v_proj", "attention.self.value"), (r"attention\.o_proj", "attention.output.dense"),
    (r"attention\.sequence_reduction\.sequence_reduction", "attention.self.sr"),
    (r"attention\.sequence_reduction\.layer_norm", "attention.self.layer_norm"),
    (r"mlp\.fc1", "mlp.dense1"), (r"mlp\.fc2", "mlp.dense2"),
    (r"layernorm_before", "layer_norm_1"), (r"layernorm_after", "layer_norm_2"),
    (r"^decode_head\.linear_projections\.", "decode_head.linear_c."),
]


pytestmark = [pytest.mark.usefixtures("torch_single_thread")]


@pytest.fixture(scope="module")
def hf_tiny() -> tuple[SegformerForSemanticSegmentation, SegformerConfig]:
    """The real HF model, tiny, with random weights and BN statistics (nothing is an identity)."""
    torch.manual_seed(0)
    config = SegformerConfig(**TINY)
    model = SegformerForSemanticSegmentation(config).eval()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            t.copy_(torch.randn_like(t) * (0.3 if t.dim() > 1 else 0.1))
            if name.endswith("running_var") or ("norm" in name and name.endswith("weight")):
                t.add_(1.0).abs_()
    return model, config


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _hf_logits(model: SegformerForSemanticSegmentation, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(pixel_values=x).logits  # stride 4, as ours


@pytest.mark.parametrize("hw", [(64, 64), (67, 85)])
def test_logits_match_transformers(hf_tiny, hw: tuple[int, int]) -> None:
    hf, config = hf_tiny
    ours, report = convert_hf_segformer(hf.state_dict(), config)
    assert not ours.training
    assert report["params"] == _n_params(hf) == _n_params(ours)
    assert report["source_naming"] == "transformers-5" and report["num_classes"] == 5
    x = torch.randn(2, 3, *hw)
    ref = _hf_logits(hf, x)
    with torch.no_grad():
        got = ours(x)
    assert got.shape == ref.shape == (2, 5, *ours.logits_hw(*hw))
    assert (got - ref).abs().max().item() <= 1e-4


def test_hub_checkpoint_names(hf_tiny) -> None:
    hf, config = hf_tiny
    hub = {}
    for key, value in hf.state_dict().items():
        for pattern, repl in TO_HUB:
            key = re.sub(pattern, repl, key)
        hub[key] = value
    assert "segformer.encoder.block.1.1.attention.self.query.weight" in hub
    assert "decode_head.linear_c.3.proj.weight" in hub
    ours, report = convert_hf_segformer(hub, config.to_dict())  # config as a plain dict too
    assert report["source_naming"].startswith("transformers-4")
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert (ours(x) - _hf_logits(hf, x)).abs().max().item() <= 1e-4


def test_converted_layout(hf_tiny) -> None:
    hf, config = hf_tiny
    ours, _ = convert_hf_segformer(hf.state_dict(), config)
    sd = ours.state_dict()
    hsd = hf.state_dict()
    q = hsd["segformer.stages.1.blocks.1.attention.q_proj.weight"]
    v = hsd["segformer.stages.1.blocks.1.attention.v_proj.bias"]
    assert torch.equal(sd["backbone.layers.1.1.1.attn.attn.in_proj_weight"][:16], q)
    assert torch.equal(sd["backbone.layers.1.1.1.attn.attn.in_proj_bias"][32:], v)
    assert sd["backbone.layers.0.1.0.ffn.layers.0.weight"].shape == (32, 8, 1, 1)
    assert sd["decode_head.convs.2.conv.weight"].shape == (16, 24, 1, 1) and "decode_head.convs.2.bn.weight" not in sd
    fuse = hsd["decode_head.linear_fuse.weight"]  # HF: levels 3, 2, 1, 0; ours 0, 1, 2, 3
    assert torch.equal(sd["decode_head.fusion_conv.conv.weight"][:, :16], fuse[:, 48:])
    norms = [m for m in ours.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.eps == 1e-5 for m in norms)  # what HF's model uses, whatever layer_norm_eps says


@pytest.mark.parametrize(("cfg", "params"), [(B0_ADE, 3_752_694), (B2_ADE, 27_461_974)])
def test_full_size_parameter_counts(cfg: dict, params: int) -> None:
    with torch.device("meta"):
        hf = SegformerForSemanticSegmentation(SegformerConfig(**cfg))
        ours = segformer_from_hf_config(SegformerConfig(**cfg))
    assert _n_params(hf) == _n_params(ours) == params
    assert len(hf.state_dict()) == len(ours.state_dict()) + 4 * sum(SegformerConfig(**cfg).depths)  # q, k, v -> in_proj
    assert ours.decode_head.channels == cfg.get("decoder_hidden_size", 256)


def test_config_json_path(tmp_path, hf_tiny) -> None:
    hf, config = hf_tiny
    path = tmp_path / "config.json"
    d = config.to_dict()
    d.pop("num_labels", None)  # Hub files give id2label only
    path.write_text(json.dumps(d))
    ours, report = convert_hf_segformer(hf.state_dict(), str(path))
    assert report["num_classes"] == 5


def test_bad_keys_are_listed(hf_tiny) -> None:
    hf, config = hf_tiny
    sd = dict(hf.state_dict())
    missing = dict(sd)
    del missing["decode_head.classifier.bias"]
    with pytest.raises(ValueError, match=r"missing keys \['decode_head.conv_seg.bias'\]"):
        convert_hf_segformer(missing, config)
    extra = {**sd, "decode_head.extra.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"unexpected keys \['decode_head.extra.weight'\]"):
        convert_hf_segformer(extra, config)
    no_key = dict(sd)
    del no_key["segformer.stages.2.blocks.0.attention.k_proj.weight"]
    with pytest.raises(ValueError, match=r"in_proj_weight: needs q/k/v_proj.weight"):
        convert_hf_segformer(no_key, config)
    with pytest.raises(ValueError, match="shape mismatches.*conv_seg.weight"):
        convert_hf_segformer(sd, {**config.to_dict(), "num_labels": 7, "id2label": None})
    with pytest.raises(ValueError, match="must map names to tensors"):
        convert_hf_segformer({"a": 1}, config)


def test_bad_configs() -> None:
    with pytest.raises(ValueError, match="hidden_act"):
        segformer_from_hf_config({**TINY, "hidden_act": "relu"})
    with pytest.raises(ValueError, match="4 encoder blocks"):
        segformer_from_hf_config({**TINY, "depths": [1, 1, 1]})
    with pytest.raises(ValueError, match="num_labels nor id2label"):
        segformer_from_hf_config({k: v for k, v in TINY.items() if k != "num_labels"})
    with pytest.raises(ValueError, match="config must be"):
        segformer_from_hf_config(42)
