"""Video reading and writing with PyAV, and a simple segment-and-overlay loop with per-stage latency."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from engine.latency import LatencyStats


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield HxWx3 uint8 RGB frames of a video file; a truncated file ends the stream where it breaks."""
    import av

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"video not found: {p}")
    try:
        container = av.open(str(p))
    except av.error.FFmpegError as e:
        raise ValueError(f"{p}: not a readable video ({e})") from None
    with container:
        if not container.streams.video:
            raise ValueError(f"{p}: has no video stream")
        try:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError:
            return  # truncated or corrupt tail: stop with what decoded


class VideoWriter:
    """H.264 (or MPEG-4 where libx264 is missing) writer; the file appears atomically on close."""

    def __init__(self, path: str | Path, fps: float, width: int, height: int) -> None:
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.stem}.tmp{self.path.suffix}")
        self._container = av.open(str(self._tmp), mode="w")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self._stream = self._container.add_stream(codec, rate=round(fps))
        self._stream.width, self._stream.height = width - width % 2, height - height % 2
        self._stream.pix_fmt = "yuv420p"
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        """Append one HxWx3 uint8 RGB frame."""
        import av

        h, w = self._stream.height, self._stream.width
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:h, :w]), format="rgb24")
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


def segment_video(predictor: object, src: str | Path, out: str | Path | None = None, alpha: float = 0.5,
                  fps: float = 15.0, max_frames: int | None = None) -> LatencyStats:
    """Segment every frame of ``src``; write an overlay video to ``out``. Returns per-stage latency."""
    stats = LatencyStats()
    writer = None
    frames = read_frames(src)
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
        if writer is not None:
            writer.close()
    return stats
