"""``segrt video`` on the command line: the pipeline run, its window, and its stats (also after a failure)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _show_frames() -> object:
    """A matplotlib window that shows frames; ValueError when there is no display to show them on."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise ValueError("--show needs a display (DISPLAY is not set); use -o OUT.mp4 instead")
    import matplotlib.pyplot as plt

    state: dict = {}

    def show(frame: object) -> None:
        if "im" not in state:
            plt.ion()
            state["im"] = plt.imshow(frame)
            plt.axis("off")
        else:
            state["im"].set_data(frame)
        plt.pause(0.001)

    return show


def video_command(a: argparse.Namespace) -> int:
    from engine.pipeline import VideoPipeline
    from engine.video import check_max_frames, check_output, open_source

    if a.output:  # before the model loads: a bad -o or --max-frames fails at once
        check_output(a.output)
    check_max_frames(a.max_frames)
    on_frame = _show_frames() if a.show else None
    from engine.cli import _predictor

    predictor = _predictor(a)
    source = open_source(a.source, live=a.live)
    stats = a.stats
    if stats is None:
        stats = (Path(a.output).with_suffix(".stats.json") if a.output
                 else Path(f"{Path(str(a.source)).stem or 'video'}.stats.json"))
    pipeline = VideoPipeline(predictor, source, a.output, alpha=a.alpha, queue_size=a.queue,
                             max_frames=a.max_frames, on_frame=on_frame, progress=not a.quiet)
    try:
        report = pipeline.run()
    except Exception:  # a stage failed: keep what was measured up to the failure, then report the error
        _save_partial_stats(pipeline.last_report, stats)
        raise
    print(report.table())
    if report.input_error:
        print(f"warning: {report.input_error}; the output holds the {report.frames} frames before it",
              file=sys.stderr)
    print(f"stats: {report.save(stats)}")
    return 0


def _save_partial_stats(report: object, path: str | Path) -> None:
    """Save the report a failed pipeline left (``VideoPipeline.last_report``: the frames before the failure, the
    stage error under ``error``); a failure to write it is a warning, so that the stage's error is the one reported."""
    if report is None:  # the pipeline failed before it measured anything
        return
    try:
        print(f"stats up to the failure: {report.save(path)}")
    except Exception as e:  # never mask the pipeline's error
        print(f"warning: the stats could not be written to {path} ({type(e).__name__}: {e})", file=sys.stderr)
