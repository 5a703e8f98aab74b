"""Video pipeline throughput against the throughput of its slowest stage alone (target: >= 0.9x).

Each stage (decode, pre, infer, post+overlay, encode) is first timed alone over every frame of a synthetic
street video, with the whole machine to itself; then the sequential loop (``engine.video.segment_video``) and the
threaded pipeline (``engine.pipeline.VideoPipeline``) run the same video, ``--repeats`` times each, side by side.

Run: ``.venv/bin/python benchmarks/bench_engine.py --model demo_out/model.onnx`` (writes
``benchmarks/results/engine_pipeline_<model>_<H>x<W>.json`` and ``.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402
from engine import ops  # noqa: E402
from engine.pipeline import VideoPipeline  # noqa: E402
from engine.video import VideoWriter, open_source, segment_video  # noqa: E402


def make_video(path: Path, frames: int, h: int, w: int) -> Path:
    """The project's synthetic street video (needs the training package), else moving numpy shapes."""
    try:
        from training.data.synthetic import generate_video

        return generate_video(path, n_frames=frames, height=h, width=w, fps=15, seed=1)
    except ImportError:
        with VideoWriter(path, 15, w, h) as vw:
            for i in range(frames):
                f = np.zeros((h, w, 3), np.uint8)
                f[h // 2:] = (90, 90, 90)
                f[h // 3: h // 2, (i * 7) % w: (i * 7) % w + w // 6] = (200, 40, 40)
                vw.write(f)
        return path


class _Clock:
    """Wall and process-CPU seconds of a block."""

    def __init__(self, wall: dict, cpu: dict, key: str) -> None:
        self.wall, self.cpu, self.key = wall, cpu, key

    def __enter__(self) -> None:
        self.t, self.c = time.perf_counter(), time.process_time()

    def __exit__(self, *exc: object) -> None:
        self.wall[self.key] = time.perf_counter() - self.t
        self.cpu[self.key] = time.process_time() - self.c


def stages_alone(p: engine.Predictor, video: Path, tmp: Path) -> dict[str, float]:
    """FPS of each stage run alone over the whole video, and the CPU bound of running them all on this machine."""
    t: dict[str, float] = {}
    cpu: dict[str, float] = {}
    with _Clock(t, cpu, "decode"):
        frames = list(open_source(video))
    size = p.input_size_for(*frames[0].shape[:2])
    xs = [np.empty((1, 3, *size), np.float32) for _ in frames]
    with _Clock(t, cpu, "pre"):
        for f, x in zip(frames, xs):
            p.preprocess(f, size, out=x)
    with _Clock(t, cpu, "infer"):
        logits = [p.infer(x) for x in xs]
    palette = p.palette
    with _Clock(t, cpu, "post"):
        shown = [ops.overlay(f, p.postprocess(lg, *f.shape[:2])[0], palette, 0.5) for f, lg in zip(frames, logits)]
    with _Clock(t, cpu, "encode"), VideoWriter(tmp / "alone.mp4", 15, frames[0].shape[1], frames[0].shape[0]) as vw:
        for s in shown:
            vw.write(s)
    n = len(frames)
    return {k: n / v for k, v in t.items()} | {"frames": n, "cpu_bound": (os.cpu_count() or 1) * n / sum(cpu.values())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo_out/model.onnx")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--video-size", default="360x640", help="HxW of the synthetic video")
    ap.add_argument("--input-size", default=None, help="network input HxW (default: the model's)")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    a = ap.parse_args()
    h, w = (int(v) for v in a.video_size.split("x"))
    kw = {"input_size": tuple(int(v) for v in a.input_size.split("x"))} if a.input_size else {}
    p = engine.Predictor(a.model, threads=a.threads, **kw)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        video = make_video(tmp / "street.mp4", a.frames, h, w)
        p.run(next(iter(open_source(video))))  # warm-up
        alone, seq, pipe = [], [], []
        for _ in range(a.repeats):  # interleaved, so that load from other processes hits all three alike
            alone.append(stages_alone(p, video, tmp))
            t0 = time.perf_counter()
            n = segment_video(p, video, tmp / "seq.mp4").count
            seq.append(n / (time.perf_counter() - t0))
            rep = VideoPipeline(p, open_source(video), tmp / "pipe.mp4").run()
            pipe.append(rep.fps)
    stage_fps = {k: float(np.median([r[k] for r in alone])) for k in ("decode", "pre", "infer", "post", "encode")}
    slowest = min(stage_fps, key=stage_fps.get)
    result = {
        "model": a.model, "video": [h, w], "input_size": list(p.input_size_for(h, w)), "frames": alone[0]["frames"],
        "threads": a.threads or os.cpu_count(), "cores": os.cpu_count(), "cpu": platform.processor(),
        "repeats": a.repeats, "stage_alone_fps": stage_fps, "slowest_stage": slowest,
        "sequential_fps": float(np.median(seq)), "pipeline_fps": float(np.median(pipe)),
        "pipeline_fps_runs": pipe, "sequential_fps_runs": seq,
    }
    result["cpu_bound_fps"] = float(np.median([r["cpu_bound"] for r in alone]))
    # each repeat pairs the pipeline with the stages measured just before it (load drifts between repeats)
    paired = [pf / min(r[k] for k in stage_fps) for pf, r in zip(pipe, alone)]
    result["pipeline / slowest stage, per repeat"] = paired
    result["pipeline / slowest stage, median of repeats"] = float(np.median(paired))
    result["pipeline / slowest stage"] = result["pipeline_fps"] / stage_fps[slowest]
    result["pipeline / min(slowest stage, cpu bound)"] = result["pipeline_fps"] / min(stage_fps[slowest],
                                                                                       result["cpu_bound_fps"])
    result["pipeline / sequential"] = result["pipeline_fps"] / result["sequential_fps"]
    name = f"engine_pipeline_{Path(a.model).stem}_{h}x{w}_net{result['input_size'][0]}x{result['input_size'][1]}"
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [f"# Video pipeline: {Path(a.model).name}, {h}x{w} video, network at "
          f"{result['input_size'][0]}x{result['input_size'][1]}", "",
          f"{result['frames']} frames, median of {a.repeats} interleaved repeats, {result['cores']} cores, "
          f"ONNX Runtime threads {result['threads']}.", "", "| stage alone | FPS |", "|---|---:|"]
    md += [f"| {k}{' (slowest)' if k == slowest else ''} | {v:.1f} |" for k, v in stage_fps.items()]
    md += ["", f"- sequential loop: {result['sequential_fps']:.1f} FPS",
           f"- threaded pipeline: {result['pipeline_fps']:.1f} FPS",
           f"- pipeline / slowest stage alone: **{result['pipeline / slowest stage']:.2f}x** (target >= 0.9x)",
           f"- the same ratio paired per repeat: median **{np.median(paired):.2f}x** "
           f"(runs: {', '.join(f'{v:.2f}' for v in paired)})",
           f"- pipeline / sequential: **{result['pipeline / sequential']:.2f}x**",
           f"- CPU bound (cores / CPU-seconds per frame summed over the stages alone): "
           f"{result['cpu_bound_fps']:.1f} FPS; pipeline / min(slowest stage, CPU bound): "
           f"**{result['pipeline / min(slowest stage, cpu bound)']:.2f}x**", ""]
    (out / f"{name}.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
