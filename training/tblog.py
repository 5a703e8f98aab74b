"""TensorBoard event files in a run's work dir (``tensorboard --logdir work_dirs`` shows every run).

Written synchronously through tensorboardX's protobuf messages and record writer, flushed at every write, so a killed
run keeps everything it logged up to its last checkpoint; a resumed run starts a new events file whose session
restart at ``purge_step`` hides what the killed process logged after that checkpoint. Optional: without tensorboardX
(or with a broken install) ``open_events`` logs one warning and returns None, and training goes on with its CSV logs.
``read_summaries`` reads the files back (TFRecord framing: length, masked CRC-32C, Event proto, masked CRC-32C).
"""

from __future__ import annotations

import itertools
import logging
import os
import struct
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_serial = itertools.count()  # two writers of one process in one second must not share a file name


class EventWriter:
    """Appends scalar and PNG-image summaries to a new ``events.out.tfevents.*`` file in ``log_dir``."""

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog
        from tensorboardX.proto.summary_pb2 import Summary

        self._event, self._summary = Event, Summary
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        self._w = EventsWriter(str(Path(log_dir) / "events"), f".{os.getpid()}.{next(_serial)}")
        if purge_step is not None:
            self._w.write_event(Event(wall_time=time.time(), step=purge_step,
                                      session_log=SessionLog(status=SessionLog.START)))
        self._w.flush()

    def _write(self, step: int, values: list[Any]) -> None:
        self._w.write_event(self._event(wall_time=time.time(), step=int(step), summary=self._summary(value=values)))
        self._w.flush()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """One scalar per tag at ``step``."""
        self._write(step, [self._summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()])

    def png(self, step: int, tag: str, path: str | Path) -> None:
        """A PNG file as an image summary (its bytes as they are; no decoding)."""
        from PIL import Image

        data = Path(path).read_bytes()
        with Image.open(path) as im:
            (w, h), channels = im.size, len(im.getbands())
        img = self._summary.Image(height=h, width=w, colorspace=channels, encoded_image_string=data)
        self._write(step, [self._summary.Value(tag=tag, image=img)])

    def close(self) -> None:
        """Flush and close the file."""
        self._w.close()


def open_events(log_dir: str | Path, purge_step: int | None = None) -> EventWriter | None:
    """An EventWriter, or None (after a one-line warning) when tensorboardX cannot be used."""
    try:
        return EventWriter(log_dir, purge_step)
    except Exception as e:  # ImportError, or a protobuf runtime too old for its generated code
        log.warning("TensorBoard logging off (%s: %s); CSV logs and plots are still written", type(e).__name__, e)
        return None


def _records(path: Path) -> list[bytes]:
    """The payloads of a TFRecord file; a truncated last record (a killed writer) ends the list."""
    from tensorboardX.record_writer import masked_crc32c

    buf, out, pos = path.read_bytes(), [], 0
    while pos + 12 <= len(buf):
        header = buf[pos:pos + 8]
        (n,) = struct.unpack("<Q", header)
        if struct.unpack("<I", buf[pos + 8:pos + 12])[0] != masked_crc32c(header):
            raise ValueError(f"{path}: corrupt record header at byte {pos}")
        if pos + 12 + n + 4 > len(buf):
            break
        data = buf[pos + 12:pos + 12 + n]
        if struct.unpack("<I", buf[pos + 12 + n:pos + 16 + n])[0] != masked_crc32c(data):
            raise ValueError(f"{path}: corrupt record data at byte {pos}")
        out.append(data)
        pos += 16 + n
    return out


def read_summaries(log_dir: str | Path) -> dict[str, list[tuple[int, Any]]]:
    """Every tag's (step, value) pairs as TensorBoard shows them: scalars as floats, images as PNG bytes; files in
    the order they were started, a session restart at step S hiding earlier values at steps >= S."""
    from tensorboardX.proto.event_pb2 import Event, SessionLog

    files = []
    for path in sorted(Path(log_dir).glob("events.out.tfevents.*")):
        events = [Event.FromString(r) for r in _records(path)]
        files.append((events[0].wall_time if events else 0.0, events))
    tags: dict[str, list[tuple[int, Any]]] = {}
    for _, events in sorted(files, key=lambda f: f[0]):
        for ev in events:
            if ev.HasField("session_log") and ev.session_log.status == SessionLog.START:
                tags = {k: [(s, v) for s, v in pts if s < ev.step] for k, pts in tags.items()}
            for v in ev.summary.value:
                kind = v.WhichOneof("value")
                value = v.simple_value if kind == "simple_value" else v.image.encoded_image_string
                tags.setdefault(v.tag, []).append((ev.step, value))
    return tags
