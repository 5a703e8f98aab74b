"""The deployment half of ``segrt demo``, torch-free: evaluate an exported model with engine.Predictor on the
synthetic validation split, segment a synthetic video, and write metrics, latency and overlays."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import engine
from engine.fileio import write_atomic
from engine.pipeline import VideoPipeline
from engine.video import open_source
from training.data import SegFolderDataset, generate_video
from training.metrics import evaluate_predictor


def run(model: Path, data_root: Path, out: Path, threads: int | None = None) -> dict:
    """Write metrics.json, latency.json/.md, overlay.mp4 and overlay_*.png under ``out``."""
    # ONNX Runtime's idle threads block instead of spin-waiting, as in `segrt video`: the pipeline's stages share
    # the cores (for the sequential evaluation it makes no measurable difference)
    predictor = engine.Predictor(model, threads=threads, spin=False)
    val = SegFolderDataset(data_root, "val")
    print(f"[3/4] evaluating {model.name} with engine.Predictor ({predictor.backend.name}) on {len(val)} images")
    metrics = evaluate_predictor(predictor, val)
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")

    print("[4/4] segmenting the synthetic video with the threaded pipeline")
    video = generate_video(data_root.parent / "synthetic_video.mp4", seed=1)
    report = VideoPipeline(predictor, open_source(video), out / "overlay.mp4").run()
    latency = {"frames": report.frames, "fps": report.fps, "stages_ms": report.stages_ms,
               "backend": predictor.backend.name, "threads": threads, "torch_imported": "torch" in sys.modules}
    write_atomic(out / "latency.json", json.dumps(latency, indent=2) + "\n")
    write_atomic(out / "latency.md", report.table() + "\n")
    for i in range(min(4, len(val))):
        s = val[i]
        shown = np.concatenate([predictor.overlay(s["image"], predictor.run(s["image"])),
                                predictor.overlay(s["image"], s["mask"])], 0)
        Image.fromarray(shown).save(out / f"overlay_{i:02d}.png")

    print(f"\nwrote {out}/: model.pt model.onnx metrics.json latency.json latency.md overlay.mp4 overlay_*.png")
    print(f"mIoU {metrics['mIoU']:.4f}  pixAcc {metrics['pixAcc']:.4f}")
    print("per-class IoU: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics["per_class_IoU"].items() if v is not None))
    print(f"video: {report.frames} frames at {report.fps:.1f} FPS, latency per stage (ms)")
    print(report.table())
    return metrics


def main(argv: list[str] | None = None) -> int:
    """``python -m training.demo_engine MODEL --data ROOT --out DIR``."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model", type=Path)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    run(a.model, a.data, a.out, a.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
