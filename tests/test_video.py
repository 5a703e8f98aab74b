"""Video reading/writing and the segment-and-overlay loop."""

from __future__ import annotations

from fractions import Fraction
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


def write_faststart_mp4(path: Path, n: int = 30, h: int = 48, w: int = 64) -> list[tuple[int, int]]:
    """An H.264 mp4 with its index (moov) first, B-frames on; returns each packet's (file offset, size)."""
    import av

    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=10, options={"preset": "veryfast", "threads": "1"})
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        rng = np.random.default_rng(0)
        for i in range(n):
            frame = np.zeros((h, w, 3), np.uint8)
            frame[:, : (i + 1) * w // n] = (200, 50, 50)
            frame[::4, ::4] = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
            c.mux(s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        c.mux(s.encode(None))
    with av.open(str(path)) as c:
        return [(p.pos, p.size) for p in c.demux(video=0) if p.size]


def test_truncated_faststart_mp4_keeps_every_complete_frame(tmp_path: Path) -> None:
    from engine.video import open_source

    packets = write_faststart_mp4(tmp_path / "full.mp4")
    data = (tmp_path / "full.mp4").read_bytes()
    for k in (1, 12):  # cut inside packet k: packets 0..k-1 are whole, in decode order
        pos, size = packets[k]
        (tmp_path / "cut.mp4").write_bytes(data[: pos + size // 2])
        src = open_source(tmp_path / "cut.mp4")
        src.set_threads(1)
        frames = list(src)
        assert len(frames) == k  # the frames still in the decoder (B-frame reordering) are drained, not lost
        assert src.error is not None and "cut.mp4: decoding stopped early" in src.error


def test_mp4_cut_inside_its_header_is_a_clear_error(tmp_path: Path) -> None:
    from engine.video import open_source

    write_faststart_mp4(tmp_path / "full.mp4")
    data = (tmp_path / "full.mp4").read_bytes()
    at = data.index(b"moov") - 4  # the box after ftyp: its 4-byte size, then its type
    errors = []
    for cut in range(16, at + int.from_bytes(data[at:at + 4], "big"), 8):  # every cut inside the index
        (tmp_path / "cut.mp4").write_bytes(data[:cut])
        try:  # a ValueError naming the file, never an AttributeError
            src = open_source(tmp_path / "cut.mp4")
        except ValueError as e:
            assert "cut.mp4" in str(e)
            errors.append(str(e))
        else:
            assert list(src) == []  # no frame data before the index ends
    assert any("no decoder for its video stream" in m for m in errors)  # the stream known, its codec lost


def test_writer_keeps_the_exact_rate(tmp_path: Path) -> None:
    import av

    from engine.video import frame_rate

    frame = np.zeros((48, 64, 3), np.uint8)
    for fps, expected in ((Fraction(30000, 1001), Fraction(30000, 1001)), (29.97002997, Fraction(30000, 1001)),
                          (0.4, Fraction(2, 5)), (12.5, Fraction(25, 2)), (24, Fraction(24))):
        with VideoWriter(tmp_path / "r.mp4", fps, 64, 48, preset="ultrafast") as vw:
            for _ in range(4):
                vw.write(frame)
        with av.open(str(tmp_path / "r.mp4")) as c:
            assert c.streams.video[0].average_rate == expected, fps
        assert len(list(read_frames(tmp_path / "r.mp4"))) == 4
    for bad in (0, -1, float("nan"), float("inf"), "x", None, 1e-9):
        with pytest.raises(ValueError, match="fps"):
            frame_rate(bad)
    with pytest.raises(ValueError, match="fps"):
        VideoWriter(tmp_path / "z.mp4", 0, 64, 48)
    assert not (tmp_path / "z.mp4").exists() and not list(tmp_path.glob(".z*"))


def test_writer_checks_its_output_up_front(tmp_path: Path, monkeypatch) -> None:
    import engine.video as video

    for name in ("out.xyz", "out"):
        with pytest.raises(ValueError, match=rf"{name}: unsupported video container .*\.mp4, .*\.mkv"):
            VideoWriter(tmp_path / name, 10, 64, 48)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="file.txt is not a folder"):
        VideoWriter(tmp_path / "file.txt" / "sub" / "out.mp4", 10, 64, 48)
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(ValueError, match="dir.mp4: is a folder"):
        VideoWriter(tmp_path / "dir.mp4", 10, 64, 48)
    monkeypatch.setattr(video.os, "access", lambda *a: False)  # tests run as root: permissions cannot be taken
    with pytest.raises(ValueError, match=r"ro.mp4: folder .* is not writable"):
        VideoWriter(tmp_path / "ro.mp4", 10, 64, 48)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="at least 2x2"):
        VideoWriter(tmp_path / "tiny.mp4", 10, 1, 48)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.mp4", "file.txt"]  # nothing created
    for suffix in video.CONTAINERS:  # every accepted container writes a readable video, in a new folder
        with VideoWriter(tmp_path / "new" / f"v{suffix}", 10, 64, 48, preset="ultrafast") as vw:
            for _ in range(3):
                vw.write(np.zeros((48, 64, 3), np.uint8))
        assert len(list(read_frames(tmp_path / "new" / f"v{suffix}"))) == 3, suffix


def test_segment_video_checks_and_keeps_the_rate(tmp_path: Path, tiny_onnx) -> None:
    import av

    src = tmp_path / "in.mp4"
    with VideoWriter(src, Fraction(30000, 1001), 64, 48) as vw:
        for _ in range(3):
            vw.write(np.zeros((48, 64, 3), np.uint8))
    p = engine.Predictor(tiny_onnx[0])
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="max_frames must be an integer >= 1"):
            segment_video(p, src, tmp_path / "out.mp4", max_frames=bad)
    with pytest.raises(ValueError, match="out.xyz: unsupported video container"):
        segment_video(p, src, tmp_path / "out.xyz")
    assert segment_video(p, src, tmp_path / "out.mp4", max_frames=2).count == 2
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert c.streams.video[0].average_rate == Fraction(30000, 1001)
