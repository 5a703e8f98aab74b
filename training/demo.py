"""``segrt demo``: synthetic data -> train -> export, then, in a fresh process without PyTorch, the engine:
evaluate the exported model with engine.Predictor and segment a synthetic video."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo_pspnet_r18-d8_synthetic-128x256.yaml"


def run_demo(out: Path, minutes: float | None = None, config: Path = DEMO_CONFIG) -> dict:
    """Run the whole path on the built-in data and write everything under ``out``; returns the figures."""
    import torch

    from training.config import load_config
    from training.export import export_checkpoint
    from training.train import train

    start = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(config)
    cfg.work_dir = str(out / "work_dir")
    if minutes is not None:
        cfg.train.max_minutes = minutes
    threads = cfg.train.threads or torch.get_num_threads()

    print(f"[1/4] training {cfg.model.name} ({cfg.model.backbone}) for {cfg.train.iters} iterations")
    t0 = time.time()
    torch_metrics = train(cfg)
    train_s = time.time() - t0
    ckpt = out / "model.pt"
    shutil.copyfile(Path(cfg.work_dir) / "best.pt", ckpt)

    print("[2/4] exporting to ONNX")
    onnx_path = export_checkpoint(ckpt, out / "model.onnx")

    # The deployment half runs as a user would deploy it: a fresh process that never imports torch (its
    # OpenMP set-up, made for training, would otherwise slow the engine's native kernels down).
    cmd = [sys.executable, "-m", "training.demo_engine", str(onnx_path), "--data", cfg.data.root, "--out", str(out),
           "--threads", str(threads)]
    subprocess.run(cmd, check=True)

    metrics = json.loads((out / "metrics.json").read_text())
    metrics.update(torch_mIoU=torch_metrics.get("mIoU"), train_seconds=round(train_s, 1),
                   total_seconds=round(time.time() - start, 1))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"torch mIoU {metrics['torch_mIoU']:.4f} (the exported model: {metrics['mIoU']:.4f}); "
          f"total {metrics['total_seconds']} s, training {train_s:.0f} s")
    return metrics
