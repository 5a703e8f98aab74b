"""The issue's reference network, PSPNet-R50-D8 at 512x1024 (about 713 GFLOP), through ``segrt bench``.

No pretrained weights can be downloaded here, so the model is built with its own initialisation (19 Cityscapes
classes); latency does not depend on the weight values. The script writes the segrt checkpoint, exports it to ONNX
(``segrt export``), quantizes it to int8 (``segrt quantize``, calibrated on the synthetic training images at
512x1024) and runs ``segrt bench`` on fp32, int8 and PyTorch eager in one interleaved run. Label agreement between
int8 and fp32 is reported by the bench; an mIoU change means nothing for a network that was never trained (the
trained demo model's is in ``benchmarks/results/quantize_model.md``).

Run: ``.venv/bin/python benchmarks/bench_pspnet.py`` (about 15 minutes on 2 cores; ``--work DIR`` keeps the model
files, ``--runs``/``--warmup`` go to the bench). Writes ``benchmarks/results/engine_bench_pspnet_r50_d8_512x1024.*``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_files import segrt, write_checkpoint  # noqa: E402

SHAPE = (512, 1024)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("work_dirs/bench_pspnet"), help="model files go here")
    ap.add_argument("--data", type=Path, default=Path("data/synthetic"), help="calibration data (made if absent)")
    ap.add_argument("--calib-images", type=int, default=8)
    ap.add_argument("--runs", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out-dir", default="benchmarks/results")
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    ckpt, fp32, int8 = a.work / "pspnet_r50_d8.pt", a.work / "pspnet_r50_d8.onnx", a.work / "pspnet_r50_d8.int8.onnx"
    if not ckpt.exists():  # PSPNet-R50-D8: ResNet-50 v1c, dilations 2/4
        write_checkpoint(ckpt, "pspnet", "resnet50-v1c", SHAPE)
    if not fp32.exists():
        segrt("export", str(ckpt), "-o", str(fp32))
    if not (a.data / "classes.yaml").exists():
        from training.data import generate_dataset

        generate_dataset(a.data)
    if not int8.exists():
        segrt("quantize", str(fp32), "--calib", str(a.data), "-o", str(int8), "--num-images", str(a.calib_images))
    shape = f"{SHAPE[0]}x{SHAPE[1]}"
    segrt("bench", str(fp32), "--shape", shape, "--torch", str(ckpt), "--also", str(int8), "--runs", str(a.runs),
          "--warmup", str(a.warmup), "--out-dir", a.out_dir, "--name", f"engine_bench_pspnet_r50_d8_{shape}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
