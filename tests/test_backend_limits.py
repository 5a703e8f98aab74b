"""Backend limits (max batch, fixed or bounded H/W): the Predictor splits, pads and resizes to fit, or says why not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import engine
from engine.backends import open_backend
from engine.backends.base import Backend, Limits
from engine.batching import infer_in_chunks
from engine.metadata import ModelMeta
from tests import fake_tensorrt
from tests.conftest import make_tiny_onnx

CLASSES = ["a", "b", "c", "d"]


def tiny_net(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The network of make_tiny_onnx in numpy: 1x1 conv, 2x2 average pool."""
    c = np.einsum("kc,nchw->nkhw", w, x)
    n, k, h, wd = c.shape
    c = c[:, :, : h // 2 * 2, : wd // 2 * 2]
    return c.reshape(n, k, h // 2, 2, wd // 2, 2).mean((3, 5)).astype(np.float32)


class LimitedBackend(Backend):
    """A numpy backend that declares limits and fails loudly (like TensorRT) on a shape outside them."""

    name = "limited"

    def __init__(self, w: np.ndarray, limits: Limits, meta: ModelMeta | None = None) -> None:
        self.w, self.limits, self.calls = w, limits, []
        self.meta = meta or ModelMeta(classes=CLASSES[: w.shape[0]])

    def infer(self, x: np.ndarray) -> np.ndarray:
        n, _, h, wd = x.shape
        for v, (lo, hi) in ((n, self.limits.batch), (h, self.limits.height), (wd, self.limits.width)):
            assert lo <= v and (hi is None or v <= hi), f"shape {x.shape} outside the profile {self.limits}"
        self.calls.append(x.shape)
        return tiny_net(self.w, x)


@pytest.fixture
def w() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)


def img(shape: tuple[int, int], seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


# ---- the Limits type and the chunking -----------------------------------------------------------------------------

def test_limits_from_dims_profile_and_messages() -> None:
    assert Limits().unlimited and Limits().fixed_hw is None and Limits().max_batch is None
    s = Limits.from_dims([1, 3, 64, 128])
    assert s.batch == (1, 1) and s.fixed_hw == (64, 128) and s.max_batch == 1
    assert Limits.from_dims([None, 3, None, None]).unlimited
    p = Limits.from_profile((2, 3, 16, 32), (4, 3, 64, 64))
    assert (p.min_batch, p.max_batch, p.fixed_hw) == (2, 4, None)
    assert p.hw_error(32, 48) is None
    assert "height 8 is outside the model's range 16..64" in p.hw_error(8, 48)
    assert "width 100" in p.hw_error(32, 100) and p.describe() == "B 2..4, H 16..64, W 32..64"
    with pytest.raises(ValueError, match="Limits.batch"):
        Limits(batch=(3, 2))


def test_infer_in_chunks_splits_pads_and_copies_reused_output(w) -> None:
    x = np.random.default_rng(2).standard_normal((5, 3, 8, 8)).astype(np.float32)
    shared = np.empty((4, 4, 4, 4), np.float32)
    seen = []

    def reusing(c: np.ndarray) -> np.ndarray:  # returns the same buffer every call, like infer_scratch
        seen.append(c.shape[0])
        out = shared[: c.shape[0]]
        out[...] = tiny_net(w, c)
        return out

    np.testing.assert_allclose(infer_in_chunks(reusing, x, (1, 2)), tiny_net(w, x), rtol=1e-6)
    assert seen == [2, 2, 1]
    seen.clear()
    np.testing.assert_allclose(infer_in_chunks(reusing, x[:1], (2, 4)), tiny_net(w, x[:1]), rtol=1e-6)
    assert seen == [2]  # padded up to the minimum batch


# ---- a backend with max batch 1 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [{"flip": True}, {"mode": "slide", "crop_size": 16, "stride": 12, "batch_size": 4},
                                {"mode": "slide", "crop_size": 16, "stride": 12, "flip": True,
                                 "scales": (0.75, 1.0)},
                                {"scales": (0.5, 1.0, 1.5), "flip": True}])
def test_max_batch_one_matches_unlimited(w, kw) -> None:
    ref = engine.Predictor(LimitedBackend(w, Limits()), **kw)
    one = LimitedBackend(w, Limits(batch=(1, 1)))
    p = engine.Predictor(one, **kw)
    im = img((30, 44))
    np.testing.assert_allclose(p.logits(im), ref.logits(im), rtol=1e-5, atol=1e-6)
    assert np.array_equal(p.run(im), ref.run(im))
    assert {c[0] for c in one.calls} == {1}


def test_run_batch_and_min_batch(w) -> None:
    imgs = [img((24, 32), i) for i in range(5)]
    ref = [engine.Predictor(LimitedBackend(w, Limits())).run(im) for im in imgs]
    one = LimitedBackend(w, Limits(batch=(1, 1)))
    assert all(np.array_equal(a, b) for a, b in zip(engine.Predictor(one, batch_size=8).run_batch(imgs), ref))
    assert one.calls == [(1, 3, 24, 32)] * 5
    two = LimitedBackend(w, Limits(batch=(2, 3)))  # a TensorRT profile may start above batch 1: pad
    p = engine.Predictor(two, batch_size=8)
    assert all(np.array_equal(a, b) for a, b in zip(p.run_batch(imgs), ref))
    assert np.array_equal(p.run(imgs[0]), ref[0]) and np.array_equal(p.infer(p.preprocess(imgs[0])),
                                                                      tiny_net(w, p.preprocess(imgs[0])))
    assert [c[0] for c in two.calls] == [3, 2, 2, 2]  # run_batch: 3 + 2; run and infer: 1 padded to 2


# ---- fixed and bounded input sizes -------------------------------------------------------------------------------

def test_fixed_shape_model_resizes_to_its_size(w) -> None:
    fixed = LimitedBackend(w, Limits((1, 1), (32, 32), (48, 48)))
    p = engine.Predictor(fixed, flip=True)
    assert p.meta.input_size == (32, 48)
    ref = engine.Predictor(LimitedBackend(w, Limits()), input_size=(32, 48), flip=True)
    for shape in [(32, 48), (50, 70), (9, 13)]:
        labels = p.run(img(shape))
        assert labels.shape == shape and np.array_equal(labels, ref.run(img(shape)))
    slide = engine.Predictor(fixed, mode="slide", stride=(20, 30))  # crop defaults to the fixed size
    assert slide.crop_size == (32, 48) and slide.run(img((70, 90))).shape == (70, 90)


@pytest.mark.parametrize("kw, match", [
    ({"input_size": (16, 16)}, "input size 16x16 .* fixed at 32x48"),
    ({"scales": (0.5, 1.0)}, r"scales=\(0.5, 1.0\) .* fixed at 32x48.*mode='slide'"),
    ({"mode": "slide", "crop_size": 16}, "slide crop_size: .*height 16 is outside the model's range 32..32"),
])
def test_fixed_shape_rejects_other_sizes(w, kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        engine.Predictor(LimitedBackend(w, Limits((1, 1), (32, 32), (48, 48))), **kw)


def test_bounded_hw_is_a_clear_error(w) -> None:
    p = engine.Predictor(LimitedBackend(w, Limits(height=(16, 64), width=(16, 64))))
    assert p.run(img((40, 60))).shape == (40, 60)
    with pytest.raises(ValueError, match=r"network input 100x60: height 100 .* range 16..64.*input_size="):
        p.run(img((100, 60)))
    assert engine.Predictor(p.backend, input_size=(64, 64)).run(img((100, 60))).shape == (100, 60)


# ---- ONNX models with static dims --------------------------------------------------------------------------------

def static_onnx(tmp_path: Path, dims: list[int | None], name: str = "static.onnx") -> tuple[Path, np.ndarray]:
    """make_tiny_onnx's model with the input's dims fixed where ``dims`` has an int (as an exporter would)."""
    path, w = make_tiny_onnx(tmp_path / name, meta=ModelMeta(classes=CLASSES, output_stride=2))
    model = onnx.load(str(path))
    for io, out_dims in ((model.graph.input[0], dims), (model.graph.output[0], [dims[0], None, None, None])):
        for d, v in zip(io.type.tensor_type.shape.dim, out_dims):
            if v is not None:
                d.ClearField("dim_param")
                d.dim_value = v
    onnx.save(model, path)
    return path, w


def test_onnx_static_batch_one(tmp_path: Path) -> None:
    path, w = static_onnx(tmp_path, [1, None, None, None])
    dyn = engine.Predictor(make_tiny_onnx(tmp_path / "dyn.onnx", meta=ModelMeta(classes=CLASSES))[0], flip=True)
    p = engine.Predictor(path, flip=True, batch_size=8)
    assert p.limits == Limits(batch=(1, 1)) and p.backend.out_channels == 4
    im = img((30, 40))
    np.testing.assert_allclose(p.logits(im), dyn.logits(im), rtol=1e-5, atol=1e-5)
    imgs = [img((30, 40), i) for i in range(3)]
    plain = engine.Predictor(path, batch_size=8)
    assert all(np.array_equal(a, b) for a, b in zip(plain.run_batch(imgs), engine.Predictor(dyn.backend)
                                                    .run_batch(imgs)))
    slide = engine.Predictor(path, mode="slide", crop_size=16, batch_size=4)
    assert slide.run(im).shape == (30, 40)
    with pytest.raises(Exception, match="(?i)dimension|shape|batch"):  # the raw backend still refuses batch 2
        open_backend(path).infer(np.zeros((2, 3, 8, 8), np.float32))


def test_onnx_fully_static_runs_at_its_size(tmp_path: Path) -> None:
    path, _ = static_onnx(tmp_path, [1, 3, 32, 48])
    p = engine.Predictor(path, flip=True)
    assert p.meta.input_size == (32, 48) and p.limits.fixed_hw == (32, 48)
    ref = engine.Predictor(make_tiny_onnx(tmp_path / "d.onnx")[0], input_size=(32, 48), flip=True)
    for shape in [(32, 48), (45, 61)]:
        assert np.array_equal(p.run(img(shape)), ref.run(img(shape)))


# ---- a TensorRT plan with the default profile (max batch 1) -------------------------------------------------------

def test_plan_with_batch_one_profile_runs_flip_slide_and_batches(tmp_path: Path, monkeypatch) -> None:
    onnx_path, w = make_tiny_onnx(tmp_path / "tiny.onnx", meta=ModelMeta(classes=CLASSES))
    plan = fake_tensorrt.write_plan(tmp_path, "1x3x16x16,1x3x32x48,1x3x64x64", ModelMeta(classes=CLASSES))
    _, eng = fake_tensorrt.install(monkeypatch, tmp_path, "1x3x16x16,1x3x32x48,1x3x64x64", w)
    p = engine.Predictor(plan, flip=True)
    assert p.backend.name == "tensorrt" and p.limits == Limits((1, 1), (16, 64), (16, 64))
    ref = engine.Predictor(onnx_path, flip=True)
    im = img((30, 40))
    np.testing.assert_allclose(p.logits(im), ref.logits(im), rtol=1e-4, atol=1e-4)
    imgs = [img((30, 40), i) for i in range(3)]
    batched = engine.Predictor(plan, batch_size=8).run_batch(imgs)
    assert all((a == b).mean() > 0.999 for a, b in zip(batched, engine.Predictor(onnx_path).run_batch(imgs)))
    assert engine.Predictor(plan, mode="slide", crop_size=32, batch_size=4).run(img((70, 90))).shape == (70, 90)
    with pytest.raises(ValueError, match="height 100 .* 16..64.*segrt build --shapes"):
        p.run(img((100, 40)))
    assert eng.runs > 0
