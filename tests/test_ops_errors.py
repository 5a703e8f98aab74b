"""Bad input to engine.ops and engine._C raises a clear ValueError/TypeError naming the problem, never a crash."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from engine import _C, ops

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
IMG = np.zeros((8, 10, 3), np.uint8)
LOGITS = np.zeros((1, 4, 6, 7), np.float32)
LABELS = np.zeros((8, 10), np.uint8)
PALETTE = np.zeros((5, 3), np.uint8)

# (id, call, message fragment). Each call goes through engine.ops (Python checks) and, where the name is the same,
# straight into engine._C (native checks) with the same arguments.
CASES: list[tuple[str, str, tuple, dict, str]] = [
    ("pre-dtype", "preprocess", (IMG.astype(np.float32), 4, 4, MEAN, STD), {}, "img must have dtype uint8"),
    ("pre-rank", "preprocess", (IMG[:, :, 0].copy(), 4, 4, MEAN, STD), {}, "img must be 3-D"),
    ("pre-channels", "preprocess", (np.zeros((8, 10, 4), np.uint8), 4, 4, MEAN, STD), {}, "3 channels"),
    ("pre-noncontig", "preprocess", (IMG[:, ::2], 4, 4, MEAN, STD), {}, "C-contiguous"),
    ("pre-empty", "preprocess", (np.zeros((0, 10, 3), np.uint8), 4, 4, MEAN, STD), {}, "must not be empty"),
    ("pre-out-h", "preprocess", (IMG, 0, 4, MEAN, STD), {}, "out_h must be in"),
    ("pre-out-w", "preprocess", (IMG, 4, -3, MEAN, STD), {}, "out_w must be in"),
    ("pre-mean-len", "preprocess", (IMG, 4, 4, (1.0, 2.0), STD), {}, "mean must have 3 values"),
    ("pre-mean-str", "preprocess", (IMG, 4, 4, ("a", "b", "c"), STD), {}, "mean must be 3 numbers"),
    ("pre-std-zero", "preprocess", (IMG, 4, 4, MEAN, (1.0, 0.0, 1.0)), {}, "std values must be finite and nonzero"),
    ("pre-mean-nan", "preprocess", (IMG, 4, 4, (1.0, float("nan"), 1.0), STD), {}, "mean values must be finite"),
    ("pre-out-shape", "preprocess", (IMG, 4, 4, MEAN, STD), {"out": np.zeros((1, 3, 4, 5), np.float32)}, "shape"),
    ("pre-out-dtype", "preprocess", (IMG, 4, 4, MEAN, STD), {"out": np.zeros((1, 3, 4, 4), np.float64)}, "float32"),
    (
        "pre-out-noncontig",
        "preprocess",
        (IMG, 4, 4, MEAN, STD),
        {"out": np.zeros((1, 3, 4, 8), np.float32)[..., ::2]},
        "C-contiguous",
    ),
    ("rs-dtype", "resize_bilinear", (LOGITS.astype(np.float16), 4, 4), {}, "x must have dtype float32 or float64"),
    ("rs-int", "resize_bilinear", (LOGITS.astype(np.int32), 4, 4), {}, "x must have dtype float32 or float64"),
    ("rsb-dtype", "resize_bilinear_backward", (LOGITS.astype(np.float16), 4, 4), {}, "grad_out must have dtype"),
    ("rs-rank", "resize_bilinear", (LOGITS[0], 4, 4), {}, "x must be 4-D"),
    ("rs-noncontig", "resize_bilinear", (LOGITS.transpose(0, 1, 3, 2), 4, 4), {}, "C-contiguous"),
    ("rs-empty", "resize_bilinear", (np.zeros((1, 0, 3, 3), np.float32), 4, 4), {}, "must not be empty"),
    ("rs-out-h", "resize_bilinear", (LOGITS, 0, 4), {}, "out_h must be in"),
    ("rs-huge", "resize_bilinear", (LOGITS, 1 << 30, 4), {}, "out_h must be in"),
    ("rsb-rank", "resize_bilinear_backward", (LOGITS[0], 4, 4), {}, "grad_out must be 4-D"),
    ("rsb-in-w", "resize_bilinear_backward", (LOGITS, 4, 0), {}, "in_w must be in"),
    ("am-dtype", "resize_argmax", (LOGITS.astype(np.float16), 4, 4), {}, "logits must have dtype float32"),
    ("am-rank", "resize_argmax", (LOGITS[0], 4, 4), {}, "logits must be 4-D"),
    ("am-noncontig", "resize_argmax", (LOGITS[:, ::2], 4, 4), {}, "C-contiguous"),
    ("am-empty-c", "resize_argmax", (np.zeros((1, 0, 6, 7), np.float32), 4, 4), {}, "must not be empty"),
    ("am-empty-b", "resize_argmax", (np.zeros((0, 3, 6, 7), np.float32), 4, 4), {}, "must not be empty"),
    ("am-out-w", "resize_argmax", (LOGITS, 4, 0), {}, "out_w must be in"),
    ("ov-frame-dtype", "overlay", (IMG.astype(np.int16), LABELS, PALETTE, 0.5), {}, "frame must have dtype uint8"),
    ("ov-shape", "overlay", (IMG, LABELS[:4], PALETTE, 0.5), {}, "must equal the frame"),
    ("ov-label-dtype", "overlay", (IMG, LABELS.astype(np.float32), PALETTE, 0.5), {}, "labels must have dtype"),
    ("ov-label-rank", "overlay", (IMG, LABELS[None], PALETTE, 0.5), {}, "labels must be 2-D"),
    ("ov-palette", "overlay", (IMG, LABELS, np.zeros((5, 4), np.uint8), 0.5), {}, "palette must have shape (K, 3)"),
    ("ov-palette-empty", "overlay", (IMG, LABELS, np.zeros((0, 3), np.uint8), 0.5), {}, "must not be empty"),
    ("ov-alpha", "overlay", (IMG, LABELS, PALETTE, 1.5), {}, "alpha must be in [0, 1]"),
    ("ov-alpha-nan", "overlay", (IMG, LABELS, PALETTE, float("nan")), {}, "alpha must be in [0, 1]"),
    ("ov-out", "overlay", (IMG, LABELS, PALETTE, 0.5), {"out": np.zeros((8, 10, 3), np.float32)}, "out must have"),
    ("ov-out-ro", "overlay", (IMG, LABELS, PALETTE, 0.5), {"out": np.broadcast_to(IMG, IMG.shape)}, "out must be"),
    ("co-dtype", "colorize", (LABELS.astype(np.float64), PALETTE), {}, "labels must have dtype"),
    ("co-palette-dtype", "colorize", (LABELS, PALETTE.astype(np.int32)), {}, "palette must have dtype uint8"),
]


def _call(fn: Callable, args: tuple, kwargs: dict) -> None:
    fn(*args, **kwargs)


@pytest.mark.parametrize(("name", "args", "kwargs", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_ops_rejects_bad_input(name, args, kwargs, fragment):
    with pytest.raises(ValueError) as err:
        _call(getattr(ops, name), args, kwargs)
    assert fragment in str(err.value)
    assert name in str(err.value)


@pytest.mark.parametrize(("name", "args", "kwargs", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_native_rejects_bad_input(name, args, kwargs, fragment):
    """The same calls straight into engine._C (no Python checks) fail the same way."""
    if "3 numbers" in fragment:  # pybind11 rejects a non-numeric sequence while converting the argument
        with pytest.raises(TypeError):
            _call(getattr(_C, name), args, kwargs)
        return
    if name == "preprocess":  # positional native signature: (img, out_h, out_w, mean, std, bgr, align_corners, out)
        args = (*args, False, False, kwargs.pop("out", None))
    elif name in ("resize_bilinear", "resize_bilinear_backward", "resize_argmax"):
        args = (*args, False)
    with pytest.raises(ValueError) as err:
        _call(getattr(_C, name), args, kwargs)
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda: ops.preprocess([[1, 2, 3]], 4, 4, MEAN, STD),
        lambda: ops.resize_argmax("logits", 4, 4),
        lambda: ops.resize_bilinear(LOGITS, 4.5, 4),
        lambda: ops.overlay(IMG, LABELS.tolist(), PALETTE),
        lambda: _C.resize_argmax(None, 4, 4, False, False),
        lambda: _C.colorize(LABELS, "palette"),
    ],
)
def test_non_arrays_raise_type_error(call):
    with pytest.raises(TypeError):
        call()


@pytest.mark.skipif(not _C.has_cuda(), reason="built without CUDA")
def test_cuda_launchers_reject_bad_arguments_without_a_gpu():
    with pytest.raises(ValueError, match="logits_ptr"):
        _C.cuda.resize_argmax(0, 1, 19, 8, 8, 1234, 16, 16)
    with pytest.raises(ValueError, match="out_h"):
        _C.cuda.resize_argmax(1234, 1, 19, 8, 8, 1234, 0, 16)
    with pytest.raises(ValueError, match="dtype"):
        _C.cuda.resize_bilinear(1234, 1, 1, 8, 8, 1234, 4, 4, dtype="bfloat16")
    with pytest.raises(ValueError, match="std"):
        _C.cuda.preprocess(1234, 8, 8, 1234, 4, 4, MEAN, (1.0, 0.0, 1.0))
