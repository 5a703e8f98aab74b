"""CPU benchmarks of the native kernels against their reference chains (pytest-benchmark).

Run: ``.venv/bin/python -m pytest benchmarks/bench_ops.py --benchmark-only`` (add ``--benchmark-json=...`` to keep
results under benchmarks/results/). torch and Pillow references are skipped when not installed.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine import ops

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
LOGITS = np.random.default_rng(0).standard_normal((1, 19, 128, 256), dtype=np.float32)  # 1/8 of 1024x2048
FRAME = np.random.default_rng(1).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
OUT_HW = (1024, 2048)
NET_HW = (512, 1024)


@pytest.fixture(scope="module")
def torch_mod():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    return torch


@pytest.mark.benchmark(group="resize_argmax 19x128x256->1024x2048")
def test_resize_argmax_native(benchmark):
    benchmark(ops.resize_argmax, LOGITS, *OUT_HW)


@pytest.mark.benchmark(group="resize_argmax 19x128x256->1024x2048")
def test_resize_argmax_torch(benchmark, torch_mod):
    x = torch_mod.from_numpy(LOGITS)

    def ref():
        with torch_mod.inference_mode():
            return torch_mod.nn.functional.interpolate(x, size=OUT_HW, mode="bilinear").argmax(1).to(torch_mod.uint8)

    benchmark(ref)


@pytest.mark.benchmark(group="preprocess 1080x1920 -> 512x1024")
def test_preprocess_native(benchmark):
    buf = np.empty((1, 3, *NET_HW), np.float32)
    benchmark(ops.preprocess, FRAME, *NET_HW, MEAN, STD, out=buf)


@pytest.mark.benchmark(group="preprocess 1080x1920 -> 512x1024")
def test_preprocess_pil_numpy(benchmark):
    image = pytest.importorskip("PIL.Image")
    mean = np.array(MEAN, np.float32)
    inv_std = 1.0 / np.array(STD, np.float32)

    def ref():
        small = np.asarray(image.fromarray(FRAME).resize(NET_HW[::-1], image.BILINEAR), np.float32)
        return np.ascontiguousarray(((small - mean) * inv_std).transpose(2, 0, 1))[None]

    benchmark(ref)


@pytest.mark.benchmark(group="preprocess 1080x1920 -> 512x1024")
def test_preprocess_torch(benchmark, torch_mod):
    mean = torch_mod.tensor(MEAN).view(1, 3, 1, 1)
    std = torch_mod.tensor(STD).view(1, 3, 1, 1)

    def ref():
        with torch_mod.inference_mode():
            t = torch_mod.from_numpy(FRAME).permute(2, 0, 1)[None].float()
            t = torch_mod.nn.functional.interpolate(t, size=NET_HW, mode="bilinear")
            return ((t - mean) / std).numpy()

    benchmark(ref)


@pytest.mark.benchmark(group="resize_bilinear 1x19x128x256->1024x2048")
def test_resize_bilinear_native(benchmark):
    benchmark(ops.resize_bilinear, LOGITS, *OUT_HW)


@pytest.mark.benchmark(group="resize_bilinear 1x19x128x256->1024x2048")
def test_resize_bilinear_torch(benchmark, torch_mod):
    x = torch_mod.from_numpy(LOGITS)

    def ref():
        with torch_mod.inference_mode():
            return torch_mod.nn.functional.interpolate(x, size=OUT_HW, mode="bilinear")

    benchmark(ref)


@pytest.mark.benchmark(group="overlay 1080x1920")
def test_overlay_native(benchmark):
    labels = np.random.default_rng(2).integers(0, 19, FRAME.shape[:2], dtype=np.uint8)
    palette = np.random.default_rng(3).integers(0, 256, (19, 3), dtype=np.uint8)
    out = np.empty_like(FRAME)
    benchmark(ops.overlay, FRAME, labels, palette, 0.5, out=out)


@pytest.mark.benchmark(group="overlay 1080x1920")
def test_overlay_numpy(benchmark):
    labels = np.random.default_rng(2).integers(0, 19, FRAME.shape[:2], dtype=np.uint8)
    palette = np.random.default_rng(3).integers(0, 256, (19, 3), dtype=np.uint8)

    def ref():
        blend = FRAME.astype(np.float32) * 0.5 + palette[labels].astype(np.float32) * 0.5
        return (blend + 0.5).astype(np.uint8)

    benchmark(ref)


@pytest.mark.benchmark(group="rgb_to_yuv420p 1080x1920")
def test_rgb_to_yuv420p_native(benchmark):
    planes = (np.empty(FRAME.shape[:2], np.uint8), *(np.empty((540, 960), np.uint8) for _ in range(2)))
    benchmark(ops.rgb_to_yuv420p, FRAME, *planes)


@pytest.mark.benchmark(group="rgb_to_yuv420p 1080x1920")
def test_rgb_to_yuv420p_swscale(benchmark):
    av = pytest.importorskip("av")
    from av.video.reformatter import VideoReformatter

    sws = VideoReformatter()  # one swscale context, reused (as an encoder's own conversion does)
    benchmark(lambda: sws.reformat(av.VideoFrame.from_ndarray(FRAME, format="rgb24"), format="yuv420p"))
