"""The threaded video pipeline: complete files, truncated inputs, stage errors, live sources, the CLI."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import engine
from engine.backends.base import Backend
from engine.cli import main
from engine.metadata import ModelMeta
from engine.pipeline import VideoPipeline, run_video
from engine.video import VideoWriter, open_source, read_frames


def write_video(path: Path, n: int = 12, h: int = 48, w: int = 64) -> Path:
    with VideoWriter(path, 10, w, h) as vw:
        for i in range(n):
            frame = np.zeros((h, w, 3), np.uint8)
            frame[:, : (i + 1) * w // n] = (200, 50, 50)
            vw.write(frame)
    return path


class SlowBackend(Backend):
    """A numpy backend that sleeps and may fail on a given call."""

    name = "numpy"

    def __init__(self, delay: float = 0.0, fail_at: int | None = None) -> None:
        self.meta = ModelMeta(classes=["a", "b"])
        self.delay, self.fail_at, self.calls = delay, fail_at, 0

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("backend exploded")
        time.sleep(self.delay)
        return np.stack([x[:, 0], -x[:, 0]], 1)[:, :, ::2, ::2].copy()


class FakeLive:
    """A live source made of numpy frames, produced as fast as they are asked for."""

    def __init__(self, n: int) -> None:
        self.name, self.live, self.fps, self.frames, self.error, self.n = "fake camera", True, 30.0, None, None, n

    def __iter__(self):
        for i in range(self.n):
            time.sleep(0.002)
            yield np.full((32, 48, 3), i % 256, np.uint8)

    def close(self) -> None:
        pass


def test_file_is_processed_completely(tmp_path: Path, tiny_onnx) -> None:
    src = write_video(tmp_path / "in.mp4", n=12)
    p = engine.Predictor(tiny_onnx[0])
    report = run_video(p, open_source(src), tmp_path / "out.mp4", progress=True)
    assert report.frames == 12 and report.dropped == 0 and report.fps > 0
    assert set(report.stages_ms) == {"decode", "pre", "infer", "post", "encode", "end_to_end"}
    frames = list(read_frames(tmp_path / "out.mp4"))
    assert len(frames) == 12
    saved = json.loads(report.save(tmp_path / "stats.json").read_text())
    assert saved["frames"] == 12 and "median" in saved["stages_ms"]["infer"]


def test_pipeline_matches_sequential_predictor(tmp_path: Path, tiny_onnx) -> None:
    src = write_video(tmp_path / "in.mkv", n=6)
    p = engine.Predictor(tiny_onnx[0])
    shown = []
    VideoPipeline(p, open_source(src), on_frame=shown.append, queue_size=8).run()
    expected = [p.overlay(f, p.run(f)) for f in read_frames(src)]
    assert 1 <= len(shown) <= 6  # the display keeps the newest frame only
    assert np.array_equal(shown[-1], expected[-1])


def test_truncated_input_leaves_valid_output(tmp_path: Path, tiny_onnx) -> None:
    src = write_video(tmp_path / "in.ts", n=30)
    data = src.read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: len(data) // 2])
    report = run_video(engine.Predictor(tiny_onnx[0]), open_source(cut), tmp_path / "out.mp4")
    assert 0 < report.frames < 30
    assert len(list(read_frames(tmp_path / "out.mp4"))) == report.frames


def test_stage_error_is_raised_and_earlier_frames_are_kept(tmp_path: Path) -> None:
    src = write_video(tmp_path / "in.mp4", n=10)
    p = engine.Predictor(SlowBackend(fail_at=5))
    with pytest.raises(RuntimeError, match="exploded"):
        run_video(p, open_source(src), tmp_path / "out.mp4")
    assert len(list(read_frames(tmp_path / "out.mp4"))) == 4
    assert not list(tmp_path.glob(".*tmp*"))


def test_live_source_drops_stale_frames() -> None:
    p = engine.Predictor(SlowBackend(delay=0.02))
    report = VideoPipeline(p, FakeLive(60)).run()
    assert report.dropped > 0 and report.frames + report.dropped <= 60 and report.frames >= 2
    assert report.stages_ms["end_to_end"]["p90"] < 500


def test_max_frames_and_tta_predictor(tmp_path: Path, tiny_onnx) -> None:
    src = write_video(tmp_path / "in.mp4", n=8)
    p = engine.Predictor(tiny_onnx[0], scales=(0.5, 1.0), flip=True)
    report = run_video(p, open_source(src), tmp_path / "out.mp4", max_frames=3)
    assert report.frames == 3
    with pytest.raises(ValueError, match="alpha"):
        VideoPipeline(p, open_source(src), alpha=2.0)


def test_cli_video(tmp_path: Path, tiny_onnx, capsys) -> None:
    src = write_video(tmp_path / "in.mp4", n=5)
    out = tmp_path / "out.mp4"
    assert main(["video", str(src), "-m", str(tiny_onnx[0]), "-o", str(out), "-q"]) == 0
    stats = json.loads(out.with_suffix(".stats.json").read_text())
    assert stats["frames"] == 5 and stats["fps"] > 0
    assert "FPS" in capsys.readouterr().out
    assert main(["video", str(tmp_path / "missing.mp4"), "-m", str(tiny_onnx[0])]) == 2
    assert "video not found" in capsys.readouterr().err
    assert main(["video", "7", "-m", str(tiny_onnx[0])]) == 2
    assert "camera 7" in capsys.readouterr().err
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"\x1a\x45\xdf\xa3" + b"\x00" * 64)
    assert main(["video", str(junk), "-m", str(tiny_onnx[0]), "-o", str(tmp_path / "x.mp4")]) == 2
    assert "junk.mkv" in capsys.readouterr().err


def test_show_without_display_is_a_clear_error(tmp_path: Path, tiny_onnx, capsys, monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    src = write_video(tmp_path / "in.mp4", n=2)
    assert main(["video", str(src), "-m", str(tiny_onnx[0]), "--show"]) == 2
    assert "--show needs a display" in capsys.readouterr().err


def test_stage_threads(tmp_path: Path, tiny_onnx) -> None:
    from engine import ops
    from engine.stage_threads import StageThreads

    src = write_video(tmp_path / "in.mp4", n=6)
    p = engine.Predictor(tiny_onnx[0])
    expected = [p.overlay(f, p.run(f)) for f in read_frames(src)]
    for plan in (StageThreads(), StageThreads(nice=10), StageThreads(decode=0, native=0, encode=0, preset=None)):
        shown: list[np.ndarray] = []
        report = VideoPipeline(p, open_source(src), tmp_path / "out.mp4", threads=plan, on_frame=shown.append).run()
        assert report.frames == 6 and np.array_equal(shown[-1], expected[-1])
        assert len(list(read_frames(tmp_path / "out.mp4"))) == 6
    with pytest.raises(ValueError, match="StageThreads.encode"):
        StageThreads(encode=-1)
    # OpenMP's thread count is per calling thread: a stage thread's setting leaves the others' alone
    seen: list[int] = []

    def stage() -> None:
        seen.append(ops.set_num_threads(1))
        seen.append(ops.set_num_threads(1))

    before = ops.set_num_threads(3)
    t = threading.Thread(target=stage)
    t.start()
    t.join()
    assert seen[1] == 1 and ops.set_num_threads(before) == 3
    with pytest.raises(ValueError, match="n must be"):
        ops.set_num_threads(0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
def test_stage_threads_lower_only_their_own_priority() -> None:
    from engine.stage_threads import StageThreads

    def nice_of_thread() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    base, seen = nice_of_thread(), []

    def stage() -> None:
        StageThreads(nice=5).apply_nice()
        seen.append(nice_of_thread())

    t = threading.Thread(target=stage)
    t.start()
    t.join()
    assert seen == [min(19, base + 5)] and nice_of_thread() == base  # the calling thread is untouched


def test_default_threads_follow_how_inference_waits(tiny_onnx) -> None:
    """Lower priority around inference only where inference threads block when idle (gaps to fill)."""
    from engine.stage_threads import NICE, default_threads

    assert default_threads(engine.Predictor(tiny_onnx[0], spin=False)).nice == NICE
    assert default_threads(engine.Predictor(tiny_onnx[0])).nice == 0  # ONNX Runtime's spinning default
    assert default_threads(engine.Predictor(tiny_onnx[0], spin=True)).nice == 0

    class FakeBackend:
        def __init__(self, name: str, device: str) -> None:
            self.name, self.device = name, device

    class P:
        def __init__(self, backend: FakeBackend) -> None:
            self.backend = backend

    assert default_threads(P(FakeBackend("tensorrt", "cuda:0"))).nice == NICE
    assert default_threads(P(FakeBackend("torch", "cuda:0"))).nice == NICE
    assert default_threads(P(FakeBackend("torch", "cpu"))).nice == 0  # OpenMP threads spin
    assert default_threads(object()).nice == NICE


def test_writer_preset_and_threads(tmp_path: Path) -> None:
    frame = np.zeros((48, 64, 3), np.uint8)
    for preset, threads in (("ultrafast", 1), (None, 0)):
        with VideoWriter(tmp_path / "a.mp4", 10, 64, 48, preset=preset, threads=threads) as vw:
            for _ in range(3):
                vw.write(frame)
        assert len(list(read_frames(tmp_path / "a.mp4"))) == 3
    with pytest.raises(ValueError, match="encoder threads"):
        VideoWriter(tmp_path / "b.mp4", 10, 64, 48, threads=-1)
    source = open_source(write_video(tmp_path / "in.mp4", n=3))
    source.set_threads(1)
    it = iter(source)
    next(it)
    source.set_threads(0)  # too late once decoding started: ignored, not an error
    assert len(list(it)) == 2


def test_truncated_mp4_reports_input_error_and_keeps_frames(tmp_path: Path, tiny_onnx, capsys) -> None:
    from tests.test_video import write_faststart_mp4

    packets = write_faststart_mp4(tmp_path / "full.mp4", n=30)
    pos, size = packets[15]
    cut = tmp_path / "cut.mp4"
    cut.write_bytes((tmp_path / "full.mp4").read_bytes()[: pos + size // 2])  # index intact, data cut in frame 15
    out = tmp_path / "out.mp4"
    report = run_video(engine.Predictor(tiny_onnx[0]), open_source(cut), out)
    assert report.input_error is not None and "cut.mp4: decoding stopped early" in report.input_error
    assert report.frames == 15 and report.error is None  # every whole frame, none of the cut one
    assert len(list(read_frames(out))) == report.frames and not list(tmp_path.glob(".*tmp*"))
    assert main(["video", str(cut), "-m", str(tiny_onnx[0]), "-o", str(tmp_path / "cli.mp4"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "decoding stopped early" in err and "15 frames" in err
    assert json.loads((tmp_path / "cli.stats.json").read_text())["input_error"] == report.input_error
    assert len(list(read_frames(tmp_path / "cli.mp4"))) == 15


def test_output_and_max_frames_are_checked_before_inference(tmp_path: Path, tiny_onnx, capsys) -> None:
    src = write_video(tmp_path / "in.mp4", n=3)
    backend = SlowBackend()
    p = engine.Predictor(backend)
    with pytest.raises(ValueError, match=r"out.xyz: unsupported video container '.xyz'; use one of .mp4"):
        VideoPipeline(p, open_source(src), tmp_path / "out.xyz")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="file.txt is not a folder"):
        VideoPipeline(p, open_source(src), tmp_path / "file.txt" / "out.mp4")
    with pytest.raises(ValueError, match="is the input video itself"):
        VideoPipeline(p, open_source(src), tmp_path / "." / "in.mp4")
    for bad in (0, -1, 2.5, "3"):
        with pytest.raises(ValueError, match=r"max_frames must be an integer >= 1 \(or None"):
            VideoPipeline(p, open_source(src), tmp_path / "out.mp4", max_frames=bad)
    assert backend.calls == 0 and len(list(read_frames(src))) == 3
    assert sorted(f.name for f in tmp_path.iterdir()) == ["file.txt", "in.mp4", "tiny.onnx"]
    assert main(["video", str(src), "-m", str(tiny_onnx[0]), "-o", str(tmp_path / "o.xyz"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "o.xyz: unsupported video container" in err and "Could not determine" not in err


def test_output_keeps_the_source_rate(tmp_path: Path, tiny_onnx) -> None:
    import av

    for rate in (Fraction(30000, 1001), Fraction(25, 2)):
        with VideoWriter(tmp_path / "in.mkv", rate, 64, 48) as vw:
            for _ in range(4):
                vw.write(np.zeros((48, 64, 3), np.uint8))
        source = open_source(tmp_path / "in.mkv")
        assert source.rate == rate
        run_video(engine.Predictor(tiny_onnx[0]), source, tmp_path / "out.mp4")
        with av.open(str(tmp_path / "out.mp4")) as c:
            assert c.streams.video[0].average_rate == rate  # was round(fps): 30 and 12 (or 13)


def test_failed_run_leaves_a_partial_report(tmp_path: Path) -> None:
    src = write_video(tmp_path / "in.mp4", n=10)
    pipe = VideoPipeline(engine.Predictor(SlowBackend(fail_at=5)), open_source(src), tmp_path / "out.mp4")
    assert pipe.last_report is None
    with pytest.raises(RuntimeError, match="exploded"):
        pipe.run()
    report = pipe.last_report
    assert report is not None and report.frames == 4 and report.error == "RuntimeError: backend exploded"
    assert report.stages_ms["infer"]["median"] > 0 and report.stages_ms["encode"]["median"] > 0
    saved = json.loads(report.save(tmp_path / "stats.json").read_text())
    assert saved["frames"] == 4 and saved["error"] == "RuntimeError: backend exploded"
    assert len(list(read_frames(tmp_path / "out.mp4"))) == 4
    ok = VideoPipeline(engine.Predictor(SlowBackend()), open_source(src))
    assert ok.run() is ok.last_report and ok.last_report.error is None and ok.last_report.frames == 10
