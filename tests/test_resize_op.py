"""segrt::resize_bilinear (training.ops.resize_bilinear) vs F.interpolate: forward, gradients, compile, export, ONNX."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ops = pytest.importorskip("training.ops")
F = torch.nn.functional

# (N, C, H, W) -> (out_h, out_w): odd sizes, H != W, 1x1 input and output, up- and downscale, identity, mixed.
CASES = [
    ((2, 3, 7, 5), (13, 4)),
    ((1, 2, 1, 1), (5, 3)),
    ((1, 2, 1, 6), (4, 9)),
    ((2, 2, 16, 32), (128, 256)),
    ((1, 3, 33, 17), (8, 9)),
    ((1, 2, 9, 11), (9, 11)),
    ((2, 1, 10, 12), (1, 1)),
    ((1, 2, 64, 48), (31, 97)),
]
IDS = [f"{'x'.join(map(str, s))}->{d[0]}x{d[1]}" for s, d in CASES]


def _x(shape: tuple[int, ...], dtype: torch.dtype = torch.float32, seed: int = 0, grad: bool = False) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).requires_grad_(grad)


def _ref(x: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners, antialias=False)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("shape", "size"), CASES, ids=IDS)
def test_forward_matches_interpolate(shape, size, dtype, align_corners) -> None:
    x = _x(shape, dtype)
    out = ops.resize_bilinear(x, size, align_corners=align_corners)
    assert out.shape == (*shape[:2], *size) and out.dtype == dtype and out.is_contiguous()
    atol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out, _ref(x, size, align_corners), atol=atol, rtol=0)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize(("shape", "size"), CASES, ids=IDS)
def test_backward_matches_interpolate_autograd(shape, size, align_corners) -> None:
    x = _x(shape, seed=1, grad=True)
    g = _x((*shape[:2], *size), seed=2)
    (want,) = torch.autograd.grad(_ref(x, size, align_corners), x, g)
    (got,) = torch.autograd.grad(ops.resize_bilinear(x, size, align_corners), x, g)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize(("shape", "size"), [c for c in CASES if c[0][2] * c[0][3] <= 64 * 48 and c[1][0] < 100],
                         ids=[i for c, i in zip(CASES, IDS) if c[0][2] * c[0][3] <= 64 * 48 and c[1][0] < 100])
def test_gradcheck_float64(shape, size, align_corners) -> None:
    """gradcheck and gradgradcheck of our op (float64 kernels), and the float64 gradient equals F.interpolate's."""
    x = _x(shape, torch.float64, seed=3, grad=True)
    fn = lambda t: ops.resize_bilinear(t, size, align_corners)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,), fast_mode=shape[2] * shape[3] > 200)
    assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)
    g = _x((*shape[:2], *size), torch.float64, seed=4)
    (want,) = torch.autograd.grad(_ref(x, size, align_corners), x, g)
    (got,) = torch.autograd.grad(fn(x), x, g)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


def test_size_forms_and_non_contiguous_input() -> None:
    x = _x((1, 3, 8, 6)).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ops.resize_bilinear(x, 5), _ref(x, (5, 5), False), atol=1e-5, rtol=0)
    torch.testing.assert_close(ops.resize_bilinear(x, torch.Size([4, 9])), _ref(x, (4, 9), False), atol=1e-5, rtol=0)
    half = ops.resize_bilinear(x.half(), (7, 3))
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), _ref(x.half().float(), (7, 3), False), atol=2e-3, rtol=2e-3)


class _Head(torch.nn.Module):
    """Conv, then resize to a fixed size and to twice the input size (the size comes from the shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        up = ops.resize_bilinear(y, (2 * x.shape[2], 2 * x.shape[3]))
        return up + ops.resize_bilinear(ops.resize_bilinear(y, (5, 7), True), up.shape[2:], True)


def test_torch_compile_fullgraph() -> None:
    x = _x((2, 3, 9, 6), grad=True, seed=5)
    fn = torch.compile(lambda t: ops.resize_bilinear(t, (13, 17)) * 2.0, fullgraph=True)
    out = fn(x)
    torch.testing.assert_close(out, _ref(x, (13, 17), False) * 2.0, atol=1e-5, rtol=1e-5)
    (got,) = torch.autograd.grad(out.sum(), x)
    (want,) = torch.autograd.grad(_ref(x, (13, 17), False).sum() * 2.0, x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_torch_export_keeps_the_op_with_dynamic_shapes() -> None:
    torch.manual_seed(0)
    model, x = _Head().eval(), _x((1, 3, 6, 9))
    dyn = torch.export.Dim.DYNAMIC
    ep = torch.export.export(model, (x,), dynamic_shapes={"x": {2: dyn, 3: dyn}})
    assert any("segrt.resize_bilinear" in str(n.target) for n in ep.graph.nodes)
    x2 = _x((1, 3, 5, 11), seed=1)
    torch.testing.assert_close(ep.module()(x2), model(x2))


def test_onnx_export_is_a_standard_resize_and_matches_ort() -> None:
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = _Head().eval()
    dyn = torch.export.Dim.DYNAMIC
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = ops.export_onnx(model, (_x((2, 3, 6, 9)),), dynamic_shapes={"x": {0: dyn, 2: dyn, 3: dyn}},
                                verbose=False).model_proto
    nodes = {(n.domain, n.op_type) for n in proto.graph.node}
    assert {d for d, _ in nodes} <= {"", "ai.onnx"} and ("", "Resize") in nodes
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for shape in [(2, 3, 6, 9), (1, 3, 11, 5), (3, 3, 4, 13)]:  # batch, height and width other than exported
        x = _x(shape, seed=shape[2])
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            np.testing.assert_allclose(got, model(x).numpy(), atol=1e-5, rtol=1e-5)


BAD = [
    ("rank", lambda: ops.resize_bilinear(_x((3, 4, 5)), (2, 2)), "x must be 4-D"),
    ("dtype", lambda: ops.resize_bilinear(torch.ones(1, 1, 4, 4, dtype=torch.int64), (2, 2)),
     "x must be a floating-point tensor"),
    ("out-h", lambda: ops.resize_bilinear(_x((1, 1, 4, 4)), (0, 2)), "out_h must be >= 1"),
    ("out-w", lambda: ops.resize_bilinear(_x((1, 1, 4, 4)), (3, -1)), "out_w must be >= 1"),
    ("huge", lambda: ops.resize_bilinear(_x((1, 1, 4, 4)), (1 << 30, 2)), "out_h must be <="),
    ("size-float", lambda: ops.resize_bilinear(_x((1, 1, 4, 4)), (2.5, 2)), "out_h must be an int"),
    ("size-triple", lambda: ops.resize_bilinear(_x((1, 1, 4, 4)), (2, 2, 2)), "size must be an int or a pair"),
    ("empty", lambda: ops.resize_bilinear(torch.ones(1, 0, 4, 4), (2, 2)), "x must not be empty"),
    ("empty-hw", lambda: ops.resize_bilinear(torch.ones(1, 2, 0, 4), (2, 2)), "x must not be empty"),
    ("align", lambda: ops.resize_bilinear(_x((1, 1, 4, 4)), (2, 2), "yes"), "align_corners must be a bool"),
    ("op-direct", lambda: torch.ops.segrt.resize_bilinear(torch.ones(1, 1, 4, 4), 0, 2, False), "out_h must be >= 1"),
    ("backward-direct", lambda: torch.ops.segrt.resize_bilinear_backward(torch.ones(1, 1, 4), 2, 2, False),
     "grad must be 4-D"),
]


@pytest.mark.parametrize(("call", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_raises_value_error_naming_it(call, fragment) -> None:
    with pytest.raises(ValueError, match="resize_bilinear") as err:
        call()
    assert fragment in str(err.value)


BIG = [((2, 19, 128, 256), (1024, 2048)), ((1, 4, 1024, 2048), (97, 131))]  # 8x up; ~10x down
BIG_IDS = ["2x19x128x256->1024x2048", "1x4x1024x2048->97x131"]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize(("shape", "size"), [*CASES, *BIG], ids=[*IDS, *BIG_IDS])
def test_cuda_forward_backward_match_interpolate(shape, size, dtype, align_corners) -> None:
    x = _x(shape, seed=6)
    g = _x((*shape[:2], *size), seed=7)
    xr = x.double().requires_grad_()
    ref = _ref(xr, size, align_corners)
    (want,) = torch.autograd.grad(ref, xr, g.double())
    xc = x.cuda().to(dtype).requires_grad_()
    out = ops.resize_bilinear(xc, size, align_corners)
    assert out.dtype == dtype and out.device == xc.device
    (got,) = torch.autograd.grad(out, xc, g.cuda().to(dtype))
    assert got.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    scale = want.abs().max().item()
    torch.testing.assert_close(out.double().cpu(), ref.detach(), atol=tol * 4, rtol=tol)
    torch.testing.assert_close(got.double().cpu(), want, atol=tol * max(scale, 1.0), rtol=tol)


@pytest.mark.gpu
@cuda
def test_cuda_backward_is_deterministic_and_compiles() -> None:
    x = _x((2, 5, 33, 47), seed=8).cuda().requires_grad_()
    g = _x((2, 5, 130, 190), seed=9).cuda()
    grads = [torch.autograd.grad(ops.resize_bilinear(x, (130, 190)), x, g)[0] for _ in range(3)]
    assert all(torch.equal(grads[0], t) for t in grads[1:])
    fn = torch.compile(lambda t: ops.resize_bilinear(t, (130, 190)), fullgraph=True)
    torch.testing.assert_close(fn(x), _ref(x, (130, 190), False), atol=1e-5, rtol=1e-5)
