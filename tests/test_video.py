"""Video reading/writing and the segment-and-overlay loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import engine
from engine.video import VideoWriter, read_frames, segment_video


def write_video(path: Path, n: int = 6, h: int = 48, w: int = 64) -> Path:
    with VideoWriter(path, 10, w, h) as vw:
        for i in range(n):
            frame = np.zeros((h, w, 3), np.uint8)
            frame[:, : (i + 1) * w // n] = (200, 50, 50)
            vw.write(frame)
    return path


def test_write_then_read(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4")
    frames = list(read_frames(path))
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    assert abs(int(frames[-1][:, -1, 0].mean()) - 200) < 20
    assert not list(tmp_path.glob(".*tmp*"))


def test_missing_and_bad_videos(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        next(read_frames(tmp_path / "nope.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="junk.mp4"):
        next(read_frames(junk))


def test_truncated_video_yields_what_decodes(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", n=30)
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    try:
        frames = list(read_frames(cut))
    except ValueError as e:  # moov atom at the end: the container itself is unreadable, and says so
        assert "cut.mp4" in str(e)
    else:
        assert len(frames) < 30


def test_segment_video_writes_overlay(tmp_path: Path, tiny_onnx) -> None:
    src = write_video(tmp_path / "in.mp4", n=5)
    stats = segment_video(engine.Predictor(tiny_onnx[0]), src, tmp_path / "out.mp4")
    assert stats.count == 5
    assert {"decode", "pre", "infer", "post", "draw_encode", "total"} <= set(stats.summary())
    assert len(list(read_frames(tmp_path / "out.mp4"))) == 5


def test_open_source_errors(tmp_path: Path) -> None:
    from engine.video import open_source

    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        open_source(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="not a file"):
        open_source(tmp_path)
    with pytest.raises(FileNotFoundError, match="camera 9"):
        open_source(9)
    with pytest.raises(ConnectionError, match="cannot open stream"):
        open_source("rtsp://127.0.0.1:9/none", timeout_s=2)


def test_open_source_file_properties(tmp_path: Path) -> None:
    from engine.video import open_source

    src = open_source(write_video(tmp_path / "v.mp4", n=4))
    assert (src.width, src.height, src.live, src.frames) == (64, 48, False, 4) and src.fps == 10
    assert len(list(src)) == 4 and src.error is None
    assert open_source(str(tmp_path / "v.mp4"), live=True).live
