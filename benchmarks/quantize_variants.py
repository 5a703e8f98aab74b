"""Sweep int8 quantization settings of one model: bare-network speed-up (interleaved with fp32, same threads) and
mIoU change on a dataset split, per variant. Writes ``benchmarks/results/quantize_variants_<model>.{json,md}``.

    .venv/bin/python benchmarks/quantize_variants.py demo_out/model.onnx --data data/synthetic
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.bench import measure  # noqa: E402
from engine.fileio import write_atomic  # noqa: E402
from engine.predictor import Predictor  # noqa: E402
from engine.quantize import _bare_step, quantize_model  # noqa: E402
from training.data import SegFolderDataset  # noqa: E402
from training.metrics import evaluate_predictor  # noqa: E402

VARIANTS: dict[str, dict] = {
    "u8/s8 minmax per-channel 64 img (default)": {},
    "s8/s8 minmax per-channel 64 img": {"activation_type": "int8"},
    "u8/s8 minmax per-tensor 64 img": {"per_channel": False},
    "u8/s8 minmax per-channel reduce_range": {"reduce_range": True},
    "u8/s8 minmax per-channel 16 img": {"num_images": 16},
    "u8/s8 minmax per-channel 256 img": {"num_images": 256},
    "u8/s8 entropy per-channel 64 img": {"method": "entropy"},
    "u8/s8 percentile per-channel 64 img": {"method": "percentile"},
}


def main() -> int:
    """Run the sweep and write the report."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model")
    ap.add_argument("--data", default="data/synthetic")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out-dir", default="benchmarks/results")
    a = ap.parse_args()
    ds = SegFolderDataset(a.data, "val")
    ref = Predictor(a.model, backend="onnxruntime", device="cpu", threads=a.threads)
    base = evaluate_predictor(ref, ds)["mIoU"]
    x = ref.preprocess(ds[0]["image"]).copy()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, kw) in enumerate(VARIANTS.items()):
            t0 = time.perf_counter()
            out = quantize_model(a.model, a.data, Path(tmp) / f"v{i}.onnx", **{"num_images": 64, **kw})
            secs = time.perf_counter() - t0
            p = Predictor(out, backend="onnxruntime", device="cpu", threads=a.threads)
            miou = evaluate_predictor(p, ds)["mIoU"]
            paced = {k: (lambda s=s: (time.sleep(0.05), s())[1]) for k, s in
                     (("fp32", _bare_step(ref, x)), ("int8", _bare_step(p, x)))}
            r = measure(paced, a.runs, 3)
            rows.append({"name": name, "options": kw, "seconds": secs, "mIoU": miou,
                         "mIoU_change_points": 100 * (miou - base),
                         "fp32_ms": r["fp32"]["end_to_end"]["median"], "int8_ms": r["int8"]["end_to_end"]["median"],
                         "speedup": r["fp32"]["end_to_end"]["median"] / r["int8"]["end_to_end"]["median"]})
            print(json.dumps(rows[-1]), flush=True)
    stem = f"quantize_variants_{Path(a.model).stem}"
    cmd = f".venv/bin/python benchmarks/quantize_variants.py {a.model} --data {a.data} --runs {a.runs}"
    result = {"model": a.model, "data": a.data, "fp32_mIoU": base, "threads": a.threads, "command": cmd,
              "variants": rows}
    md = [f"# int8 variants of {a.model}", "", "```", cmd, "```", "",
          f"fp32 mIoU {100 * base:.2f} on `{a.data}` val; bare network, {a.runs} interleaved runs, {a.threads} "
          "threads.", "", "| variant | fp32 ms | int8 ms | speed-up | mIoU change (points) | quantize s |",
          "|---|---:|---:|---:|---:|---:|"]
    md += [f"| {r['name']} | {r['fp32_ms']:.1f} | {r['int8_ms']:.1f} | {r['speedup']:.2f}x | "
           f"{r['mIoU_change_points']:+.2f} | {r['seconds']:.1f} |" for r in rows]
    write_atomic(Path(a.out_dir) / f"{stem}.json", json.dumps(result, indent=2) + "\n")
    write_atomic(Path(a.out_dir) / f"{stem}.md", "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
