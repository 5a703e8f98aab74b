"""``segrt bench``: latency of the engine per stage and end to end, beside the bare network and PyTorch eager.

Three rows, all on the same HxW image with the network run at HxW:

* ``segrt (<backend>)``: ``Predictor.run`` split into pre (native resize+normalize+layout), infer, post (native fused
  upsample+argmax), and end to end;
* ``bare <backend>``: the network alone on a ready input tensor (what the backend costs without our code);
* ``torch eager`` (with ``--torch CKPT``): the same work in PyTorch: resize+normalize in torch, forward,
  ``F.interpolate`` + argmax. torch is imported only in this path.

Writes ``<name>.json``, ``<name>.md`` and ``<name>.png`` (matplotlib, Agg) under the output folder.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine.fileio import atomic_path, write_atomic
from engine.pipeline import summarize
from engine.predictor import Predictor

STAGES = ("pre", "infer", "post", "end_to_end")


def parse_shape(text: str) -> tuple[int, int]:
    """``"512x1024"`` -> ``(512, 1024)``; ValueError otherwise."""
    try:
        h, w = (int(v) for v in text.lower().replace("*", "x").split("x"))
    except ValueError:
        raise ValueError(f"shape must look like HxW (e.g. 512x1024), got {text!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"shape must be positive, got {text!r}")
    return h, w


def bench_image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A deterministic street-like test image (smooth gradients + noise), HxWx3 uint8."""
    h, w = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w * 200, yy / h * 200, (xx + yy) / (h + w) * 255], axis=2)
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


Step = Callable[[], dict[str, float]]


def measure(steps: dict[str, Step], runs: int, warmup: int) -> dict[str, dict[str, dict[str, float]]]:
    """Warm every configuration up, then run them interleaved (run 1 of each, run 2 of each, ...), so that load
    from other processes hits all of them alike; ``{config: {stage: summary}}``."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in steps}
    for _ in range(runs):
        for name, step in steps.items():
            for k, v in step().items():
                samples[name].setdefault(k, []).append(v)
    return {name: {k: summarize(v) for k, v in st.items()} for name, st in samples.items()}


def bench_predictor(p: Predictor, img: np.ndarray, runs: int, warmup: int) -> tuple[dict, np.ndarray]:
    """Per-stage and end-to-end latency of ``p`` on ``img``; also the labels it produced."""
    out: dict[str, np.ndarray] = {}
    return measure({"x": predictor_step(p, img, out)}, runs, warmup)["x"], out["labels"]


def predictor_step(p: Predictor, img: np.ndarray, out: dict[str, np.ndarray]) -> Step:
    """One timed ``Predictor`` pass split into stages; the labels land in ``out["labels"]``."""
    h, w = img.shape[:2]

    def step() -> dict[str, float]:
        t0 = time.perf_counter()
        x = p.preprocess(img)
        t1 = time.perf_counter()
        logits = p.infer(x)
        t2 = time.perf_counter()
        out["labels"] = p.postprocess(logits, h, w)[0]
        t3 = time.perf_counter()
        return {"pre": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "post": (t3 - t2) * 1e3,
                "end_to_end": (t3 - t0) * 1e3}

    return step


def bare_step(p: Predictor, shape: tuple[int, int]) -> Step:
    """The backend alone on a ready normalized input tensor."""
    x = np.random.default_rng(1).standard_normal((1, 3, *shape)).astype(np.float32)

    def step() -> dict[str, float]:
        t0 = time.perf_counter()
        p.backend.infer(x)
        ms = (time.perf_counter() - t0) * 1e3
        return {"infer": ms, "end_to_end": ms}

    return step


def bench_torch_model(model: Any, meta: dict, img: np.ndarray, shape: tuple[int, int], runs: int, warmup: int,
                      threads: int | None = None) -> tuple[dict, np.ndarray]:
    """PyTorch eager doing the engine's work, measured alone; also its labels."""
    out: dict[str, np.ndarray] = {}
    return measure({"x": torch_step(model, meta, img, shape, out, threads)}, runs, warmup)["x"], out["labels"]


def torch_step(model: Any, meta: dict, img: np.ndarray, shape: tuple[int, int], out: dict[str, np.ndarray],
               threads: int | None = None) -> Step:
    """PyTorch eager doing the engine's work: resize+normalize, forward, ``F.interpolate`` + argmax."""
    import torch
    import torch.nn.functional as F

    if threads:
        torch.set_num_threads(int(threads))
    mean = torch.tensor(meta.get("mean", (123.675, 116.28, 103.53)), dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(meta.get("std", (58.395, 57.12, 57.375)), dtype=torch.float32).view(1, 3, 1, 1)
    align = bool(meta.get("align_corners", False))
    h, w = img.shape[:2]
    model = model.eval()

    def step() -> dict[str, float]:
        with torch.inference_mode():
            t0 = time.perf_counter()
            x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
            if (h, w) != tuple(shape):
                x = F.interpolate(x, size=shape, mode="bilinear", align_corners=align)
            x = ((x - mean) / std).contiguous()
            t1 = time.perf_counter()
            logits = model(x)
            t2 = time.perf_counter()
            up = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=align)
            out["labels"] = up.argmax(1)[0].to(torch.uint8).numpy()
            t3 = time.perf_counter()
        return {"pre": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "post": (t3 - t2) * 1e3,
                "end_to_end": (t3 - t0) * 1e3}

    return step


def run_bench(model: str | Path, shape: tuple[int, int], *, backends: tuple[str, ...] = ("onnxruntime",),
              torch_ckpt: str | Path | None = None, runs: int = 50, warmup: int = 5, threads: int | None = None,
              out_dir: str | Path | None = "benchmarks/results", name: str | None = None) -> dict:
    """Measure and (when ``out_dir``) write JSON + markdown + PNG; returns the result dictionary."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    unknown = [b for b in backends if b not in ("onnxruntime", "torch")]
    if unknown:
        raise ValueError(f"unknown backend(s) {unknown} (known: onnxruntime, torch)")
    if "torch" in backends and torch_ckpt is None:
        raise ValueError("backend 'torch' needs a checkpoint: --torch CKPT")
    img = bench_image(shape)
    steps: dict[str, Step] = {}
    ours: dict[str, np.ndarray] = {}
    theirs: dict[str, np.ndarray] = {}
    import onnxruntime as ort

    if "onnxruntime" in backends:
        p = Predictor(model, backend="onnxruntime", device="cpu", threads=threads, input_size=shape)
        steps["segrt (onnxruntime)"] = predictor_step(p, img, ours)
        steps["bare onnxruntime"] = bare_step(p, shape)
    if torch_ckpt is not None:
        from training.export import load_trained  # torch is needed only here

        tmodel, meta = load_trained(torch_ckpt)
        steps["torch eager"] = torch_step(tmodel, meta, img, shape, theirs, threads)
    rows = measure(steps, runs, warmup)
    labels = {k: v["labels"] for k, v in (("ours", ours), ("torch", theirs)) if "labels" in v}
    e2e = {k: v["end_to_end"]["median"] for k, v in rows.items()}
    ratios: dict[str, float] = {}
    if "segrt (onnxruntime)" in e2e:
        ours = e2e["segrt (onnxruntime)"]
        ratios["end_to_end / bare network"] = ours / e2e["bare onnxruntime"]
        if "torch eager" in e2e:
            ratios["torch eager / segrt"] = e2e["torch eager"] / ours
    result = {
        "model": str(model), "shape": list(shape), "runs": runs, "warmup": warmup,
        "threads": threads or os.cpu_count(), "machine": {"cpu": platform.processor() or platform.machine(),
                                                          "cores": os.cpu_count(), "onnxruntime": ort.__version__},
        "results_ms": rows, "ratios": ratios,
    }
    if "ours" in labels and "torch" in labels:
        result["label_agreement_torch_vs_ours"] = float((labels["ours"] == labels["torch"]).mean())
    if out_dir is not None:
        name = name or f"engine_bench_{Path(model).stem}_{shape[0]}x{shape[1]}"
        result["files"] = write_report(result, Path(out_dir), name)
    return result


def markdown(result: dict) -> str:
    """The result as a markdown table of medians (p90, p99) per stage."""
    h, w = result["shape"]
    lines = [f"# segrt bench: {Path(result['model']).name} at {h}x{w}", "",
             f"{result['runs']} interleaved runs after {result['warmup']} warm-up, {result['threads']} threads, "
             f"{result['machine']['cores']} cores ({result['machine']['cpu']}), "
             f"onnxruntime {result['machine']['onnxruntime']}.", "",
             "| configuration | " + " | ".join(f"{s} ms (p90 / p99)" for s in STAGES) + " |",
             "|---|" + "---:|" * len(STAGES)]
    for row, stages in result["results_ms"].items():
        cells = [f"{stages[s]['median']:.2f} ({stages[s]['p90']:.2f} / {stages[s]['p99']:.2f})" if s in stages
                 else "" for s in STAGES]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {k}: **{v:.3f}x**" for k, v in result["ratios"].items()]
    if "label_agreement_torch_vs_ours" in result:
        lines.append(f"- labels equal to torch eager's: {100 * result['label_agreement_torch_vs_ours']:.3f}%")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """Stacked bars of median pre/infer/post per configuration, with the end-to-end p90 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(result["results_ms"].items())
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.7 * len(rows)))
    colours = {"pre": "#4c72b0", "infer": "#dd8452", "post": "#55a868"}
    for i, (_, stages) in enumerate(rows):
        left = 0.0
        for s in ("pre", "infer", "post"):
            if s in stages:
                v = stages[s]["median"]
                ax.barh(i, v, left=left, color=colours[s], label=s if i == 0 or s != "infer" else None)
                left += v
        ax.plot(stages["end_to_end"]["p90"], i, "k|", markersize=18)
    ax.set_yticks(range(len(rows)), [r for r, _ in rows])
    ax.invert_yaxis()
    h, w = result["shape"]
    ax.set_xlabel("latency, ms (bars: medians per stage; |: end-to-end p90)")
    ax.set_title(f"{Path(result['model']).name} at {h}x{w}")
    handles, names = ax.get_legend_handles_labels()
    uniq = dict(zip(names, handles))
    ax.legend(uniq.values(), uniq.keys(), loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def write_report(result: dict, out_dir: Path, name: str) -> list[str]:
    """Write ``name``.json/.md/.png atomically under ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md", out_dir / f"{name}.png"]
    for path, text in ((paths[0], json.dumps(result, indent=2) + "\n"), (paths[1], markdown(result))):
        write_atomic(path, text)
    plot(result, paths[2])
    return [str(p) for p in paths]
