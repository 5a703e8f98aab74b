"""Video sources (file, camera index, stream URL) and writing with PyAV, and a simple sequential segment loop."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterator
from fractions import Fraction
from numbers import Rational
from pathlib import Path

import numpy as np

from engine.latency import LatencyStats

LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "tcp", "srt", "rtp")


class VideoSource:
    """Frames (HxWx3 uint8 RGB) of a video file, a camera or a stream URL; see :func:`open_source`.

    ``live`` sources (cameras, RTSP/RTMP/UDP... streams) are meant to be read as fast as they come and have
    stale frames dropped by the consumer; files are read completely. A decoding error (a truncated or corrupt
    tail) ends the stream quietly after the frames still buffered in the decoder; ``error`` then says what broke.
    ``rate`` is the exact frame rate (e.g. 30000/1001), ``fps`` the same as a float.
    """

    def __init__(self, container: object, name: str, live: bool) -> None:
        self._container = container
        self.name, self.live = name, live
        self.error: str | None = None
        if not container.streams.video:  # type: ignore[attr-defined]
            container.close()  # type: ignore[attr-defined]
            raise ValueError(f"{name}: has no video stream")
        stream = container.streams.video[0]  # type: ignore[attr-defined]
        if stream.codec_context is None:  # e.g. an mp4 cut inside its header: the stream is known, its codec not
            container.close()  # type: ignore[attr-defined]
            raise ValueError(f"{name}: not a readable video (no decoder for its video stream: a truncated header "
                             "or an unsupported codec)")
        stream.thread_type = "AUTO"
        self.width, self.height = int(stream.width or 0), int(stream.height or 0)
        rate = stream.average_rate or stream.guessed_rate
        self.rate = Fraction(rate) if rate and rate > 0 else Fraction(25)
        self.fps = float(self.rate)
        n = int(stream.frames or 0)
        if not n and stream.duration and stream.time_base:
            n = int(round(float(stream.duration * stream.time_base) * self.fps))
        self.frames: int | None = n or None

    def set_threads(self, n: int) -> None:
        """Decoder threads: 0 lets FFmpeg choose (frame + slice threading, about one per core), 1 decodes in the
        reading thread. Takes effect only before the first frame is read."""
        if int(n) < 0:
            raise ValueError(f"decoder threads must be >= 0, got {n}")
        stream = self._container.streams.video[0]  # type: ignore[attr-defined]
        try:
            stream.thread_type = "AUTO" if int(n) != 1 else "SLICE"
            stream.thread_count = int(n)
        except (RuntimeError, ValueError):  # the decoder is already open: keep its threads
            pass

    def __iter__(self) -> Iterator[np.ndarray]:
        import av

        stream = self._container.streams.video[0]  # type: ignore[attr-defined]
        broken = False
        try:
            try:
                for packet in self._container.demux(stream):  # type: ignore[attr-defined]
                    for frame in packet.decode():  # the last (empty) packet drains the decoder
                        yield frame.to_ndarray(format="rgb24")
            except (av.error.FFmpegError, EOFError) as e:  # truncated or corrupt tail: stop with what decoded
                self.error = f"{self.name}: decoding stopped early ({e})"
                broken = True
            if broken:  # frames the decoder still holds (B-frame reordering, frame threads) are not lost
                try:
                    for frame in stream.codec_context.decode(None):
                        yield frame.to_ndarray(format="rgb24")
                except (av.error.FFmpegError, EOFError):
                    pass
        finally:
            self.close()

    def close(self) -> None:
        """Release the container (idempotent)."""
        try:
            self._container.close()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - closing twice or after an error is fine
            pass

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _camera_device(index: int) -> tuple[str, str | None]:
    if sys.platform.startswith("linux"):
        dev = f"/dev/video{index}"
        if not os.path.exists(dev):
            raise FileNotFoundError(f"camera {index} not found: {dev} does not exist")
        return dev, "v4l2"
    if sys.platform == "darwin":
        return str(index), "avfoundation"
    return f"video={index}", "dshow"


def open_source(src: str | int | Path, live: bool | None = None, timeout_s: float = 10.0) -> VideoSource:
    """Open a video file, a camera (an int, or a string of digits) or a stream URL (``scheme://...``).

    Raises FileNotFoundError for a missing file or camera, ValueError for a file that is not a readable video,
    ConnectionError for a stream that cannot be opened. ``live`` defaults to True for cameras and streaming
    schemes (rtsp, rtmp, udp, ...), False for files and http(s) URLs.
    """
    import av

    if isinstance(src, int) or (isinstance(src, str) and src.isdigit()):
        index = int(src)
        dev, fmt = _camera_device(index)
        try:
            container = av.open(dev, format=fmt, timeout=timeout_s)
        except (av.error.FFmpegError, OSError) as e:
            raise FileNotFoundError(f"camera {index} ({dev}) cannot be opened: {e}") from None
        return VideoSource(container, f"camera {index}", True if live is None else live)
    text = str(src)
    if "://" in text and not text.startswith("file://"):
        scheme = text.split("://", 1)[0].lower()
        try:
            container = av.open(text, timeout=timeout_s)
        except (av.error.FFmpegError, OSError) as e:
            raise ConnectionError(f"cannot open stream {text}: {e}") from None
        return VideoSource(container, text, scheme in LIVE_SCHEMES if live is None else live)
    p = Path(text.removeprefix("file://"))
    if not p.exists():
        raise FileNotFoundError(f"video not found: {p}")
    if not p.is_file():
        raise ValueError(f"video path is not a file: {p}")
    try:
        container = av.open(str(p))
    except (av.error.FFmpegError, EOFError) as e:
        raise ValueError(f"{p}: not a readable video ({e})") from None
    return VideoSource(container, str(p), bool(live))


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield HxWx3 uint8 RGB frames of a video file; a truncated file ends the stream where it breaks."""
    with open_source(path) as source:
        yield from source


CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi", ".ts": "mpegts"}
"""Output suffixes the writer accepts and the FFmpeg muxer each one gets (all of them hold H.264)."""


def check_output(path: str | Path) -> Path:
    """Check, before any work, that a video can be written to ``path``: a known container suffix (see
    :data:`CONTAINERS`), not a folder, and a folder that exists (or can be created) and is writable.
    Returns the path; ValueError naming it and what is wrong otherwise. Creates nothing."""
    path = Path(path)
    if path.suffix.lower() not in CONTAINERS:
        got = repr(path.suffix) if path.suffix else "(no suffix)"
        raise ValueError(f"{path}: unsupported video container {got}; use one of {', '.join(CONTAINERS)}")
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a video file")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{path}: cannot create its folder, {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: folder {folder} is not writable")
    return path


def frame_rate(fps: float | Fraction) -> Fraction:
    """The exact rational rate to encode at: a Fraction (or int) is kept as it is (denominators above 65535
    approximated), a float becomes the nearest fraction with a denominator of at most 1001 (29.97002997 ->
    30000/1001, 12.5 -> 25/2). ValueError for a rate that is not a positive finite number."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise ValueError(f"fps must be a number, got {fps!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"fps must be a positive finite number, got {fps!r}")
    rate = Fraction(fps) if isinstance(fps, Rational) else Fraction(value).limit_denominator(1001)
    if rate.denominator > 65535:
        rate = rate.limit_denominator(65535)
    if rate <= 0:
        raise ValueError(f"fps {fps!r} is too small to encode (at least 1/1001)")
    return rate


PRESET = "veryfast"  # libx264 preset of the writer: real-time, about half the CPU of x264's own default, "medium"


class VideoWriter:
    """H.264 (or MPEG-4 where libx264 is missing) writer; the file appears atomically on close.

    The container comes from the suffix (:data:`CONTAINERS`), checked with the folder and ``fps`` when the writer is
    made (:func:`check_output`, :func:`frame_rate`); a missing folder is created. ``fps`` is kept exact: pass the
    source's :attr:`VideoSource.rate` (e.g. ``Fraction(30000, 1001)``) and the output has the same average rate.
    ``preset``: the libx264 speed/size trade-off (``ultrafast`` ... ``veryslow``); the default, ``veryfast``, costs
    ~2.2 ms of one core per 360x640 frame against ~4.5 ms for x264's ``medium``. ``threads``: encoder threads, 0 for
    the codec's choice (x264: 1.5 per core, plus lookahead), 1 to encode in the calling thread.
    """

    def __init__(self, path: str | Path, fps: float | Fraction, width: int, height: int, *,
                 preset: str | None = PRESET, threads: int = 0) -> None:
        import av

        if int(threads) < 0:
            raise ValueError(f"encoder threads must be >= 0, got {threads}")
        self.path = check_output(path)
        self.rate = frame_rate(fps)
        if int(width) < 2 or int(height) < 2:
            raise ValueError(f"{self.path}: frames must be at least 2x2 to encode, got {height}x{width}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.stem}.tmp{self.path.suffix}")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        options = {"threads": str(int(threads))}
        if codec == "libx264" and preset:
            options["preset"] = preset
        self._container = av.open(str(self._tmp), mode="w", format=CONTAINERS[self.path.suffix.lower()])
        try:
            self._stream = self._container.add_stream(codec, rate=self.rate, options=options)
            self._stream.width, self._stream.height = int(width) - int(width) % 2, int(height) - int(height) % 2
            self._stream.pix_fmt = "yuv420p"
        except BaseException:
            self._container.close()
            self._tmp.unlink(missing_ok=True)
            raise
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        """Append one HxWx3 uint8 RGB frame (converted to I420 by the native kernel, ~5x faster than swscale)."""
        import av

        from engine import ops

        h, w = self._stream.height, self._stream.width
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[0] < h or frame.shape[1] < w:
            raise ValueError(f"{self.path}: frames must be HxWx3 uint8 of at least {h}x{w}, got "
                             f"{getattr(frame, 'shape', type(frame).__name__)}")
        vf = av.VideoFrame(w, h, "yuv420p")
        planes = [np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width] for p in vf.planes]
        ops.rgb_to_yuv420p(np.ascontiguousarray(frame[:h, :w]), *planes)
        vf.pts, vf.time_base = self.frames, 1 / self.rate  # one tick per frame: the exact rate
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> Path:
        """Flush the encoder and move the finished file into place."""
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        os.replace(self._tmp, self.path)
        return self.path

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_max_frames(max_frames: int | None) -> int | None:
    """``max_frames`` as an int >= 1, or None for no limit; ValueError otherwise."""
    if max_frames is None:
        return None
    if isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer)) or max_frames < 1:
        raise ValueError(f"max_frames must be an integer >= 1 (or None for every frame), got {max_frames!r}")
    return int(max_frames)


def segment_video(predictor: object, src: str | Path, out: str | Path | None = None, alpha: float = 0.5,
                  fps: float | Fraction | None = None, max_frames: int | None = None) -> LatencyStats:
    """Segment every frame of ``src``; write an overlay video to ``out`` (at ``fps``, by default the source's
    rate). Returns per-stage latency."""
    max_frames = check_max_frames(max_frames)
    if out is not None:
        check_output(out)
    if fps is not None:
        frame_rate(fps)
    stats = LatencyStats()
    writer = None
    source = open_source(src)
    fps = source.rate if fps is None else fps
    frames = iter(source)
    try:
        while True:
            t0 = time.perf_counter()
            frame = next(frames, None)
            if frame is None or (max_frames is not None and stats.count >= max_frames):
                break
            t1 = time.perf_counter()
            labels = predictor.run(frame)
            t2 = time.perf_counter()
            shown = predictor.overlay(frame, labels, alpha)
            if out is not None:
                if writer is None:
                    writer = VideoWriter(out, fps, frame.shape[1], frame.shape[0])
                writer.write(shown)
            t3 = time.perf_counter()
            stats.add(decode=(t1 - t0) * 1e3, **predictor.timings, draw_encode=(t3 - t2) * 1e3,
                      total=(t3 - t0) * 1e3)
    finally:
        source.close()
        if writer is not None:
            writer.close()
    return stats
