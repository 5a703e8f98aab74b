"""The engine's GPU targets: the torch backend with CUDA graphs + fp16, measured by ``segrt bench`` on one GPU.

Two models, as the engine issue names them: BiSeNetV1 (ResNet-18) at 1024x2048 and PSPNet-R50-D8 at 512x1024, both
19 classes and built with their own initialisation (no pretrained weights can be downloaded; latency does not
depend on the weight values). Each is written as a segrt checkpoint and a ``torch.export`` program (``.pt2``),
then ``segrt bench MODEL.pt2 --device cuda --precision fp16 --cuda-graphs --torch MODEL.pt`` measures the engine
end to end beside its bare network and PyTorch eager fp32 on the same GPU, in one interleaved run.

Run from the repository root of a CUDA build (``pip install --no-build-isolation --no-deps -e .``):
    python benchmarks/gpu_engine.py [--work DIR] [--runs N] [--quick]
Without a usable GPU it prints the reason and exits 0 without writing anything. Targets (>= 500 FPS, <= 3 ms on
an H100) are reported beside the figures, never turned into a failing exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(Path(__file__).resolve().parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from model_files import segrt, write_checkpoint  # noqa: E402

# (name, registry model, backbone, HxW)
MODELS = (("bisenetv1_r18", "bisenetv1", "resnet18", (1024, 2048)),
          ("pspnet_r50_d8", "pspnet", "resnet50-v1c", (512, 1024)))
TARGET_FPS, TARGET_MS = 500.0, 3.0


def gpu_problem() -> str | None:
    """Why this machine cannot run the GPU benchmark, or None when it can."""
    try:
        import torch
    except ImportError as e:
        return f"torch is not installed ({e})"
    if not torch.cuda.is_available():
        return "torch sees no CUDA GPU"
    return None


def prepare(work: Path, name: str, model: str, backbone: str, shape: tuple[int, int],
            backbone_kwargs: dict | None = None) -> tuple[Path, Path]:
    """Write ``<name>.pt`` (segrt checkpoint) and ``<name>.pt2`` (exported program) under ``work``, once."""
    from training.export_program import export_program

    work.mkdir(parents=True, exist_ok=True)
    ckpt, program = work / f"{name}.pt", work / f"{name}.pt2"
    if not ckpt.exists():
        write_checkpoint(ckpt, model, backbone, shape, backbone_kwargs)
    if not program.exists() or program.stat().st_mtime < ckpt.stat().st_mtime:
        export_program(ckpt, program)
    return ckpt, program


def bench_args(ckpt: Path, program: Path, shape: tuple[int, int], runs: int, warmup: int, out_dir: str,
               name: str) -> list[str]:
    """The ``segrt bench`` arguments of one model."""
    return [str(program), "--shape", f"{shape[0]}x{shape[1]}", "--device", "cuda", "--precision", "fp16",
            "--cuda-graphs", "--torch", str(ckpt), "--runs", str(runs), "--warmup", str(warmup),
            "--out-dir", out_dir, "--name", name]


def summary(result: dict) -> list[str]:
    """Lines: the median ms and FPS of every row (end to end; the network alone for bare rows), against the
    targets."""
    lines = []
    for row, stages in result.get("results_ms", {}).items():
        ms = stages.get("end_to_end", {}).get("median")
        what = "the network alone" if row.startswith("bare ") else "end to end"
        if ms:
            lines.append(f"{row}: {ms:.3f} ms median, {what} = {1e3 / ms:.0f} FPS "
                         f"(targets: <= {TARGET_MS} ms, >= {TARGET_FPS:.0f} FPS)")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("work_dirs/gpu_engine"), help="model files go here")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="30 runs, 5 warm-up")
    ap.add_argument("--out-dir", default="benchmarks/results")
    a = ap.parse_args(argv)
    problem = gpu_problem()
    if problem:
        print(f"gpu_engine: nothing to do: {problem}")
        return 0
    runs, warmup = (30, 5) if a.quick else (a.runs, a.warmup)
    for name, model, backbone, shape in MODELS:
        ckpt, program = prepare(a.work, name, model, backbone, shape)
        stem = f"gpu_engine_{name}_{shape[0]}x{shape[1]}"
        segrt("bench", *bench_args(ckpt, program, shape, runs, warmup, a.out_dir, stem))
        result = json.loads((Path(a.out_dir) / f"{stem}.json").read_text())
        print("\n".join(summary(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
