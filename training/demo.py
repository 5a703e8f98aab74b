"""``segrt demo``: synthetic data -> train -> evaluate -> export -> engine.Predictor on a synthetic video."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from engine.fileio import write_atomic

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo_pspnet_r18-d8_synthetic-128x256.yaml"


def _write_json(path: Path, obj: object) -> None:
    write_atomic(path, json.dumps(obj, indent=2) + "\n")


def run_demo(out: Path, minutes: float | None = None, config: Path = DEMO_CONFIG) -> dict:
    """Run the whole path on the built-in data and write everything under ``out``; returns the figures."""
    import torch

    import engine
    from engine.video import segment_video
    from training.batcher import open_datasets
    from training.config import load_config
    from training.data import generate_video
    from training.evaluate import evaluate_predictor
    from training.export import export_checkpoint
    from training.train import train

    start = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(config)
    cfg.work_dir = str(out / "work_dir")
    if minutes is not None:
        cfg.train.max_minutes = minutes
    torch.set_num_threads(cfg.train.threads or torch.get_num_threads())

    print(f"[1/5] training {cfg.model.name} ({cfg.model.backbone}) for {cfg.train.iters} iterations")
    t0 = time.time()
    torch_metrics = train(cfg)
    train_s = time.time() - t0
    ckpt = out / "model.pt"
    shutil.copyfile(Path(cfg.work_dir) / "best.pt", ckpt)

    print("[2/5] exporting to ONNX")
    onnx_path = export_checkpoint(ckpt, out / "model.onnx")

    print("[3/5] evaluating the exported model with engine.Predictor")
    predictor = engine.Predictor(onnx_path)
    _, val_ds = open_datasets(cfg)
    metrics = evaluate_predictor(predictor, val_ds)
    metrics["torch_mIoU"] = torch_metrics.get("mIoU")
    metrics["train_seconds"] = round(train_s, 1)
    _write_json(out / "metrics.json", metrics)

    print("[4/5] segmenting the synthetic video")
    video = generate_video(Path(cfg.data.root).parent / "synthetic_video.mp4", seed=1)
    stats = segment_video(predictor, video, out / "overlay.mp4")
    _write_json(out / "latency.json", {"frames": stats.count, "stages_ms": stats.summary(),
                                       "backend": predictor.backend.name, "threads": torch.get_num_threads()})
    (out / "latency.md").write_text(stats.table() + "\n")

    print("[5/5] writing overlay images")
    for i in range(min(4, len(val_ds))):
        s = val_ds[i]
        labels = predictor.run(s["image"])
        shown = np.concatenate([predictor.overlay(s["image"], labels), predictor.overlay(s["image"], s["mask"])], 0)
        Image.fromarray(shown).save(out / f"overlay_{i:02d}.png")

    summary = {"mIoU": metrics["mIoU"], "pixAcc": metrics["pixAcc"], "latency_ms": stats.summary(),
               "total_seconds": round(time.time() - start, 1)}
    print(f"\nwrote {out}/: model.pt model.onnx metrics.json latency.json latency.md overlay.mp4 overlay_*.png")
    print(f"mIoU {metrics['mIoU']:.4f}  pixAcc {metrics['pixAcc']:.4f}  (torch mIoU {metrics['torch_mIoU']:.4f})")
    print("per-class IoU: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics["per_class_IoU"].items() if v is not None))
    print(stats.table())
    print(f"total {summary['total_seconds']} s (training {train_s:.0f} s)")
    return summary
