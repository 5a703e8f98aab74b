"""CCNet, DANet, OCRNet (cascade) and FastFCN (JPU): MMSeg sizes and names, cascade and DANet training outputs,
criss-cross attention math, ONNX export with the attention switched on, bad input."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from training.models import build, model_info
from training.models.backbones.resnet import ResNet
from training.models.cascade import CascadeSegmentor
from training.models.heads.base import BaseDecodeHead
from training.models.heads.cc import CCHead, CrissCrossAttention
from training.models.heads.fcn import FCNHead
from training.models.heads.ocr import OCRHead
from training.models.necks.jpu import JPU
from training.models.registry import TINY_RESNET

TINY_BB = TINY_RESNET["backbone_kwargs"]


pytestmark = [pytest.mark.usefixtures("torch_single_thread")]


def _full(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return build(name, num_classes=19, **kwargs)


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _count(keys: Sequence[str], prefix: str) -> int:
    return sum(k.startswith(prefix) for k in keys)


def _tiny(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    kwargs.setdefault("backbone_kwargs", TINY_BB)
    return build(name, num_classes=5, backbone="resnet18", **kwargs)


# Parameters of MMSeg 1.2.2's models built from its own configs (num_classes 19), and its state-dict key counts per
# prefix (parameters + BN buffers).
MMSEG = {
    "ccnet": (49_826_055, {"backbone.": 330, "decode_head.": 27, "auxiliary_head.": 8}),
    "danet": (49_846_574, {"backbone.": 330, "decode_head.": 38, "auxiliary_head.": 8}),
    "ocrnet": (55_516_294, {"backbone.": 636, "decode_head.0.": 8, "decode_head.1.": 50, "auxiliary_head.": 0}),
    "fastfcn_psp": (68_711_046, {"backbone.": 330, "neck.": 66, "decode_head.": 32, "auxiliary_head.": 8}),
    "fastfcn_aspp": (87_848_582, {"backbone.": 330, "neck.": 66, "decode_head.": 38, "auxiliary_head.": 8}),
}


@pytest.mark.parametrize("name", sorted(MMSEG))
def test_full_size_matches_mmseg(name: str) -> None:
    m = _full(name)
    params, counts = MMSEG[name]
    assert _n_params(m) == params
    keys = list(m.state_dict())
    assert {p: _count(keys, p) for p in counts} == counts
    assert m.output_stride == 8 and m.logits_hw(512, 1024) == (64, 128)
    if m.auxiliary_head is not None:
        assert _n_params(m.auxiliary_head) == 2_364_691  # FCN 1024 -> 256, as MMSeg


@pytest.mark.parametrize(("name", "params"), [("ccnet", 68_818_183), ("danet", 68_838_702)])
def test_r101_variants_match_mmseg(name: str, params: int) -> None:
    assert _n_params(_full(name, backbone="resnet101")) == params  # MMSeg's *_r101-d8 Cityscapes configs


def test_mmseg_key_names() -> None:
    cc = set(_full("ccnet").state_dict())
    assert {"decode_head.cca.query_conv.weight", "decode_head.cca.key_conv.bias", "decode_head.cca.value_conv.weight",
            "decode_head.cca.gamma.scale", "decode_head.convs.1.conv.weight", "decode_head.conv_cat.bn.running_var",
            "auxiliary_head.convs.0.conv.weight"} <= cc
    da = set(_full("danet").state_dict())
    assert {"decode_head.pam_in_conv.conv.weight", "decode_head.pam.query_project.weight",
            "decode_head.pam.key_project.bias", "decode_head.pam.value_project.weight", "decode_head.pam.gamma.scale",
            "decode_head.pam_out_conv.bn.weight", "decode_head.pam_conv_seg.weight",
            "decode_head.cam_in_conv.conv.weight", "decode_head.cam.gamma.scale", "decode_head.conv_seg.weight",
            "decode_head.cam_out_conv.conv.weight", "decode_head.cam_conv_seg.bias"} <= da
    ocr = set(_full("ocrnet").state_dict())
    block = "decode_head.1.object_context_block"
    assert {"decode_head.0.convs.0.conv.weight", "decode_head.0.conv_seg.weight",
            "decode_head.1.bottleneck.conv.weight", f"{block}.query_project.0.conv.weight",
            f"{block}.query_project.1.bn.weight", f"{block}.key_project.1.conv.weight",
            f"{block}.value_project.conv.weight", f"{block}.out_project.bn.running_mean",
            f"{block}.bottleneck.conv.weight", "decode_head.1.conv_seg.bias", "backbone.layer3.22.conv3.weight"} <= ocr
    jpu = set(_full("fastfcn_psp").state_dict())
    assert {"neck.conv_layers.2.0.conv.weight", "neck.conv_layers.0.0.bn.weight",
            "neck.dilation_layers.3.0.depthwise_conv.conv.weight", "neck.dilation_layers.3.0.depthwise_conv.bn.bias",
            "neck.dilation_layers.0.0.pointwise_conv.conv.weight", "decode_head.psp_modules.3.1.conv.weight"} <= jpu
    assert "neck.dilation_layers.0.0.depthwise_conv.conv.bias" not in jpu  # BN follows: mmcv's bias='auto'
    assert {"decode_head.image_pool.1.conv.weight", "decode_head.aspp_modules.3.conv.weight"} <= set(
        _full("fastfcn_aspp").state_dict())


def test_registry_defaults() -> None:
    for name in MMSEG:
        assert model_info(name)["capabilities"] == {"onnx": True, "dynamic_hw": True, "compile": True}
    ocr = model_info("ocrnet")["defaults"]
    assert ocr["backbone"] == "resnet101" and ocr["aux"] is False
    assert model_info("ccnet")["defaults"]["recurrence"] == 2
    assert model_info("fastfcn_aspp")["defaults"]["dilations"] == (1, 12, 24, 36)


# --- criss-cross attention -------------------------------------------------------------------------------------------


def _cca_loops(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Criss-cross attention written pixel by pixel from its definition (column without the centre, full row)."""
    b, _, h, w = q.shape
    out = torch.zeros(b, v.shape[1], h, w, dtype=q.dtype)
    for n in range(b):
        for i in range(h):
            for j in range(w):
                cand = [(r, j) for r in range(h) if r != i] + [(i, c) for c in range(w)]
                energy = torch.stack([(q[n, :, i, j] * k[n, :, r, c]).sum() for r, c in cand])
                attn = torch.softmax(energy, 0)
                out[n, :, i, j] = sum(a * v[n, :, r, c] for a, (r, c) in zip(attn, cand))
    return out


@pytest.mark.parametrize("hw", [(3, 5), (1, 4), (4, 1)])
def test_criss_cross_attention_block_math(hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    block = CrissCrossAttention(16).double()
    with torch.no_grad():
        block.gamma.scale.fill_(0.7)
    x = torch.randn(2, 16, *hw, dtype=torch.float64)
    q, k, v = block.query_conv(x), block.key_conv(x), block.value_conv(x)
    expected = 0.7 * _cca_loops(q, k, v) + x
    torch.testing.assert_close(block(x), expected, rtol=1e-9, atol=1e-9)


def test_cc_head_recurrence_and_options() -> None:
    torch.manual_seed(0)
    head = CCHead(32, 16, num_classes=3, in_index=0, recurrence=2, dropout_ratio=0.0).eval()
    with torch.no_grad():
        head.cca.gamma.scale.fill_(1.0)
    x = torch.randn(1, 32, 6, 7)
    with torch.no_grad():
        feat = head.cca(head.cca(head.convs[0](x)))
        expected = head.conv_seg(head.conv_cat(torch.cat([x, head.convs[1](feat)], 1)))
        torch.testing.assert_close(head([x]), expected)
    with pytest.raises(ValueError, match="num_convs"):
        CCHead(32, 16, num_classes=3, num_convs=1)
    with pytest.raises(ValueError, match="in_channels must be >= 8"):
        CrissCrossAttention(4)


# --- DANet -----------------------------------------------------------------------------------------------------------


def test_danet_training_outputs_and_gradients() -> None:
    m = _tiny("danet")
    head = m.decode_head
    with torch.no_grad():
        head.pam.gamma.scale.fill_(0.5)
        head.cam.gamma.scale.fill_(0.5)
    x = torch.randn(2, 3, 64, 80)
    m.eval()
    with torch.no_grad():
        feats = m.extract_feat(x)
        main, (pam, cam) = head.forward_train(feats)
        torch.testing.assert_close(m(x), main)
        out, aux = m.forward_with_aux(x)
        torch.testing.assert_close(out, main)
        assert len(aux) == 3  # PAM, CAM, then the FCN auxiliary head
        torch.testing.assert_close(aux[0], pam)
        torch.testing.assert_close(aux[1], cam)
        torch.testing.assert_close(aux[2], m.auxiliary_head(feats))
        for t in (pam, cam):
            assert t.shape == main.shape == (2, 5, 8, 10)
        assert not torch.allclose(pam, cam)
    m.train()
    out, aux = m.forward_with_aux(x)
    sum(t.square().mean() for t in [out, *aux]).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


# --- CascadeSegmentor ------------------------------------------------------------------------------------------------


class _Refine(BaseDecodeHead):
    """Test stage: its own logits plus twice the previous stage's."""

    def forward(self, inputs: Sequence[Tensor], prev: Tensor) -> Tensor:  # type: ignore[override]
        return self.cls_seg(self._select(inputs)) + 2 * prev


def _cascade(aux: bool = True) -> CascadeSegmentor:
    torch.manual_seed(0)
    bb = ResNet(18, **TINY_BB)
    stage0 = FCNHead(32, 8, num_classes=4, in_index=2, num_convs=1, concat_input=False, dropout_ratio=0.0)
    stage1 = _Refine(64, 64, num_classes=4, in_index=3, dropout_ratio=0.0)
    stage2 = _Refine(64, 64, num_classes=4, in_index=3, dropout_ratio=0.0)
    aux_head = FCNHead(32, 8, num_classes=4, in_index=2, num_convs=1, concat_input=False) if aux else None
    return CascadeSegmentor(bb, [stage0, stage1, stage2], aux_head).eval()


def test_cascade_segmentor_chains_heads() -> None:
    m = _cascade()
    keys = set(m.state_dict())
    assert {"decode_head.0.convs.0.conv.weight", "decode_head.1.conv_seg.weight", "decode_head.2.conv_seg.bias",
            "auxiliary_head.conv_seg.weight"} <= keys
    assert isinstance(m.decode_head, nn.ModuleList) and len(m.decode_head) == 3
    assert m.num_classes == 4 and m.output_stride == 8
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        feats = m.extract_feat(x)
        s0 = m.decode_head[0](feats)
        s1 = m.decode_head[1](feats, s0)
        s2 = m.decode_head[2](feats, s1)
        torch.testing.assert_close(m(x), s2)
        last, aux = m.forward_with_aux(x)
        torch.testing.assert_close(last, s2)
        assert len(aux) == 3
        for got, ref in zip(aux, [s0, s1, m.auxiliary_head(feats)]):
            torch.testing.assert_close(got, ref)
        assert len(_cascade(aux=False).forward_with_aux(x)[1]) == 2


def test_cascade_segmentor_rejects_bad_stages() -> None:
    bb = ResNet(18, **TINY_BB)
    fcn = FCNHead(64, 8, num_classes=4, in_index=3, num_convs=1, concat_input=False)
    with pytest.raises(ValueError, match="at least 2"):
        CascadeSegmentor(bb, [fcn])
    with pytest.raises(ValueError, match="same classes"):
        CascadeSegmentor(bb, [fcn, _Refine(64, 64, num_classes=3, in_index=3)])
    with pytest.raises(ValueError, match=r"expected an input of shape"):
        _cascade()(torch.randn(1, 4, 32, 32))


def test_ocrnet_cascade_and_errors() -> None:
    m = _tiny("ocrnet").eval()
    assert isinstance(m, CascadeSegmentor) and m.auxiliary_head is None
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        out, aux = m.forward_with_aux(x)
        assert out.shape == aux[0].shape == (1, 5, 8, 10)
        torch.testing.assert_close(m(x), out)
    assert len(_tiny("ocrnet", aux=True).forward_with_aux(x)[1]) == 2
    with pytest.raises(ValueError, match="one resolution"):
        _tiny("ocrnet", backbone_kwargs={**TINY_BB, "output_stride": 32})
    with pytest.raises(ValueError, match="scale=1"):
        OCRHead(64, 16, num_classes=5, ocr_channels=8, scale=2)
    head = m.decode_head[1]
    feats = m.extract_feat(x)
    with pytest.raises(ValueError, match="previous logits"):
        head(feats, torch.randn(1, 5, 4, 5))
    with pytest.raises(ValueError, match="previous logits"):
        head(feats, torch.randn(1, 4, 8, 10))


# --- FastFCN ---------------------------------------------------------------------------------------------------------


def test_fastfcn_backbone_neck_and_stride() -> None:
    m = _full("fastfcn_psp")
    bb = m.backbone
    assert bb.out_indices == (1, 2, 3) and bb.output_stride == 32
    # MMSeg's -d32 JPU config: stride 2 in stages 3 and 4 together with dilations 2 and 4 (first blocks contracted).
    assert (bb.layer3[0].conv2.stride, bb.layer3[0].conv2.dilation, bb.layer3[1].conv2.dilation) == ((2, 2), (1, 1),
                                                                                                      (2, 2))
    assert (bb.layer4[0].conv2.stride, bb.layer4[0].conv2.dilation, bb.layer4[1].conv2.dilation) == ((2, 2), (2, 2),
                                                                                                      (4, 4))
    neck = m.neck
    assert neck.out_channels == (512, 1024, 2048) and neck.out_strides == (8, 16, 8)
    branch = neck.dilation_layers[2][0]
    assert branch.depthwise_conv.conv.dilation == (4, 4) and branch.depthwise_conv.conv.groups == 1536
    assert isinstance(branch.depthwise_conv.activate, nn.Identity)
    assert isinstance(branch.pointwise_conv.activate, nn.ReLU)
    assert m.decode_head.in_index == 2 and m.auxiliary_head.in_index == 1


@pytest.mark.parametrize("name", ["fastfcn_psp", "fastfcn_aspp"])
def test_fastfcn_tiny_forward(name: str) -> None:
    m = _tiny(name).eval()
    assert m.output_stride == 8
    with torch.no_grad():
        for hw in ((64, 80), (67, 85)):
            assert m(torch.randn(1, 3, *hw)).shape == (1, 5, *m.logits_hw(*hw))


def test_jpu_errors() -> None:
    jpu = JPU((8, 16, 32), 8)
    with pytest.raises(ValueError, match="expected 3 feature maps"):
        jpu([torch.randn(1, 8, 8, 8)])
    with pytest.raises(ValueError, match="start_level"):
        JPU((8, 16, 32), 8, start_level=3)
    with pytest.raises(ValueError, match="in_strides"):
        JPU((8, 16, 32), 8, in_strides=(8, 16))
    with pytest.raises(ValueError, match="JPU needs"):
        _tiny("fastfcn_psp", backbone_kwargs={**TINY_BB, "out_indices": (1, 2)})
    with pytest.raises(ValueError, match="last three outputs"):
        _tiny("fastfcn_psp", backbone_kwargs={**TINY_BB, "out_indices": (1, 2, 3, 0)})


# --- ONNX with the attention switched on -----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
@pytest.mark.parametrize("name", ["ccnet", "danet"])
def test_attention_exports_with_dynamic_hw(name: str, tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    m = _tiny(name).eval()
    for mod in m.modules():  # gamma starts at 0 (the attention is off): switch it on, randomize BN
        if hasattr(mod, "gamma"):
            mod.gamma.scale.data.fill_(1.0)
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    nn.init.normal_(m.decode_head.conv_seg.weight, std=0.3)
    dyn = torch.export.Dim.DYNAMIC
    program = torch.onnx.export(m, (torch.randn(1, 3, 64, 80),), dynamo=True, opset_version=18,
                                input_names=["image"], dynamic_shapes={"x": {0: dyn, 2: dyn, 3: dyn}})
    path = tmp_path / f"{name}.onnx"
    program.save(str(path))
    proto = onnx.load(str(path))
    assert all(n.domain in ("", "ai.onnx") for n in proto.graph.node), {n.domain for n in proto.graph.node}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in ((1, 3, 64, 80), (2, 3, 67, 85)):
        x = torch.randn(*shape)
        (got,) = sess.run(None, {"image": x.numpy()})
        with torch.no_grad():
            ref = m(x).numpy()
        assert got.shape == ref.shape
        assert float(np.abs(got - ref).max()) <= 1e-4 * float(np.abs(ref).max())
