"""ConvNeXt backbones (mmpretrain layout, as MMSeg's ``upernet_convnext`` configs use them) and UPerNet on them.

Reference numbers come from the real MMSeg 1.2.2 + mmpretrain 1.2.0 models built from MMSeg's own
``convnext/convnext-*_upernet_*`` configs (150 ADE20K classes): same parameter counts, and with their random
weights loaded strictly our eval logits matched theirs to 3.3e-7 (tiny, small, base, large at 64x96).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.models import build, build_backbone
from training.models.backbones.convnext import ConvNeXt, DropPath
from training.models.zoo.convnext import TINY_CONVNEXT

# (whole segmentor with auxiliary head, backbone alone), MMSeg + mmpretrain.
MMSEG_PARAMS = {
    "tiny": (60_242_636, 27_821_472),
    "small": (81_877_196, 49_456_032),
    "base": (122_102_956, 87_568_256),
    "large": (234_994_796, 196_233_024),
}


pytestmark = [pytest.mark.usefixtures("torch_single_thread")]


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _tiny_upernet(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build("upernet", num_classes=5, **TINY_CONVNEXT)


@pytest.mark.parametrize("arch", sorted(MMSEG_PARAMS))
def test_upernet_convnext_param_counts_match_mmseg(arch: str) -> None:
    with torch.device("meta"):
        m = build("upernet", num_classes=150, backbone=f"convnext-{arch}")
    assert (_count(m), _count(m.backbone)) == MMSEG_PARAMS[arch]
    assert m.backbone.width_scale == 1.0
    assert m.decode_head.channels == 512 and m.auxiliary_head.channels == 256  # every arch, as MMSeg's configs
    assert m.auxiliary_head.in_channels == m.backbone.out_channels[2]
    assert m.output_stride == 4 and m.size_divisor == 32


def test_state_dict_names_are_mmpretrain_s() -> None:
    with torch.device("meta"):
        m = build("upernet", num_classes=150, backbone="convnext-tiny")
    keys = set(m.state_dict())
    for k in ("backbone.downsample_layers.0.0.weight", "backbone.downsample_layers.0.1.bias",
              "backbone.downsample_layers.3.0.weight", "backbone.downsample_layers.3.1.weight",
              "backbone.stages.2.8.depthwise_conv.weight", "backbone.stages.2.8.norm.weight",
              "backbone.stages.2.8.pointwise_conv1.weight", "backbone.stages.2.8.pointwise_conv2.bias",
              "backbone.stages.3.2.gamma", "backbone.norm0.weight", "backbone.norm3.bias",
              "decode_head.psp_modules.3.1.conv.weight", "decode_head.fpn_bottleneck.bn.running_var",
              "auxiliary_head.convs.0.conv.weight", "auxiliary_head.conv_seg.bias"):
        assert k in keys, k
    assert "backbone.stages.2.9.gamma" not in keys
    sd = m.state_dict()
    assert tuple(sd["backbone.downsample_layers.0.0.weight"].shape) == (96, 3, 4, 4)
    assert tuple(sd["backbone.downsample_layers.1.1.weight"].shape) == (192, 96, 2, 2)
    assert tuple(sd["backbone.stages.0.0.pointwise_conv1.weight"].shape) == (384, 96)  # Linear, not a 1x1 conv


def test_backbone_defaults_follow_mmseg_configs() -> None:
    tiny = build_backbone("convnext-tiny")
    with torch.device("meta"):
        small, base = (build_backbone(f"convnext-{a}") for a in ("small", "base"))
    assert tiny.depths == (3, 3, 9, 3) and tiny.channels == (96, 192, 384, 768)
    assert small.depths == (3, 3, 27, 3) and base.channels == (128, 256, 512, 1024)
    assert (tiny.drop_path_rate, small.drop_path_rate, base.drop_path_rate) == (0.4, 0.3, 0.4)
    rates = [blk.drop_path.p for stage in tiny.stages for blk in stage[1:]]  # the first block has rate 0
    assert isinstance(tiny.stages[0][0].drop_path, torch.nn.Identity)
    assert rates == sorted(rates) and rates[-1] == pytest.approx(0.4)
    assert tiny.out_strides == (4, 8, 16, 32) and tiny.level_indices == (0, 1, 2, 3)
    assert torch.equal(tiny.stages[0][0].gamma.detach(), torch.ones(96))  # layer_scale_init_value=1.0
    assert tiny.norm0.eps == 1e-6 and tiny.stages[0][0].norm.eps == 1e-6
    narrow = build_backbone("convnext-base", {"channels": (32, 64, 128, 256)})
    assert narrow.width_scale == 0.25
    assert ConvNeXt(layer_scale_init_value=0.0, depths=(1, 1, 1, 1), channels=(8, 8, 8, 8)).stages[0][0].gamma is None


def test_drop_path_train_vs_eval() -> None:
    torch.manual_seed(0)
    dp = DropPath(0.5)
    x = torch.ones(4000, 3, 2, 2)
    y = dp.train()(x)
    per_sample = y[:, 0, 0, 0]
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}  # dropped or rescaled by 1 / keep
    assert torch.equal(y, per_sample.view(-1, 1, 1, 1).expand_as(y))  # whole samples
    assert 0.45 < float((per_sample == 0).float().mean()) < 0.55
    assert dp.eval()(x) is x

    torch.manual_seed(0)
    bb = ConvNeXt(depths=(1, 1, 2, 1), channels=(8, 16, 16, 32), drop_path_rate=0.5)
    plain = ConvNeXt(depths=(1, 1, 2, 1), channels=(8, 16, 16, 32), drop_path_rate=0.0)
    plain.load_state_dict(bb.state_dict(), strict=True)
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        ref = plain.eval()(x)
        assert all(torch.equal(a, b) for a, b in zip(bb.eval()(x), ref))  # identity in eval mode
        a, b = bb.train()(x), bb.train()(x)
        assert not torch.equal(a[-1], b[-1])  # random in training
    with pytest.raises(ValueError, match="drop_path_rate"):
        ConvNeXt(drop_path_rate=1.0)


def test_forward_shapes_and_bad_input() -> None:
    m = _tiny_upernet().eval()
    with torch.no_grad():
        out = m(torch.randn(2, 3, 64, 96))
        feats = m.backbone(torch.randn(1, 3, 64, 96))
    assert out.shape == (2, 5, 16, 24) == (2, 5, *m.logits_hw(64, 96))
    assert [tuple(f.shape[1:]) for f in feats] == [(8, 16, 24), (16, 8, 12), (32, 4, 6), (64, 2, 3)]
    with pytest.raises(ValueError, match="multiples of 32"):
        m(torch.randn(1, 3, 64, 80))
    with pytest.raises(ValueError, match="multiples of 32"):
        m.backbone(torch.randn(1, 3, 64, 80))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        m.backbone(torch.randn(1, 4, 64, 64))
    with pytest.raises(ValueError, match="out_indices"):
        ConvNeXt(out_indices=(0, 4))
    with pytest.raises(ValueError, match="4 positive entries"):
        ConvNeXt(depths=(1, 1, 1))
    with pytest.raises(ValueError, match="unknown backbone_kwargs"):
        build_backbone("convnext-tiny", {"widen_factor": 0.5})
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("convnext-huge")


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # emitted inside torch.export
def test_onnx_dynamic_hw_matches_torch(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    m = _tiny_upernet().eval()
    dyn = torch.export.Dim.DYNAMIC
    program = torch.onnx.export(m, (torch.randn(1, 3, 64, 96),), dynamo=True, opset_version=18,
                                input_names=["image"], output_names=["logits"],
                                dynamic_shapes={"x": {0: dyn, 2: dyn, 3: dyn}})
    path = tmp_path / "upernet_convnext.onnx"
    program.save(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 64, 96), (2, 3, 96, 128)]:
        x = torch.randn(*shape)
        (got,) = sess.run(None, {"image": x.numpy()})
        with torch.no_grad():
            ref = m(x).numpy()
        assert got.shape == ref.shape
        assert float(np.abs(got - ref).max()) <= 1e-4 * max(float(np.abs(ref).max()), 1e-6)
