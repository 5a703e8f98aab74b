"""Buffer reuse: ONNX Runtime IO binding, the TensorRT host output buffer, labels ``out=``; results stay the same
and what a caller was given is never overwritten later."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import engine
from engine import ops
from engine.backends.onnxruntime import OnnxRuntimeBackend
from engine.metadata import ModelMeta
from tests import fake_tensorrt
from tests.conftest import make_tiny_onnx


def batch(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def img(shape: tuple[int, int], seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def ptr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


# ---- ONNX Runtime IO binding -------------------------------------------------------------------------------------

def test_io_binding_same_results_and_reused_output(tiny_onnx) -> None:
    bound, plain = OnnxRuntimeBackend(tiny_onnx[0]), OnnxRuntimeBackend(tiny_onnx[0], io_binding=False)
    assert bound.io_binding and not plain.io_binding
    x, x2 = batch((2, 3, 32, 48)), batch((2, 3, 32, 48), 1)
    ref, ref2 = (plain.session.run(None, {"input": v})[0] for v in (x, x2))
    first = bound.infer_scratch(x)  # first call at a shape: session.run, output shape learned
    np.testing.assert_array_equal(first, ref)
    a = bound.infer_scratch(x)
    np.testing.assert_array_equal(a, ref)
    b = bound.infer_scratch(x2)
    assert ptr(a) == ptr(b) and np.shares_memory(a, b)  # one output buffer, reused while the shape repeats
    np.testing.assert_array_equal(b, ref2)
    c = bound.infer_scratch(batch((1, 3, 32, 48)))  # another shape: a view of the same storage
    c = bound.infer_scratch(batch((1, 3, 32, 48)))
    assert ptr(c) == ptr(a)
    f1, f2 = bound.infer(x), bound.infer(x2)  # infer: fresh arrays the caller owns
    assert not np.shares_memory(f1, f2) and not np.shares_memory(f1, a)
    np.testing.assert_array_equal(f1, ref)
    np.testing.assert_array_equal(f2, ref2)
    np.testing.assert_array_equal(plain.infer(x), ref)


@pytest.mark.parametrize("spin, entry", [(None, ""), (False, "0"), (True, "1")])
def test_spin_sets_the_session_option(tiny_onnx, spin, entry) -> None:
    """``spin`` reaches ONNX Runtime's session config (unset: its own default), and results do not change."""
    p = engine.Predictor(tiny_onnx[0], threads=2, spin=spin)
    opts = p.backend.session.get_session_options()
    try:
        got = opts.get_session_config_entry("session.intra_op.allow_spinning")
    except RuntimeError:  # ONNX Runtime raises for a key that was never set
        got = ""
    assert got == entry
    x = img((40, 56))
    np.testing.assert_array_equal(p.run(x), engine.Predictor(tiny_onnx[0], threads=2).run(x))


def test_io_binding_failure_falls_back(tiny_onnx, monkeypatch) -> None:
    be = OnnxRuntimeBackend(tiny_onnx[0])
    x = batch((1, 3, 16, 16))
    ref = be.infer(x)

    def broken(*a: object) -> None:
        raise RuntimeError("binding not supported here")

    monkeypatch.setattr(be, "_run_bound", broken)
    with pytest.warns(UserWarning, match="IO binding failed.*binding not supported here"):
        np.testing.assert_array_equal(be.infer(x), ref)
    assert not be.io_binding
    np.testing.assert_array_equal(be.infer_scratch(x), ref)


@pytest.mark.parametrize("kw", [{}, {"flip": True}, {"scales": (0.75, 1.0)},
                                {"mode": "slide", "crop_size": 16, "stride": 10, "batch_size": 3}])
def test_predictor_results_unchanged_by_io_binding(tiny_onnx, kw) -> None:
    bound = engine.Predictor(OnnxRuntimeBackend(tiny_onnx[0]), **kw)
    plain = engine.Predictor(OnnxRuntimeBackend(tiny_onnx[0], io_binding=False), **kw)
    imgs = [img((30, 40), i) for i in range(3)] + [img((20, 24))]
    for _ in range(2):  # the second round runs on the bound, reused buffers
        for im in imgs:
            assert np.array_equal(bound.run(im), plain.run(im))
        assert all(np.array_equal(a, b) for a, b in zip(bound.run_batch(imgs), plain.run_batch(imgs)))


def test_results_are_not_overwritten_by_later_calls(tiny_onnx) -> None:
    p = engine.Predictor(tiny_onnx[0])
    a, b = img((30, 40), 1), img((30, 40), 2)
    la = p.run(a)
    keep = la.copy()
    lg = p.infer(p.preprocess(a))
    keep_lg = lg.copy()
    for _ in range(3):
        p.run(b), p.infer(p.preprocess(b)), p.run_batch([b, b])
    assert np.array_equal(la, keep) and np.array_equal(lg, keep_lg)
    x1 = p.preprocess(a).copy()
    assert not np.shares_memory(p.infer(x1), p.infer(x1))


# ---- labels buffers ----------------------------------------------------------------------------------------------

def test_postprocess_and_run_write_into_out(tiny_onnx) -> None:
    p = engine.Predictor(tiny_onnx[0])
    im = img((30, 40))
    ref, ref_scores = p.run(im, return_scores=True)
    out = np.empty((30, 40), np.uint8)
    for _ in range(2):
        got = p.run(im, out=out)
        assert got is out or np.shares_memory(got, out)
        assert np.array_equal(out, ref)
    lg = p.infer(p.preprocess(im))
    labels, scores = np.empty((1, 30, 40), np.uint8), np.empty((1, 30, 40), np.float32)
    r = p.postprocess(lg, 30, 40, True, out=labels, scores_out=scores)
    assert r[0] is labels and r[1] is scores
    assert np.array_equal(labels[0], ref) and np.array_equal(scores[0], ref_scores)
    assert p.postprocess(lg, 30, 40) is not p.postprocess(lg, 30, 40)  # fresh by default
    with pytest.raises(ValueError, match="out must have dtype uint8"):
        p.run(im, out=np.empty((30, 40), np.int32))
    with pytest.raises(ValueError, match=r"out must have shape \(1, 30, 40\)"):
        p.run(im, out=np.empty((30, 41), np.uint8))


def test_resize_argmax_out_checks() -> None:
    x = batch((2, 300, 5, 6))  # > 255 classes: int32 labels
    ref = ops.resize_argmax(x, 9, 11)
    out = np.empty((2, 9, 11), np.int32)
    assert ops.resize_argmax(x, 9, 11, out=out) is out and np.array_equal(out, ref)
    with pytest.raises(ValueError, match="scores_out is only written with return_scores"):
        ops.resize_argmax(x, 9, 11, scores_out=np.empty((2, 9, 11), np.float32))
    with pytest.raises(ValueError, match="scores_out must have dtype float32"):
        ops.resize_argmax(x, 9, 11, return_scores=True, scores_out=np.empty((2, 9, 11), np.float64))
    ro = np.empty((2, 9, 11), np.int32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writeable"):
        ops.resize_argmax(x, 9, 11, out=ro)


# ---- TensorRT host output buffer ---------------------------------------------------------------------------------

@pytest.mark.parametrize("pinned, out_dtype", [(True, np.float32), (False, np.float32), (True, np.float16)])
def test_tensorrt_host_output_buffer_is_reused(tmp_path: Path, monkeypatch, pinned, out_dtype) -> None:
    meta = ModelMeta(classes=["a", "b", "c", "d"])
    _, w = make_tiny_onnx(tmp_path / "t.onnx", meta=meta)
    shapes = "1x3x16x16,2x3x32x32,2x3x64x64"
    plan = fake_tensorrt.write_plan(tmp_path, shapes, meta)
    cuda, _ = fake_tensorrt.install(monkeypatch, tmp_path, shapes, w, pinned=pinned, out_dtype=out_dtype)
    from engine.backends import open_backend

    be = open_backend(plan)
    assert (be._host is not None) == pinned and be.out_channels == 4
    x, x2 = batch((2, 3, 32, 48)), batch((2, 3, 32, 48), 1)
    tol = 2e-3 if out_dtype == np.float16 else 1e-5
    from tests.test_backend_limits import tiny_net

    a = be.infer_scratch(x)
    np.testing.assert_allclose(a, tiny_net(w, x), atol=tol, rtol=tol)
    b = be.infer_scratch(x2)
    assert ptr(a) == ptr(b) and a.dtype == np.float32
    np.testing.assert_allclose(b, tiny_net(w, x2), atol=tol, rtol=tol)
    if pinned and out_dtype == np.float32:
        assert ptr(b) == be._host[0]  # the logits are the pinned buffer itself
    f1, f2 = be.infer(x), be.infer(x2)
    assert f1.dtype == np.float32 and not np.shares_memory(f1, f2) and not np.shares_memory(f1, b)
    np.testing.assert_allclose(f1, tiny_net(w, x), atol=tol, rtol=tol)
    host = be._host
    be.close()
    assert host is None or host[0] in cuda.freed
