"""One test matrix over every registered model: shapes, gradients, ONNX export + ONNX Runtime parity, torch.compile.

Each model is built tiny (ResNet-18 at 1/8 width, MobileNetV2 at 1/4 width, heads scaled with it) and checked
against what it declares in :func:`training.models.model_info` (``onnx``, ``dynamic_hw``, ``compile``).
Ops run single-threaded: on these tiny tensors a second OpenMP thread only adds synchronisation, which on a
loaded 2-core machine costs orders of magnitude in wall time.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.models import Segmentor, build, list_models, model_info
from training.train import aux_losses

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytestmark = [  # emitted inside torch.export / the ONNX exporter, not by our code
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*torch.jit.script_method.*:DeprecationWarning"),
    pytest.mark.usefixtures("torch_single_thread"),
]

NUM_CLASSES = 5
EXPORT_HW = (64, 80)
OTHER_HW = (67, 85)  # not a multiple of any stride: checks ceil-mode strides and dynamic H/W


def _tiny_cases() -> list[tuple[str, int]]:
    return [(name, i) for name in list_models() for i in range(len(model_info(name)["tiny"]))]


# Forward/backward are cheap: every model on every tiny configuration it declares (e.g. ResNet-18 at 1/8 width and
# MobileNetV2 at 1/4 width for the CNN classics). Export and compile: the first configuration of each model, plus
# MMSeg's m-v2-d8 DeepLabV3+ (the real-time config).
ALL_CASES = _tiny_cases()
EXPORT_CASES = [(name, 0) for name in list_models()] + [("deeplabv3plus", 1)]


def _ids(cases: list[tuple[str, int]]) -> list[str]:
    return [f"{name}-{model_info(name)['tiny'][i].get('backbone', 'default')}" for name, i in cases]


def _tiny(name: str, case: int, seed: int = 0) -> Segmentor:
    """The tiny model, with random norm statistics and a unit-scale classifier so logits are O(1)."""
    torch.manual_seed(seed)
    m = build(name, num_classes=NUM_CLASSES, **model_info(name)["tiny"][case])
    for mod in m.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) and mod.running_mean is not None:
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    heads = [m.decode_head, *(m.auxiliary_head if isinstance(m.auxiliary_head, torch.nn.ModuleList)
                              else [m.auxiliary_head])]
    for head in heads:
        if head is not None and isinstance(getattr(head, "conv_seg", None), torch.nn.Conv2d):
            torch.nn.init.normal_(head.conv_seg.weight, std=1 / math.sqrt(head.conv_seg.in_channels))
    return m


def _sizes(m: Segmentor) -> tuple[tuple[int, int], tuple[int, int]]:
    """EXPORT_HW and OTHER_HW rounded up to the model's size divisor (U-Net needs multiples of 16)."""
    d = m.size_divisor
    return tuple(tuple(-(-v // d) * d for v in hw) for hw in (EXPORT_HW, OTHER_HW))


def _assert_close_to_scale(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    """max |got - ref| <= 1e-4 x the logits' scale (max |ref|)."""
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    scale = max(float(np.abs(ref).max()), 1e-6)
    err = float(np.abs(got - ref).max())
    assert err <= 1e-4 * scale, f"{what}: max abs diff {err:.3g} > 1e-4 x logits scale {scale:.3g}"


def test_every_model_declares_capabilities() -> None:
    for name in list_models():
        caps = model_info(name)["capabilities"]
        assert set(caps) == {"onnx", "dynamic_hw", "compile"}, name
        assert all(isinstance(v, bool) for v in caps.values()), name
    assert {"fcn", "pspnet", "deeplabv3", "deeplabv3plus", "upernet", "fpn"} <= set(list_models())


@pytest.mark.parametrize(("name", "case"), ALL_CASES, ids=_ids(ALL_CASES))
def test_forward_shape_and_stride(name: str, case: int) -> None:
    m = _tiny(name, case).eval()
    assert m.output_stride in (1, 2, 4, 8, 16, 32)
    with torch.no_grad():
        for hw in _sizes(m):
            out = m(torch.randn(2, 3, *hw))
            assert out.shape == (2, NUM_CLASSES, *m.logits_hw(*hw)), (name, hw)
            assert m.logits_hw(*hw)[0] >= -(-hw[0] // m.output_stride)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "case"), ALL_CASES, ids=_ids(ALL_CASES))
def test_backward_reaches_every_parameter(name: str, case: int) -> None:
    m = _tiny(name, case).train()
    x = torch.randn(2, 3, *_sizes(m)[0])
    target = torch.randint(0, NUM_CLASSES, (2, *x.shape[2:]))
    out, aux = m.forward_with_aux(x)

    def ce(o: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(F.interpolate(o, size=y.shape[1:], mode="bilinear", align_corners=False), y)

    # the training loop's losses: cross-entropy, or an auxiliary head's own loss (STDC's boundary head)
    loss = ce(out, target) + sum(fn(o, target) for fn, o in zip(aux_losses(m, len(aux), ce), aux))
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    assert any(float(p.grad.abs().sum()) > 0 for p in m.backbone.parameters())


@pytest.mark.parametrize(("name", "case"), EXPORT_CASES, ids=_ids(EXPORT_CASES))
def test_onnx_export_matches_torch(name: str, case: int, tmp_path) -> None:
    caps = model_info(name)["capabilities"]
    if not caps["onnx"]:
        pytest.skip(f"{name} declares onnx=False")
    m = _tiny(name, case).eval()
    export_hw, other_hw = _sizes(m)
    dyn = torch.export.Dim.DYNAMIC
    dynamic_shapes = {"x": {0: dyn, 2: dyn, 3: dyn}} if caps["dynamic_hw"] else {"x": {0: dyn}}
    path = tmp_path / f"{name}.onnx"
    program = torch.onnx.export(m, (torch.randn(1, 3, *export_hw),), dynamo=True, opset_version=18,
                                input_names=["image"], output_names=["logits"], dynamic_shapes=dynamic_shapes)
    program.save(str(path))
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert proto.opset_import[0].version >= 17
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[1].dim_value == 3
    if caps["dynamic_hw"]:
        assert all(dims[i].dim_param for i in (0, 2, 3)), [str(d) for d in dims]
        ops = {n.op_type for n in proto.graph.node}
        assert not ops & {"AveragePool", "MaxRoiPool"}, ops  # pooling must not bake in the input size
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shapes = [(1, 3, *export_hw), (2, 3, *export_hw)] + ([(2, 3, *other_hw)] if caps["dynamic_hw"] else [])
    for shape in shapes:
        x = torch.randn(*shape)
        (got,) = sess.run(None, {"image": x.numpy()})
        with torch.no_grad():
            ref = m(x).numpy()
        assert got.shape == (shape[0], NUM_CLASSES, *m.logits_hw(*shape[2:]))
        _assert_close_to_scale(got, ref, f"{name}-{_ids([(name, case)])[0]} ONNX Runtime at {shape}")


@pytest.mark.slow  # inductor codegen + a C++ build: tens of seconds per model on 2 cores; still runs by default
@pytest.mark.parametrize("name", list_models())
def test_torch_compile_matches_eager(name: str) -> None:
    if not model_info(name)["capabilities"]["compile"]:
        pytest.skip(f"{name} declares compile=False")
    m = _tiny(name, 0).eval()
    x = torch.randn(1, 3, *_sizes(m)[0])
    # every model shares Segmentor.forward's code object: start from a clean cache, or dynamo's recompile limit (8
    # per code object) is hit after eight models
    torch._dynamo.reset()
    compiled = torch.compile(m, fullgraph=True, dynamic=False)
    with torch.no_grad():
        ref = m(x).numpy()
        got = compiled(x).numpy()
    _assert_close_to_scale(got, ref, f"{name} torch.compile")
