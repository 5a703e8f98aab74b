"""``segrt bench`` on the command line: its own options (the model options are ``segrt predict``'s) and the command."""

from __future__ import annotations

import argparse
import shlex

BENCH_DESCRIPTION = ("Per-stage (pre, infer, post) and end-to-end latency (median, p90, p99) of MODEL through "
                     "engine.Predictor, beside its bare network (backend.infer on a ready input) and optionally "
                     "PyTorch eager, interleaved in one run; writes JSON, markdown and PNG. The model options "
                     "(--backend, --device, --precision, --compile, --cuda-graphs) are those of segrt predict.")


def add_bench_arguments(b: argparse.ArgumentParser, model_help: str) -> None:
    """MODEL, ``--shape`` and the options of ``segrt bench`` besides the model options (backend, device, ...)."""
    b.add_argument("model", help=model_help)
    b.add_argument("--shape", required=True, metavar="HxW",
                   help="image size, e.g. 512x1024; the network runs at it, rounded up to the model's size divisor")
    b.add_argument("--rows", "--backends", dest="rows", default=None, metavar="ROWS",
                   help="comma-separated: segrt (MODEL and --also models through the engine, each beside its bare "
                        "network) and torch (PyTorch eager, fp32, on the engine's device; needs --torch CKPT "
                        "unless MODEL is a .pt/.pth checkpoint). Default: segrt, and torch with --torch. "
                        "--backends onnxruntime is the old spelling of segrt for ONNX models")
    b.add_argument("--torch", default=None, metavar="CKPT", help="segrt checkpoint for the PyTorch eager row")
    b.add_argument("--also", nargs="+", action="extend", default=[], metavar="MODEL",
                   help="more model files (e.g. the int8 .onnx of segrt quantize) opened with the same options "
                        "and measured in the same run")
    b.add_argument("--runs", type=int, default=50)
    b.add_argument("--warmup", type=int, default=5,
                   help="untimed runs of each row first (>= 1 with --compile or --cuda-graphs)")
    b.add_argument("--threads", type=int, default=None,
                   help="intra-op threads of ONNX Runtime and torch, for every row (default: all cores)")
    b.add_argument("--out-dir", default="benchmarks/results")
    b.add_argument("--name", default=None,
                   help="file name stem (default: engine_bench_MODEL_HxW, with the backend and options when they "
                        "are not ONNX Runtime on the CPU)")


def bench_command(a: argparse.Namespace) -> int:
    """Run ``segrt bench`` from parsed arguments: measure, print the markdown, write the report files."""
    from engine.bench import markdown, parse_shape, predictor_options, run_bench

    command = shlex.join(["segrt", "bench", a.model, "--shape", a.shape,
                          *(["--backend", a.backend] if a.backend != "auto" else []),
                          *(["--device", a.device] if a.device != "auto" else []),
                          *(["--precision", a.precision] if a.precision != "fp32" else []),
                          *(["--compile"] if a.compile else []), *(["--cuda-graphs"] if a.cuda_graphs else []),
                          *(["--rows", a.rows] if a.rows else []),
                          *(["--torch", a.torch] if a.torch else []), *(["--also", *a.also] if a.also else []),
                          "--runs", str(a.runs), "--warmup", str(a.warmup),
                          *(["--threads", str(a.threads)] if a.threads else [])])
    kw = predictor_options(a.backend, a.device, a.threads, a.precision, a.compile, a.cuda_graphs)
    result = run_bench(a.model, parse_shape(a.shape), rows=a.rows or "segrt", torch_ckpt=a.torch, also=a.also,
                       runs=a.runs, warmup=a.warmup, out_dir=a.out_dir, name=a.name, command=command, **kw)
    print(markdown(result))
    for f in result.get("files", []):
        print(f"wrote {f}")
    return 0
