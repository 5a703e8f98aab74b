"""The native RGB -> I420 kernel of the video writer against a float BT.601 reference, its checks, and the writer."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from engine import ops
from engine.video import VideoWriter, read_frames


def reference(img: np.ndarray) -> list[np.ndarray]:
    """BT.601 limited range in float64, chroma from the mean of each 2x2 block, rounded."""
    x = img.astype(np.float64)
    h, w = img.shape[:2]
    y = 16 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255
    m = x.reshape(h // 2, 2, w // 2, 2, 3).mean((1, 3))
    u = 128 + (-37.797 * m[..., 0] - 74.203 * m[..., 1] + 112.0 * m[..., 2]) / 255
    v = 128 + (112.0 * m[..., 0] - 93.786 * m[..., 1] - 18.214 * m[..., 2]) / 255
    return [np.round(p) for p in (y, u, v)]


@pytest.mark.parametrize("shape", [(2, 2), (4, 6), (36, 64), (181 * 2, 3 * 2)])
def test_matches_reference(shape: tuple[int, int]) -> None:
    img = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    img[0, 0], img[0, 1] = (255, 255, 255), (0, 0, 0)  # the range ends
    for got, want in zip(ops.rgb_to_yuv420p(img), reference(img)):
        assert got.dtype == np.uint8 and got.shape == want.shape
        assert np.abs(got.astype(np.int64) - want).max() <= 1
    y, _, _ = ops.rgb_to_yuv420p(np.full((2, 2, 3), 255, np.uint8))
    assert (y == 235).all()


def test_padded_planes_of_a_video_frame() -> None:
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    frame = av.VideoFrame(30, 20, "yuv420p")
    planes = [np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width] for p in frame.planes]
    assert planes[0].strides[0] > 30  # FFmpeg pads rows
    ops.rgb_to_yuv420p(img, *planes)
    for got, want in zip(planes, ops.rgb_to_yuv420p(img)):
        assert np.array_equal(got, want)
    yy, xx = np.mgrid[0:20, 0:30]
    smooth = np.stack([xx * 8, yy * 12, (xx + yy) * 5], 2).astype(np.uint8)
    ops.rgb_to_yuv420p(smooth, *planes)
    assert np.abs(frame.to_ndarray(format="rgb24").astype(int) - smooth).mean() < 3  # read back by swscale


def test_bad_arguments() -> None:
    img = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="even"):
        ops.rgb_to_yuv420p(np.zeros((3, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="dtype uint8"):
        ops.rgb_to_yuv420p(img.astype(np.float32))
    with pytest.raises(ValueError, match="3 channels"):
        ops.rgb_to_yuv420p(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="u must be uint8 with shape"):
        ops.rgb_to_yuv420p(img, u=np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError, match="contiguous rows"):
        ops.rgb_to_yuv420p(img, y=np.zeros((4, 8), np.uint8)[:, ::2])
    with pytest.raises(TypeError, match="v must be a numpy.ndarray"):
        ops.rgb_to_yuv420p(img, v=[[0, 0], [0, 0]])


def test_writer_round_trip(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:48, 0:64]
    smooth = np.stack([xx * 4, yy * 5, (xx + yy) * 2], 2).astype(np.uint8)
    with VideoWriter(tmp_path / "a.mp4", 10, 65, 49, preset="ultrafast") as vw:  # odd sizes: cropped to even
        for _ in range(3):
            vw.write(np.pad(smooth, ((0, 1), (0, 1), (0, 0))))
        with pytest.raises(ValueError, match="at least 48x64"):
            vw.write(smooth[:40])
    frames = list(read_frames(tmp_path / "a.mp4"))
    assert len(frames) == 3 and frames[0].shape == (48, 64, 3)
    assert np.abs(frames[-1].astype(int) - smooth).mean() < 3
