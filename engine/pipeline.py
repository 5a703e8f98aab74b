"""Real-time video pipeline: decode -> pre-process -> infer -> post-process/overlay -> encode, one thread per stage.

Stages are joined by bounded queues, so a slow stage applies back-pressure instead of letting memory grow. The
native kernels, FFmpeg and ONNX Runtime release the GIL, so the stages really overlap. Live sources (cameras,
streams) keep only the newest decoded frame waiting: when inference falls behind, stale frames are dropped and
latency stays bounded. Files are processed completely. Whatever happens (end of input, a truncated file, an error
in a stage, Ctrl-C), the writer is closed so the output holds every frame processed so far, and
:attr:`VideoPipeline.last_report` holds what was measured up to then (with ``error`` set when a stage failed).
The output path, ``max_frames`` and ``alpha`` are checked when the pipeline is made, before any frame is inferred.

Threads (:class:`StageThreads`): the stages already run in parallel with each other, so by default every stage
but inference runs single-threaded (the decoder, the native kernels, the encoder, with x264's real-time ``veryfast``
preset) and inference gets the threads the Predictor was built with. Letting each library start its own pool per
core instead (FFmpeg's frame threads, x264's 1.5 threads per core + lookahead, OpenMP's team) adds nothing when
inference is the slowest stage and takes CPU from it. On 2 cores the pipeline is CPU-bound as soon as inference
uses both: its throughput is at most cores / (sum of every stage's CPU time per frame), and ONNX Runtime's
spin-waiting threads turn each millisecond another stage takes from them into about two, so ``segrt video`` builds
its Predictor with ``spin=False`` (idle ONNX Runtime threads block), and the stages around inference then run at a
lower OS priority (``engine.stage_threads.default_threads``), so that they fill the gaps inference leaves instead
of stalling its parallel sections; see ``benchmarks/results/engine_pipeline_*.md`` for the measurements and the
arithmetic.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.fileio import write_atomic
from engine.predictor import Predictor
from engine.stage_threads import StageThreads, default_threads
from engine.video import VideoSource, VideoWriter, check_max_frames, check_output

STAGES = ("decode", "pre", "infer", "post", "encode")
_END = object()


def summarize(samples: list[float]) -> dict[str, float]:
    """median / p90 / p99 / mean of a list of milliseconds (zeros when empty)."""
    if not samples:
        return {"median": 0.0, "p90": 0.0, "p99": 0.0, "mean": 0.0}
    a = np.asarray(samples)
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}


@dataclass
class PipelineReport:
    """What a pipeline run did: frame counts, wall time, throughput and per-stage latency (ms).

    ``input_error``: the input ended early (truncated or corrupt) and the run stopped there, keeping every frame
    before it. ``error``: a stage failed (``"RuntimeError: ..."``); the run re-raised it, and this report (from
    :attr:`VideoPipeline.last_report`) covers the frames written before it.
    """

    source: str
    output: str | None
    frames: int = 0
    dropped: int = 0
    wall_s: float = 0.0
    fps: float = 0.0
    stages_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    stage_fps: dict[str, float] = field(default_factory=dict)
    input_error: str | None = None
    error: str | None = None

    def table(self) -> str:
        """A markdown table of per-stage latency, then throughput."""
        rows = ["| stage | median ms | p90 ms | p99 ms | alone FPS |", "|---|---:|---:|---:|---:|"]
        for k, s in self.stages_ms.items():
            fps = self.stage_fps.get(k)
            rows.append(f"| {k} | {s['median']:.2f} | {s['p90']:.2f} | {s['p99']:.2f} | "
                        f"{fps:.1f} |" if fps else f"| {k} | {s['median']:.2f} | {s['p90']:.2f} | {s['p99']:.2f} | |")
        rows.append(f"\n{self.frames} frames in {self.wall_s:.2f} s: {self.fps:.1f} FPS, {self.dropped} dropped")
        return "\n".join(rows)

    def save(self, path: str | Path) -> Path:
        """Write the report as JSON (atomically)."""
        return write_atomic(path, json.dumps(asdict(self), indent=2) + "\n")


class _Stop(Exception):
    """Raised inside a stage when the pipeline is shutting down."""


class VideoPipeline:
    """Run ``predictor`` over a :class:`VideoSource` with one thread per stage and bounded queues.

    ``on_frame(overlay)`` (called from the main thread) can show frames; ``progress`` draws a tqdm bar
    for files; ``threads`` sets the threads of the stages around inference (see :class:`StageThreads`). Use
    :meth:`run`; it returns a :class:`PipelineReport` and re-raises the first stage error. Either way the report
    is also left in :attr:`last_report`, so a caller can save the per-stage stats of a failed run too::

        pipe = VideoPipeline(predictor, source, "out.mp4")
        try:
            report = pipe.run()
        finally:
            if pipe.last_report is not None:
                pipe.last_report.save("out.stats.json")

    The output is checked here, before any work (:func:`engine.video.check_output`: a known container suffix, a
    writable folder, not the input file itself), and ``max_frames`` must be >= 1 or None.
    """

    def __init__(self, predictor: Predictor, source: VideoSource, output: str | Path | None = None,
                 alpha: float = 0.5, queue_size: int = 2, max_frames: int | None = None,
                 on_frame: Callable[[np.ndarray], None] | None = None, progress: bool = False,
                 threads: StageThreads | None = None) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        max_frames = check_max_frames(max_frames)
        if output is not None:
            check_output(output)
            inp = Path(str(source.name))
            if not source.live and inp.is_file() and Path(output).resolve() == inp.resolve():
                raise ValueError(f"{output}: is the input video itself; write the overlay to another file")
        self.threads = threads or default_threads(predictor)
        self.p, self.source, self.output = predictor, source, output
        self.alpha, self.max_frames, self.on_frame, self.progress = alpha, max_frames, on_frame, progress
        qs = max(1, int(queue_size))
        self.ring = qs + 3  # buffers in flight between two stages: queue + consumer + producer, and one spare
        self.queues = [queue.Queue(maxsize=1 if source.live else qs) for _ in range(4)]
        self.shown: queue.Queue = queue.Queue(maxsize=1)
        self._cut = 0  # stages [0, _cut) are cancelled: upstream of a failed stage, or all of them on Ctrl-C
        self.errors: list[BaseException] = []
        self.times: dict[str, list[float]] = {k: [] for k in (*STAGES, "end_to_end")}
        self.dropped = 0
        self.written = 0
        self.writer: VideoWriter | None = None
        self.last_report: PipelineReport | None = None

    # -- queue helpers ---------------------------------------------------------------------------------------------
    def _cancelled(self, stage: int) -> bool:
        return stage < self._cut

    def _put(self, q: queue.Queue, item: Any, stage: int) -> None:
        while not self._cancelled(stage):
            try:
                q.put(item, timeout=0.05)
                return
            except queue.Full:
                continue
        raise _Stop

    def _get(self, q: queue.Queue, stage: int) -> Any:
        while not self._cancelled(stage):
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                continue
        raise _Stop

    def _put_latest(self, q: queue.Queue, item: Any) -> None:
        """Live sources: replace a waiting stale frame instead of blocking."""
        while True:
            try:
                q.put_nowait(item)
                return
            except queue.Full:
                try:
                    q.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _stage(self, fn: Callable[[], None], stage: int) -> Callable[[], None]:
        """Run a stage; on an error, cancel the stages upstream and end the stream downstream, so that the
        frames already past this stage are still written."""
        def body() -> None:
            if stage != STAGES.index("infer"):
                self.threads.apply_nice()
            try:
                fn()
            except _Stop:
                pass
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                self.errors.append(e)
                self._cut = max(self._cut, stage)
                if stage < len(self.queues):
                    try:
                        self._put(self.queues[stage], _END, stage)
                    except _Stop:
                        pass
        return body

    # -- stages ----------------------------------------------------------------------------------------------------
    def _decode(self) -> None:
        self.threads.apply_decode(self.source)
        it = iter(self.source)
        n = 0
        try:
            while self.max_frames is None or n < self.max_frames:
                t0 = time.perf_counter()
                frame = next(it, None)
                if frame is None or self._cancelled(0):
                    break
                self.times["decode"].append((time.perf_counter() - t0) * 1e3)
                item = (n, frame, t0)
                if self.source.live:
                    self._put_latest(self.queues[0], item)
                else:
                    self._put(self.queues[0], item, 0)
                n += 1
            if n == 0 and not self._cancelled(0):
                why = f" ({self.source.error})" if self.source.error else ""
                raise ValueError(f"{self.source.name}: no video frame could be decoded{why}")
        finally:
            self.source.close()
        self._put(self.queues[0], _END, 0)

    def _pre(self) -> None:
        self.threads.apply_native()
        simple = self.p.simple
        bufs: list[np.ndarray | None] = [None] * self.ring
        k = 0
        while (item := self._get(self.queues[0], 1)) is not _END:
            i, frame, t_in = item
            t0 = time.perf_counter()
            x = None
            if simple:
                size = self.p.input_size_for(*frame.shape[:2])
                if bufs[k] is None or bufs[k].shape[2:] != size:
                    bufs[k] = np.empty((1, 3, *size), np.float32)
                x = self.p.preprocess(frame, size, out=bufs[k])
                k = (k + 1) % self.ring
            self.times["pre"].append((time.perf_counter() - t0) * 1e3)
            self._put(self.queues[1], (i, frame, t_in, x), 1)
        self._put(self.queues[1], _END, 1)

    def _infer(self) -> None:
        while (item := self._get(self.queues[1], 2)) is not _END:
            i, frame, t_in, x = item
            t0 = time.perf_counter()
            logits = self.p.infer(x) if x is not None else self.p.logits(frame)
            self.times["infer"].append((time.perf_counter() - t0) * 1e3)
            self._put(self.queues[2], (i, frame, t_in, logits), 2)
        self._put(self.queues[2], _END, 2)

    def _post(self) -> None:
        self.threads.apply_native()
        bufs: list[np.ndarray | None] = [None] * self.ring
        palette = self.p.palette
        k = 0
        from engine import ops

        while (item := self._get(self.queues[2], 3)) is not _END:
            i, frame, t_in, logits = item
            t0 = time.perf_counter()
            labels = self.p.postprocess(logits, frame.shape[0], frame.shape[1])[0]  # used at once: not kept
            if bufs[k] is None or bufs[k].shape != frame.shape:
                bufs[k] = np.empty_like(frame)
            shown = ops.overlay(frame, labels, palette, self.alpha, out=bufs[k])
            k = (k + 1) % self.ring
            self.times["post"].append((time.perf_counter() - t0) * 1e3)
            self._put(self.queues[3], (i, shown, t_in), 3)
        self._put(self.queues[3], _END, 3)

    def _encode(self) -> None:
        self.threads.apply_native()  # the writer's RGB -> I420 kernel
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=None if self.source.live else self.source.frames, unit="frame",
                       desc=Path(self.source.name).name, leave=True)
        try:
            while (item := self._get(self.queues[3], 4)) is not _END:
                _, shown, t_in = item
                t0 = time.perf_counter()
                if self.output is not None:
                    if self.writer is None:
                        rate = getattr(self.source, "rate", None) or self.source.fps  # exact where known
                        self.writer = self.threads.writer(self.output, rate, shown.shape[1], shown.shape[0])
                    self.writer.write(shown)
                t1 = time.perf_counter()
                if self.on_frame is not None:  # the display shows the newest frame: replace an unshown one
                    while True:
                        try:
                            self.shown.put_nowait(shown.copy())
                            break
                        except queue.Full:
                            try:
                                self.shown.get_nowait()
                            except queue.Empty:
                                pass
                self.written += 1
                self.times["encode"].append((t1 - t0) * 1e3)
                self.times["end_to_end"].append((t1 - t_in) * 1e3)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()

    # -- driver ----------------------------------------------------------------------------------------------------
    def run(self) -> PipelineReport:
        """Run to the end of the source (or ``max_frames``, or an error / Ctrl-C); always closes the output and
        sets :attr:`last_report`, also when it re-raises a stage error."""
        fns = (self._decode, self._pre, self._infer, self._post, self._encode)
        threads = [threading.Thread(target=self._stage(fn, i), name=f"segrt-{name}", daemon=True)
                   for i, (name, fn) in enumerate(zip(STAGES, fns))]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                if self.on_frame is not None:
                    try:
                        self.on_frame(self.shown.get(timeout=0.02))
                    except queue.Empty:
                        pass
                else:
                    threads[-1].join(timeout=0.1)
        except BaseException as e:  # Ctrl-C, or the display callback failing: stop every stage
            self._cut = len(STAGES)
            if not isinstance(e, KeyboardInterrupt):
                self.errors.append(e)
        finally:
            for t in threads:
                t.join(timeout=30)
            try:
                if self.writer is not None:
                    self.writer.close()
            except Exception as e:  # noqa: BLE001 - a failed flush is re-raised like a stage error, stats kept
                self.errors.append(e)
            self.last_report = self.report(time.perf_counter() - t0)
        if self.on_frame is not None and not self.errors and self._cut == 0:
            last = None  # frames encoded after the display loop's last look: show the newest of them
            while True:
                try:
                    last = self.shown.get_nowait()
                except queue.Empty:
                    break
            if last is not None:
                self.on_frame(last)
        self.last_report = report = self.report(time.perf_counter() - t0)
        if self.errors:
            raise self.errors[0]
        return report

    def report(self, wall: float) -> PipelineReport:
        """Summarise what was measured so far."""
        stages = {k: summarize(v) for k, v in self.times.items()}
        stage_fps = {k: 1e3 / s["mean"] for k, s in stages.items() if k in STAGES and s["mean"] > 0}
        return PipelineReport(source=self.source.name, output=None if self.output is None else str(self.output),
                              frames=self.written, dropped=self.dropped, wall_s=wall,
                              fps=self.written / wall if wall > 0 else 0.0, stages_ms=stages, stage_fps=stage_fps,
                              input_error=self.source.error,
                              error=f"{type(self.errors[0]).__name__}: {self.errors[0]}" if self.errors else None)


def run_video(predictor: Predictor, source: VideoSource, output: str | Path | None = None, **kw: Any) -> PipelineReport:
    """Shorthand for ``VideoPipeline(predictor, source, output, **kw).run()``."""
    return VideoPipeline(predictor, source, output, **kw).run()
