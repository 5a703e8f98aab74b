"""Video pipeline throughput against the throughput of its slowest stage alone (target: >= 0.9x).

For each configuration (ONNX Runtime intra-op threads, with its threads spin-waiting (its default) or not, x the
threads of the other stages, see ``engine.pipeline.StageThreads``), each repeat runs, over every frame of the same
synthetic street video:

* every stage alone (decode, pre, infer, post+overlay, encode), one after the other, with the threads it gets in
  the pipeline (decoder threads, OpenMP threads of the native kernels, ONNX Runtime threads, encoder threads and
  preset), timing wall and process CPU time;
* the threaded pipeline (``engine.pipeline.VideoPipeline``) with those settings;
* the sequential loop (``engine.video.segment_video``) for reference.

Configurations and the order of the parts alternate within each repeat, so load from other processes hits all of
them alike; the ratio pipeline / slowest stage alone is taken per repeat and its median and spread reported. The
CPU arithmetic bounds the ratio: the pipeline cannot beat ``cores / (sum of the stages' CPU ms per frame)``.

Run: ``.venv/bin/python benchmarks/bench_engine.py --model demo_out/model.onnx --input-size 256x512`` (writes
``benchmarks/results/engine_pipeline_<model>_<H>x<W>_net<h>x<w>.json`` and ``.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402
from engine import ops  # noqa: E402
from engine.fileio import write_atomic  # noqa: E402
from engine.pipeline import STAGES, VideoPipeline  # noqa: E402
from engine.stage_threads import NICE, StageThreads  # noqa: E402
from engine.video import VideoWriter, open_source, segment_video  # noqa: E402

PLANS = {"default": StageThreads(nice=NICE),  # what VideoPipeline uses where inference blocks (ORT without spin)
         "normal": StageThreads(),  # the same at the normal priority (what it uses with spinning ORT threads)
         "library": StageThreads(decode=0, native=0, encode=0, preset=None)}  # what it used at first
PLAN_TEXT = {"default": f"1 thread each, x264 veryfast, nice +{NICE} (default without spin)",
             "normal": "1 thread each, x264 veryfast, normal priority (default with spin)",
             "library": "each library's own threads, x264 medium (first version)"}


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


def busy_s() -> float:
    """CPU seconds every process of the machine has used so far, hypervisor steal included (/proc/stat)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def others_load(fn, *args):  # noqa: ANN001, ANN201
    """``(fn(*args), cores used by other processes meanwhile)``: busy time of the machine minus ours, over wall."""
    t, b, c = time.perf_counter(), busy_s(), time.process_time()
    res = fn(*args)
    wall = time.perf_counter() - t
    return res, max(0.0, (busy_s() - b) - (time.process_time() - c)) / wall


def make_predictor(model: str, threads: int, spinning: bool, **kw: object) -> engine.Predictor:
    """``engine.Predictor(model, threads=...)`` with ONNX Runtime's idle threads spin-waiting (its default) or
    blocking (``spin=False``, what ``segrt video`` uses)."""
    return engine.Predictor(model, threads=threads, spin=None if spinning else False, **kw)


def stages_alone(p: engine.Predictor, video: Path, tmp: Path, plan: StageThreads) -> dict[str, list[float]]:
    """``{stage: [wall ms per frame, CPU ms per frame]}`` of each stage run alone over the whole video, with the
    threads the pipeline gives it."""
    marks = [(time.perf_counter(), time.process_time())]
    source = open_source(video)
    plan.apply_decode(source)
    frames = list(source)
    marks.append((time.perf_counter(), time.process_time()))
    size = p.input_size_for(*frames[0].shape[:2])
    xs = [np.empty((1, 3, *size), np.float32) for _ in frames]
    prev = ops.set_num_threads(plan.native) if plan.native else 0
    try:
        marks.append((time.perf_counter(), time.process_time()))
        for f, x in zip(frames, xs):
            p.preprocess(f, size, out=x)
        marks.append((time.perf_counter(), time.process_time()))
        logits = [p.infer(x) for x in xs]
        marks.append((time.perf_counter(), time.process_time()))
        palette = p.palette
        shown = [ops.overlay(f, p.postprocess(lg, *f.shape[:2])[0], palette, 0.5) for f, lg in zip(frames, logits)]
        marks.append((time.perf_counter(), time.process_time()))
        with plan.writer(tmp / "alone.mp4", 15, frames[0].shape[1], frames[0].shape[0]) as vw:
            for s in shown:
                vw.write(s)
        marks.append((time.perf_counter(), time.process_time()))
    finally:
        if prev:
            ops.set_num_threads(prev)
    spans = [(0, 1), (2, 3), (3, 4), (4, 5), (5, 6)]  # marks 1 -> 2: allocating the inputs, no stage's work
    n = len(frames)
    return {k: [(marks[j][0] - marks[i][0]) * 1e3 / n, (marks[j][1] - marks[i][1]) * 1e3 / n]
            for k, (i, j) in zip(STAGES, spans)}


def pipeline_run(p: engine.Predictor, video: Path, tmp: Path, plan: StageThreads) -> list[float]:
    """``[FPS, CPU ms per frame]`` of one threaded pipeline run."""
    c = time.process_time()
    rep = VideoPipeline(p, open_source(video), tmp / "pipe.mp4", threads=plan).run()
    return [rep.fps, (time.process_time() - c) * 1e3 / rep.frames]


QUIET = 0.15  # a repeat is quiet when other processes used less than this many cores during both of its parts


def summarize(all_runs: list[dict], cores: int) -> dict:
    """Medians, spreads and the CPU arithmetic of one configuration's quiet repeats (all of them when fewer than
    three were quiet: the machine is shared, and a repeat that lost cores to other processes measures them)."""
    quiet = [r for r in all_runs if max(r["others_alone"], r["others_pipeline"]) < QUIET]
    runs = quiet if len(quiet) >= 3 else all_runs
    med = lambda v: float(np.median(v))  # noqa: E731
    wall = {k: med([r["alone"][k][0] for r in runs]) for k in STAGES}
    cpu = {k: med([r["alone"][k][1] for r in runs]) for k in STAGES}
    slowest = max(wall, key=wall.get)
    paired = [r["pipeline"][0] * max(v[0] for v in r["alone"].values()) / 1e3 for r in runs]
    pipe_fps = med([r["pipeline"][0] for r in runs])
    cpu_sum = sum(cpu.values())
    bound = cores * 1e3 / cpu_sum
    pipe_cpu = med([r["pipeline"][1] for r in runs])
    return {
        "stage_alone_fps": {k: 1e3 / v for k, v in wall.items()}, "stage_alone_cpu_ms": cpu,
        "slowest_stage": slowest, "slowest_stage_fps": 1e3 / wall[slowest],
        "pipeline_fps": pipe_fps, "pipeline_fps_runs": [r["pipeline"][0] for r in runs],
        "pipeline_cpu_ms_per_frame": pipe_cpu, "pipeline_cores_used": pipe_fps * pipe_cpu / 1e3,
        "sequential_fps": med([r["sequential"] for r in runs]),
        "repeats_used": len(runs), "repeats_quiet": len(quiet),
        "others_cores": med([max(r["others_alone"], r["others_pipeline"]) for r in runs]),
        "ratio_per_repeat": paired, "ratio": med(paired), "ratio_min": min(paired), "ratio_max": max(paired),
        "stage_cpu_sum_ms": cpu_sum, "cpu_bound_fps": bound, "ratio_bound": min(1.0, bound * wall[slowest] / 1e3),
    }


def ort(c: dict) -> str:
    """``2`` or ``2, no spin``: the ONNX Runtime setting of a configuration."""
    return f"{c['ort_threads']}" + ("" if c["spinning"] else ", no spin")


def markdown(res: dict) -> str:
    """The report: one table row per configuration, the stages alone, and the CPU arithmetic."""
    h, w = res["video"]
    nh, nw = res["input_size"]
    md = [f"# Video pipeline: {Path(res['model']).name}, {h}x{w} video, network at {nh}x{nw}", "",
          "```", res["command"], "```", "",
          f"{res['frames']} frames, {res['repeats']} interleaved repeats, {res['cores']} cores ({res['cpu']}), "
          f"onnxruntime {res['onnxruntime']}. *Alone*: each stage over all frames with the threads it has in the "
          "pipeline. *Ratio*: pipeline FPS / slowest stage alone, paired per repeat (median, min-max). *Bound*: "
          "the most the ratio can be, min(1, cores / sum of per-stage CPU ms per frame x slowest stage ms). *Repeats*: "
          f"those during which other processes of this shared machine used < {QUIET} cores (/proc/stat), of all; "
          "all of them where fewer than 3 were quiet.", "",
          "| ORT threads | other stages | slowest alone FPS | pipeline FPS | **ratio** (min-max) | bound | "
          "stage CPU ms/frame (sum) | pipeline CPU ms/frame (cores) | sequential FPS | repeats |",
          "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in res["configs"]:
        md.append(f"| {ort(c)} | {c['plan']} | {c['slowest_stage']} {c['slowest_stage_fps']:.1f} | "
                  f"{c['pipeline_fps']:.1f} | **{c['ratio']:.2f}x** ({c['ratio_min']:.2f}-{c['ratio_max']:.2f}) | "
                  f"{c['ratio_bound']:.2f}x | {c['stage_cpu_sum_ms']:.1f} | {c['pipeline_cpu_ms_per_frame']:.1f} "
                  f"({c['pipeline_cores_used']:.2f}) | {c['sequential_fps']:.1f} | "
                  f"{c['repeats_used']} of {len(c['raw'])} |")
    md += ["", "Stages alone (median FPS / CPU ms per frame):", "",
           "| ORT threads | other stages | " + " | ".join(STAGES) + " |", "|---:|---|" + "---:|" * len(STAGES)]
    for c in res["configs"]:
        md.append(f"| {ort(c)} | {c['plan']} | " + " | ".join(
            f"{c['stage_alone_fps'][k]:.0f} / {c['stage_alone_cpu_ms'][k]:.2f}" for k in STAGES) + " |")
    md += ["", "CPU arithmetic per configuration: the stages need `sum` CPU ms per frame, the cores give "
           f"{res['cores']} x 1000 ms per second, so the pipeline cannot exceed cores x 1000 / sum FPS.", ""]
    for c in res["configs"]:
        ok = "reachable" if c["ratio_bound"] >= 0.9 else "**0.9x is impossible here**"
        md.append(f"- ORT {ort(c)}, {c['plan']}: {res['cores']} x 1000 / "
                  f"{c['stage_cpu_sum_ms']:.1f} = {c['cpu_bound_fps']:.1f} FPS vs slowest stage "
                  f"{c['slowest_stage_fps']:.1f} FPS: bound {c['ratio_bound']:.2f}x ({ok}); the pipeline reached "
                  f"{c['pipeline_fps'] / min(c['cpu_bound_fps'], c['slowest_stage_fps']):.2f}x of min(bound, "
                  f"slowest)")
    best = max(res["configs"], key=lambda c: c["pipeline_fps"])
    md.append(f"- Fastest pipeline, the one that matters for real-time use: ORT {ort(best)}, {best['plan']}: "
              f"{best['pipeline_fps']:.1f} FPS, {best['ratio']:.2f}x its slowest stage alone")
    spin = {(c["ort_threads"], c["plan"], c["spinning"]): c for c in res["configs"]}
    for (t, plan, on), c in spin.items():
        off = spin.get((t, plan, False))
        if on and off:
            extra = c["pipeline_cpu_ms_per_frame"] - off["pipeline_cpu_ms_per_frame"]
            alone = c["stage_cpu_sum_ms"] - off["stage_cpu_sum_ms"]
            md.append(f"- ONNX Runtime's spin-waiting, {t} threads, {plan}: the pipeline spends {extra:.1f} CPU "
                      f"ms more per frame with it than without (its stages alone: {alone:+.1f} ms); ratio "
                      f"{c['ratio']:.2f}x with, {off['ratio']:.2f}x without")
    return "\n".join(md) + "\n"


def main() -> int:
    """Measure, print the markdown and write JSON + markdown under ``--out-dir``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo_out/model.onnx")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--video-size", default="360x640", help="HxW of the synthetic video")
    ap.add_argument("--input-size", default=None, help="network input HxW (default: the model's)")
    ap.add_argument("--threads", default="2", help="comma-separated ONNX Runtime intra-op thread counts")
    ap.add_argument("--no-spin", action="store_true",
                    help="also measure ONNX Runtime threads that block instead of spin-waiting (threads > 1)")
    ap.add_argument("--plans", default=",".join(PLANS), help=f"comma-separated, of: {', '.join(PLANS)}")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--render", default=None, metavar="JSON", help="only rewrite the markdown of a result JSON")
    a = ap.parse_args()
    if a.render:
        res = json.loads(Path(a.render).read_text())
        write_atomic(Path(a.render).with_suffix(".md"), markdown(res))
        print(markdown(res))
        return 0
    h, w = (int(v) for v in a.video_size.split("x"))
    kw = {"input_size": tuple(int(v) for v in a.input_size.split("x"))} if a.input_size else {}
    plans = {k: PLANS[k] for k in a.plans.split(",")}
    ort_cfgs = [(t, spin) for t in (int(v) for v in a.threads.split(","))
                for spin in ((True, False) if a.no_spin and t > 1 else (True,))]
    predictors = {c: make_predictor(a.model, *c, **kw) for c in ort_cfgs}
    configs = [(c, name) for c in ort_cfgs for name in plans]
    runs: dict = {c: [] for c in configs}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        video = make_video(tmp / "street.mp4", a.frames, h, w)
        for p in predictors.values():
            p.run(next(iter(open_source(video))))  # warm-up
        for r in range(a.repeats):
            for c, name in configs if r % 2 == 0 else configs[::-1]:
                p, plan = predictors[c], plans[name]
                rec: dict = {}
                for part in ("alone", "pipeline") if r % 2 == 0 else ("pipeline", "alone"):
                    run = stages_alone if part == "alone" else pipeline_run
                    rec[part], rec[f"others_{part}"] = others_load(run, p, video, tmp, plan)
                t0 = time.perf_counter()
                rec["sequential"] = segment_video(p, video, tmp / "seq.mp4").count / (time.perf_counter() - t0)
                runs[(c, name)].append(rec)
                print(f"repeat {r}: ORT {c}, {name}: pipeline {rec['pipeline'][0]:.1f} FPS, slowest alone "
                      f"{1e3 / max(v[0] for v in rec['alone'].values()):.1f} FPS; other processes used "
                      f"{rec['others_alone']:.2f} / {rec['others_pipeline']:.2f} cores", flush=True)
    p0 = next(iter(predictors.values()))
    cores = os.cpu_count() or 1
    import onnxruntime as ort_module

    res = {"model": a.model, "video": [h, w], "input_size": list(p0.input_size_for(h, w)), "frames": a.frames,
           "cores": cores, "cpu": platform.processor() or platform.machine(), "onnxruntime": ort_module.__version__,
           "repeats": a.repeats, "command": shlex.join(["python", "benchmarks/bench_engine.py", *sys.argv[1:]]),
           "configs": [{"ort_threads": c[0], "spinning": c[1], "plan": PLAN_TEXT[name],
                        "stage_threads": asdict(plans[name]), **summarize(runs[(c, name)], cores),
                        "raw": runs[(c, name)]} for c, name in configs]}
    name = f"engine_pipeline_{Path(a.model).stem}_{h}x{w}_net{res['input_size'][0]}x{res['input_size'][1]}"
    out = Path(a.out_dir)
    write_atomic(out / f"{name}.json", json.dumps(res, indent=1) + "\n")
    md = markdown(res)
    write_atomic(out / f"{name}.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
