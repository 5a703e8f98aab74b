"""Parity of the native kernels (engine.ops / engine._C) with their PyTorch and NumPy references."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from engine import ops

torch = pytest.importorskip("torch")
F = torch.nn.functional

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)

# (in_h, in_w) -> (out_h, out_w): odd sizes, H != W, 1x1 input, up- and downscale, identity, one-pixel outputs.
RESIZES = [
    ((7, 5), (13, 4)),
    ((1, 1), (5, 3)),
    ((1, 6), (4, 9)),
    ((16, 32), (128, 256)),
    ((33, 17), (8, 9)),
    ((9, 11), (9, 11)),
    ((10, 12), (1, 1)),
    ((64, 48), (31, 97)),
]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _torch_resize(x: np.ndarray, size: tuple[int, int], align_corners: bool) -> np.ndarray:
    t = F.interpolate(torch.from_numpy(x), size=size, mode="bilinear", align_corners=align_corners)
    return t.numpy()


def _assert_labels_match(labels: np.ndarray, ref: np.ndarray, tol: float = 1e-5) -> None:
    """Labels equal torch's argmax except where the top two interpolated logits are closer than ``tol``."""
    expect = ref.argmax(1)
    bad = labels.astype(np.int64) != expect
    if bad.any():
        top2 = np.sort(ref, axis=1)[:, -2:]
        gap = (top2[:, 1] - top2[:, 0])[bad]
        assert gap.max() < tol, f"{bad.sum()} labels differ with a logit gap up to {gap.max()}"


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize(("src", "dst"), RESIZES)
def test_resize_bilinear_matches_torch(src, dst, align_corners):
    x = _rng().standard_normal((2, 3, *src), dtype=np.float32)
    got = ops.resize_bilinear(x, *dst, align_corners=align_corners)
    assert got.shape == (2, 3, *dst) and got.dtype == np.float32
    np.testing.assert_allclose(got, _torch_resize(x, dst, align_corners), rtol=0, atol=1e-5)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize(("src", "dst"), RESIZES)
def test_resize_bilinear_backward_matches_autograd(src, dst, align_corners):
    rng = _rng(1)
    x = torch.from_numpy(rng.standard_normal((2, 2, *src), dtype=np.float32)).requires_grad_()
    g = rng.standard_normal((2, 2, *dst), dtype=np.float32)
    F.interpolate(x, size=dst, mode="bilinear", align_corners=align_corners).backward(torch.from_numpy(g))
    got = ops.resize_bilinear_backward(g, *src, align_corners=align_corners)
    np.testing.assert_allclose(got, x.grad.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize(("src", "dst"), RESIZES)
def test_resize_bilinear_float64_matches_torch(src, dst, align_corners):
    """float64 in -> float64 out, weights and sums in float64 like PyTorch's: forward and backward within 1e-12."""
    rng = _rng(3)
    x = torch.from_numpy(rng.standard_normal((2, 3, *src))).requires_grad_()
    g = rng.standard_normal((2, 3, *dst))
    ref = F.interpolate(x, size=dst, mode="bilinear", align_corners=align_corners)
    ref.backward(torch.from_numpy(g))
    got = ops.resize_bilinear(x.detach().numpy(), *dst, align_corners=align_corners)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref.detach().numpy(), rtol=0, atol=1e-12)
    grad = ops.resize_bilinear_backward(g, *src, align_corners=align_corners)
    assert grad.dtype == np.float64
    np.testing.assert_allclose(grad, x.grad.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize(("src", "dst"), RESIZES)
@pytest.mark.parametrize("channels", [1, 5, 19])
def test_resize_argmax_matches_torch(src, dst, channels, align_corners):
    x = _rng(2).standard_normal((2, channels, *src), dtype=np.float32)
    ref = _torch_resize(x, dst, align_corners)
    labels, scores = ops.resize_argmax(x, *dst, align_corners=align_corners, return_scores=True)
    assert labels.shape == (2, *dst) and labels.dtype == np.uint8
    assert scores.shape == (2, *dst) and scores.dtype == np.float32
    _assert_labels_match(labels, ref)
    np.testing.assert_allclose(scores, ref.max(1), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(ops.resize_argmax(x, *dst, align_corners=align_corners), labels)


@pytest.mark.parametrize(("channels", "dtype"), [(255, np.uint8), (256, np.int32), (300, np.int32)])
def test_resize_argmax_label_dtype(channels, dtype):
    x = _rng(3).standard_normal((1, channels, 6, 7), dtype=np.float32)
    labels = ops.resize_argmax(x, 11, 9)
    assert labels.dtype == dtype
    _assert_labels_match(labels, _torch_resize(x, (11, 9), False))


def test_resize_argmax_ties_keep_first_channel():
    x = np.zeros((1, 4, 3, 3), np.float32)
    x[:, 2] = 1.0
    x[:, 3] = 1.0
    assert (ops.resize_argmax(x, 5, 5) == 2).all()
    assert (ops.resize_argmax(np.zeros((1, 3, 2, 2), np.float32), 4, 4) == 0).all()


def test_resize_argmax_large_upscale():
    x = _rng(4).standard_normal((1, 19, 32, 64), dtype=np.float32)
    ref = _torch_resize(x, (256, 512), False)
    _assert_labels_match(ops.resize_argmax(x, 256, 512), ref)


def test_resize_argmax_concurrent_threads():
    x = _rng(5).standard_normal((1, 7, 20, 30), dtype=np.float32)
    expect = ops.resize_argmax(x, 97, 131)
    results: list[np.ndarray] = []

    def work() -> None:
        for _ in range(5):
            results.append(ops.resize_argmax(x, 97, 131))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20
    for r in results:
        np.testing.assert_array_equal(r, expect)


def _torch_preprocess(img: np.ndarray, size: tuple[int, int], bgr: bool, align_corners: bool) -> np.ndarray:
    t = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    if bgr:
        t = t.flip(1)
    if tuple(t.shape[2:]) != size:
        t = F.interpolate(t, size=size, mode="bilinear", align_corners=align_corners)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return ((t - mean) / std).numpy()


@pytest.mark.parametrize("bgr", [False, True])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize(("src", "dst"), RESIZES)
def test_preprocess_matches_torch(src, dst, bgr, align_corners):
    img = _rng(6).integers(0, 256, (*src, 3), dtype=np.uint8)
    got = ops.preprocess(img, *dst, MEAN, STD, bgr=bgr, align_corners=align_corners)
    assert got.shape == (1, 3, *dst) and got.dtype == np.float32
    ref = _torch_preprocess(img, dst, bgr, align_corners)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_preprocess_bgr_is_channel_swap():
    img = _rng(7).integers(0, 256, (15, 20, 3), dtype=np.uint8)
    a = ops.preprocess(img, 9, 31, MEAN, STD, bgr=True)
    b = ops.preprocess(np.ascontiguousarray(img[:, :, ::-1]), 9, 31, MEAN, STD)
    np.testing.assert_array_equal(a, b)


def test_preprocess_out_buffer_reused():
    img = _rng(8).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    buf = np.full((1, 3, 24, 32), np.nan, np.float32)
    got = ops.preprocess(img, 24, 32, MEAN, STD, out=buf)
    assert got is buf or np.shares_memory(got, buf)
    np.testing.assert_array_equal(buf, ops.preprocess(img, 24, 32, MEAN, STD))
    img2 = _rng(9).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    ops.preprocess(img2, 24, 32, MEAN, STD, out=buf)
    np.testing.assert_array_equal(buf, ops.preprocess(img2, 24, 32, MEAN, STD))


def test_preprocess_accepts_numpy_mean_std():
    img = _rng(10).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    a = ops.preprocess(img, 5, 6, np.array(MEAN), np.array(STD, np.float32))
    np.testing.assert_allclose(a, _torch_preprocess(img, (5, 6), False, False), rtol=1e-5, atol=1e-5)


def _numpy_overlay(frame: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float) -> np.ndarray:
    k = len(palette)
    valid = (labels >= 0) & (labels < k)
    color = palette[np.where(valid, labels, 0)].astype(np.float32)
    a = np.float32(alpha)
    blend = np.floor(frame.astype(np.float32) * (np.float32(1) - a) + (a * color + np.float32(0.5)))
    return np.where(valid[..., None], blend, frame).astype(np.uint8)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("label_dtype", [np.uint8, np.int32, np.int64])
def test_overlay_matches_numpy(alpha, label_dtype):
    rng = _rng(11)
    frame = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    palette = rng.integers(0, 256, (19, 3), dtype=np.uint8)
    labels = rng.integers(0, 19, (17, 23)).astype(label_dtype)
    labels[0, :5] = 255  # ignore -> unchanged
    if label_dtype != np.uint8:
        labels[1, :3] = -1
    got = ops.overlay(frame, labels, palette, alpha)
    ref = _numpy_overlay(frame, labels, palette, alpha)
    assert got.dtype == np.uint8 and got.shape == frame.shape
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1
    np.testing.assert_array_equal(got[0, :5], frame[0, :5])
    if alpha == 0.0:
        np.testing.assert_array_equal(got, frame)
    if alpha == 1.0:
        valid = labels < 19
        np.testing.assert_array_equal(got[valid & (labels >= 0)], palette[labels[valid & (labels >= 0)]])


def test_overlay_in_place():
    rng = _rng(12)
    frame = rng.integers(0, 256, (8, 9, 3), dtype=np.uint8)
    palette = rng.integers(0, 256, (4, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, (8, 9), dtype=np.uint8)
    expect = ops.overlay(frame, labels, palette, 0.4)
    out = ops.overlay(frame, labels, palette, 0.4, out=frame)
    assert np.shares_memory(out, frame)
    np.testing.assert_array_equal(frame, expect)


@pytest.mark.parametrize("label_dtype", [np.uint8, np.int32, np.int64])
def test_colorize_matches_numpy(label_dtype):
    rng = _rng(13)
    palette = rng.integers(0, 256, (6, 3), dtype=np.uint8)
    labels = rng.integers(0, 8, (11, 7)).astype(label_dtype)  # 6 and 7 are out of range -> black
    got = ops.colorize(labels, palette)
    ref = np.where((labels < 6)[..., None], palette[np.minimum(labels, 5)], 0).astype(np.uint8)
    np.testing.assert_array_equal(got, ref)


def test_cuda_introspection_never_fails():
    assert isinstance(ops.has_cuda(), bool)
    n = ops.cuda_device_count()
    assert isinstance(n, int) and n >= 0
