"""Criss-cross attention: native kernels (engine.cca / engine._C) and the torch op (training.ops) vs references."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from engine import cca

torch = pytest.importorskip("torch")
ops = pytest.importorskip("training.ops")

# (B, C, Cq, H, W): H != W, odd sizes, 1x1, H = 1, W = 1, and larger ones (W > 16: the CPU kernel's last chunk of
# 16 columns overlaps the one before). C, Cq > 64: test_many_channels_as_accurate_as_float32_reference.
SHAPES = [
    (1, 3, 2, 1, 1),
    (2, 5, 3, 7, 9),
    (1, 4, 2, 1, 6),
    (1, 4, 2, 6, 1),
    (1, 6, 3, 9, 4),
    (2, 32, 8, 31, 17),
    (1, 40, 6, 12, 50),
]


def _qkv(shape: tuple[int, ...], dtype: torch.dtype = torch.float32, seed: int = 0, grad: bool = False):
    b, c, cq, h, w = shape
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, n, h, w, generator=g, dtype=dtype).requires_grad_(grad) for n in (cq, cq, c))


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference(shape: tuple[int, ...]) -> None:
    q, k, v = _qkv(shape)
    ref = ops.criss_cross_attention_reference(q, k, v)
    torch.testing.assert_close(ops.criss_cross_attention(q, k, v), ref, atol=1e-5, rtol=1e-5)
    out = cca.criss_cross_attention(q.numpy(), k.numpy(), v.numpy())
    np.testing.assert_allclose(out, ref.numpy(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_float64_matches_numpy_reference(shape: tuple[int, ...]) -> None:
    q, k, v = (t.numpy() for t in _qkv(shape, torch.float64, seed=1))
    out, lse = cca.criss_cross_attention(q, k, v, return_lse=True)
    assert out.dtype == np.float64 and lse.shape == (shape[0], shape[3], shape[4])
    np.testing.assert_allclose(out, cca.criss_cross_attention_reference(q, k, v), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_reference_autograd(shape: tuple[int, ...]) -> None:
    q, k, v = _qkv(shape, grad=True, seed=2)
    grad = torch.randn(shape[0], shape[1], shape[3], shape[4], generator=torch.Generator().manual_seed(3))
    want = torch.autograd.grad(ops.criss_cross_attention_reference(q, k, v), (q, k, v), grad)
    got = torch.autograd.grad(ops.criss_cross_attention(q, k, v), (q, k, v), grad)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=5e-5, rtol=1e-4)


def test_many_channels_as_accurate_as_float32_reference() -> None:
    """C, Cq > 64 (energies of std ~8.5: peaky weights, large gradients): ours and the float32 einsum reference against
    the float64 reference; ours must stay within a small multiple of the float32 reference's own error."""
    shape = (1, 80, 72, 18, 37)
    q, k, v = _qkv(shape, grad=True, seed=2)
    grad = torch.randn(shape[0], shape[1], shape[3], shape[4], generator=torch.Generator().manual_seed(3))
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    out64 = ops.criss_cross_attention_reference(q64, k64, v64)
    truth = (out64, *torch.autograd.grad(out64, (q64, k64, v64), grad.double()))
    for fn in (ops.criss_cross_attention, ops.criss_cross_attention_reference):
        out = fn(q, k, v)
        got = (out, *torch.autograd.grad(out, (q, k, v), grad))
        for g, t in zip(got, truth):
            scale = t.abs().max().item()
            torch.testing.assert_close(g.double(), t, atol=5e-6 * scale, rtol=1e-4)


def test_backward_with_saved_lse_equals_recomputed() -> None:
    q, k, v = (t.numpy() for t in _qkv((2, 6, 3, 5, 7), seed=4))
    out, lse = cca.criss_cross_attention(q, k, v, return_lse=True)
    g = np.random.default_rng(0).standard_normal(out.shape, dtype=np.float32)
    for a, b in zip(cca.criss_cross_attention_backward(q, k, v, out, g, lse),
                    cca.criss_cross_attention_backward(q, k, v, out, g)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(1, 3, 2, 3, 4), (2, 2, 1, 1, 3), (1, 2, 2, 4, 1)])
def test_gradcheck_float64(shape: tuple[int, ...]) -> None:
    q, k, v = _qkv(shape, torch.float64, seed=5, grad=True)
    assert torch.autograd.gradcheck(ops.criss_cross_attention, (q, k, v))


def _arrays(shape: tuple[int, ...] = (1, 4, 2, 3, 5)) -> tuple[np.ndarray, ...]:
    return tuple(t.numpy() for t in _qkv(shape))


BAD = [
    ("wrong rank", lambda q, k, v: (q[0], k, v), "q must be 4-D"),
    ("B mismatch", lambda q, k, v: (q, np.concatenate([k, k]), v), "k must match q in B, H, W"),
    ("H mismatch", lambda q, k, v: (q, k, np.ascontiguousarray(v[:, :, :2])), "v must match q in B, H, W"),
    ("W mismatch", lambda q, k, v: (q, np.ascontiguousarray(k[..., :4]), v), "k must match q in B, H, W"),
    ("Cq mismatch", lambda q, k, v: (q, np.ascontiguousarray(k[:, :1]), v), "k must have the channels Cq of q"),
    ("non-contiguous", lambda q, k, v: (q, k, np.asfortranarray(v)), "v must be C-contiguous"),
    ("wrong dtype", lambda q, k, v: (q.astype(np.int32), k, v), "q must have dtype float32 or float64"),
    ("mixed dtype", lambda q, k, v: (q, k, v.astype(np.float64)), "v must have the dtype of q"),
    ("empty", lambda q, k, v: (q[:, :0].copy(), k[:, :0].copy(), v), "q must not be empty"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_raises_value_error_naming_it(case) -> None:
    _, make, message = case
    args = make(*_arrays())
    with pytest.raises(ValueError, match=message):
        cca.criss_cross_attention(*args)
    with pytest.raises(ValueError, match=message):  # the native checks, without the Python ones in front
        cca._native().criss_cross_attention_forward(*args)


def test_bad_backward_arguments() -> None:
    q, k, v = _arrays()
    out = cca.criss_cross_attention(q, k, v)
    with pytest.raises(ValueError, match="grad_out must have the shape of v"):
        cca.criss_cross_attention_backward(q, k, v, out, out[:, :2].copy())
    with pytest.raises(ValueError, match="lse must have shape"):
        cca.criss_cross_attention_backward(q, k, v, out, out, np.zeros((1, 3, 4), np.float32))
    with pytest.raises(ValueError, match="lse must be 3-D"):
        cca._native().criss_cross_attention_backward(q, k, v, out, out, np.zeros((1, 3), np.float32))
    with pytest.raises(TypeError, match="q must be a numpy.ndarray"):
        cca.criss_cross_attention([1.0], k, v)


def test_torch_op_rejects_bad_shapes() -> None:
    q, k, v = _qkv((1, 4, 2, 3, 5))
    with pytest.raises(ValueError, match="k must have the channels Cq of q"):
        ops.criss_cross_attention(q, k[:, :1], v)
    with pytest.raises(ValueError, match="v must match q in B, H, W"):
        ops.criss_cross_attention(q, k, v[:, :, :2])
    with pytest.raises(ValueError, match="q must be 4-D"):
        ops.criss_cross_attention(q[0], k, v)


def test_torch_op_accepts_non_contiguous_and_half() -> None:
    q, k, v = _qkv((1, 4, 2, 5, 3), seed=6)
    qt = q.transpose(2, 3).contiguous().transpose(2, 3)  # same values, non-contiguous
    torch.testing.assert_close(ops.criss_cross_attention(qt, k, v), ops.criss_cross_attention(q, k, v))
    out = ops.criss_cross_attention(q.half(), k.half(), v.half())
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), ops.criss_cross_attention_reference(q, k, v), atol=5e-3, rtol=5e-3)


class _Block(torch.nn.Module):
    """The CCNet attention block around the op: 1x1 convs for q, k, v and a residual."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.q, self.k, self.v = torch.nn.Conv2d(c, c // 4, 1), torch.nn.Conv2d(c, c // 4, 1), torch.nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.criss_cross_attention(self.q(x), self.k(x), self.v(x)) + x


def test_torch_compile_fullgraph() -> None:
    q, k, v = _qkv((2, 6, 3, 5, 7), grad=True, seed=7)
    fn = torch.compile(lambda a, b, c: ops.criss_cross_attention(a, b, c) * 2.0, fullgraph=True)
    out = fn(q, k, v)
    (gq,) = torch.autograd.grad(out.sum(), (q,))
    torch.testing.assert_close(out, ops.criss_cross_attention_reference(q, k, v) * 2.0, atol=1e-5, rtol=1e-5)
    (want,) = torch.autograd.grad(ops.criss_cross_attention_reference(q, k, v).sum() * 2.0, (q,))
    torch.testing.assert_close(gq, want, atol=5e-5, rtol=1e-4)


def test_torch_export_keeps_the_op() -> None:
    model, x = _Block().eval(), torch.randn(1, 8, 6, 9)
    dyn = torch.export.Dim.DYNAMIC
    ep = torch.export.export(model, (x,), dynamic_shapes={"x": {2: dyn, 3: dyn}})
    assert any("segrt.criss_cross_attention" in str(n.target) for n in ep.graph.nodes)
    x2 = torch.randn(1, 8, 5, 11)
    torch.testing.assert_close(ep.module()(x2), model(x2))


def _export(model: torch.nn.Module, target: str):
    dyn = torch.export.Dim.DYNAMIC
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ops.export_onnx(model, (torch.randn(1, 8, 6, 9),), target=target,
                               dynamic_shapes={"x": {2: dyn, 3: dyn}}, verbose=False)


def test_onnx_export_standard_ops_matches_ort() -> None:
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = _Block().eval()
    proto = _export(model, "onnx").model_proto
    assert {n.domain for n in proto.graph.node} <= {"", "ai.onnx"}
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for shape in [(1, 8, 11, 5), (1, 8, 4, 13)]:  # height and width other than exported
        x = torch.randn(*shape)
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            np.testing.assert_allclose(got, model(x).numpy(), atol=1e-5, rtol=1e-5)


def test_onnx_export_tensorrt_target_emits_custom_node() -> None:
    proto = _export(_Block().eval(), "tensorrt").model_proto
    nodes = [(n.domain, n.op_type) for n in proto.graph.node]
    assert (ops.ONNX_DOMAIN, "CrissCrossAttention") in nodes
    assert "Einsum" not in {t for _, t in nodes}
    assert ops.ONNX_DOMAIN in {o.domain for o in proto.opset_import}


def test_onnx_target_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="target must be one of"):
        with ops.onnx_target("openvino"):
            pass


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_matches_cpu(dtype: torch.dtype) -> None:
    q, k, v = _qkv((2, 24, 8, 13, 37), seed=8)
    grad = torch.randn(2, 24, 13, 37)
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    qc, kc, vc = (t.cuda().to(dtype).requires_grad_() for t in (q, k, v))
    out = ops.criss_cross_attention(qc, kc, vc)
    got = torch.autograd.grad(out, (qc, kc, vc), grad.cuda().to(dtype))
    qr, kr, vr = (t.double().requires_grad_() for t in (q, k, v))
    ref = ops.criss_cross_attention_reference(qr, kr, vr)
    want = torch.autograd.grad(ref, (qr, kr, vr), grad.double())
    torch.testing.assert_close(out.double().cpu(), ref, atol=tol, rtol=tol)
    for g, w in zip(got, want):
        torch.testing.assert_close(g.double().cpu(), w, atol=tol * 10, rtol=tol * 10)


def test_flop_counter_counts_criss_cross_attention() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    q, v = torch.randn(2, 8, 10, 12), torch.randn(2, 16, 10, 12)
    with FlopCounterMode(display=False) as counter:
        ops.criss_cross_attention(q, q, v)
    assert counter.get_total_flops() == 2 * 2 * 10 * 12 * (10 + 12 - 1) * (8 + 16)
