"""segrt: one command-line tool over training, export and the engine.

Failures are one line on stderr, ``segrt <command>: error: <message>``, with exit status 2 (130 after Ctrl-C);
set ``SEGRT_DEBUG=1`` to get the exception with its traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from engine.backends import BACKENDS
from engine.bench_cli import BENCH_DESCRIPTION, add_bench_arguments, bench_command
from engine.build import add_build_arguments, run_build
from engine.cli_video import video_command


def _models(a: argparse.Namespace) -> int:
    from engine.bench import parse_shape
    from training.models import list_models, model_info
    from training.models.summary import measure, render_markdown

    names = a.names or list_models()
    unknown = sorted(set(names) - set(list_models()))
    if unknown:
        raise SystemExit(f"segrt models: unknown model(s) {unknown}; registered: {list_models()}")
    h, w = parse_shape(a.shape)
    rows = []
    for name in names:
        row = measure(name, (h, w), a.num_classes, **({"backbone": a.backbone} if a.backbone else {}))
        row["capabilities"] = model_info(name)["capabilities"]
        rows.append(row)
    if a.json:
        print(json.dumps(rows, indent=1))
    else:
        print(render_markdown(rows, f"Models at {h}x{w}, {a.num_classes} classes"), end="")
    return 0


def _convert(a: argparse.Namespace) -> int:
    from training.convert import convert

    _, report = convert(a.source, a.checkpoint, config=a.config, arch=a.arch, output=a.output)
    keys = ("format", "model", "arch", "architecture", "num_classes", "params", "output")
    print(json.dumps({k: report[k] for k in keys if k in report}, default=str))
    return 0


def _train(a: argparse.Namespace) -> int:
    from training.config import load_config
    from training.train import train

    cfg = load_config(a.config, a.set)
    if a.work_dir:
        cfg.work_dir = a.work_dir
    metrics = train(cfg, resume=a.resume)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one line, not one per process
        print(json.dumps({k: metrics.get(k) for k in ("mIoU", "pixAcc")}))
    return 0


def _export(a: argparse.Namespace) -> int:
    from training.export import export_checkpoint

    print(export_checkpoint(a.checkpoint, a.output))
    return 0


def _eval(a: argparse.Namespace) -> int:
    from engine.bench import parse_shape
    from training.eval_files import evaluate_file  # numpy + the engine: model files are evaluated without torch

    scales = tuple(float(v) for v in a.scales.split(",")) if a.scales else (1.0,)
    kw = {"mode": a.mode, "crop_size": parse_shape(a.crop) if a.crop else None,
          "stride": parse_shape(a.stride) if a.stride else None, "scales": scales, "flip": a.flip,
          "input_size": parse_shape(a.input_size) if a.input_size else None}
    metrics = evaluate_file(a.model, a.data, dataset=a.dataset, split=a.split, threads=a.threads, device=a.device,
                            limit=a.limit, **kw)
    text = json.dumps(metrics, indent=2)
    if a.output:
        from engine.fileio import write_atomic

        write_atomic(a.output, text + "\n")
    print(text)
    return 0


def _predictor(a: argparse.Namespace) -> object:
    """Build an engine.Predictor from the shared model options."""
    import engine
    from engine.bench import parse_shape, predictor_options

    # backend, device, threads and the torch-only options (only when asked for, so that other model files reject
    # them with a clear error); segrt bench passes them the same way
    kw: dict = predictor_options(getattr(a, "backend", "auto"), a.device, a.threads, getattr(a, "precision", "fp32"),
                                 getattr(a, "compile", False), getattr(a, "cuda_graphs", False))
    kw["palette"] = a.palette
    if getattr(a, "input_size", None):
        kw["input_size"] = parse_shape(a.input_size)
    if getattr(a, "mode", "whole") != "whole":
        kw["mode"] = a.mode
        kw["crop_size"] = parse_shape(a.crop) if a.crop else None
        kw["stride"] = parse_shape(a.stride) if a.stride else None
    if getattr(a, "scales", None):
        try:
            kw["scales"] = tuple(float(v) for v in a.scales.split(","))
        except ValueError:
            raise ValueError(f"--scales must be comma-separated numbers, got {a.scales!r}") from None
    if getattr(a, "flip", False):
        kw["flip"] = True
    if getattr(a, "batch", None):
        kw["batch_size"] = a.batch
    if getattr(a, "spin", None) is not None:
        kw["spin"] = a.spin
    return engine.Predictor(a.model, **kw)


def _predict(a: argparse.Namespace) -> int:
    from engine.predict import predict_files

    report = predict_files(_predictor(a), a.inputs, a.output, overlay=a.overlay, overlay_format=a.overlay_format,
                           scores=a.scores, batch=a.batch, alpha=a.alpha, progress=not a.quiet)
    print(f"{len(report.written)} written to {a.output}, {len(report.failed)} failed")
    for name, why in report.failed:
        print(f"  skipped {name}: {why}", file=sys.stderr)
    if not report.written and not report.failed:
        print("segrt predict: error: no input images found", file=sys.stderr)
        return 2
    return 0 if report.ok else 1


def _demo(a: argparse.Namespace) -> int:
    from training.demo import run_demo

    run_demo(Path(a.out), minutes=a.minutes)
    return 0


def _report_data(report: str, calib: str, split: str) -> str | None:
    """The dataset root ``segrt quantize`` reports on: ``--report DATA``; by default (``auto``) the calibration
    folder when it is a segrt dataset root with that split (calibration reads its train images only); ``none``."""
    if report == "none":
        return None
    if report != "auto":
        return report
    from engine.quantize import is_dataset_root

    return calib if is_dataset_root(calib, split) else None


def _quantize(a: argparse.Namespace) -> int:
    from engine.quantize import compare, quantize_model, write_report

    out = quantize_model(a.model, a.calib, a.output, num_images=a.num_images or None, method=a.method,
                         per_channel=a.per_channel, activation_type=a.activation_type, weight_type=a.weight_type,
                         reduce_range=a.reduce_range, nodes_to_exclude=a.exclude)
    print(f"wrote {out}")
    report = _report_data(a.report, a.calib, a.split)
    if report:
        print(f"comparing fp32 and int8 on {report} split {a.split!r} (--report none to skip)")
        a.report = report
        result = compare(a.model, out, a.report, split=a.split, threads=a.threads, runs=a.runs, warmup=a.warmup)
        name = a.name or f"quantize_{Path(a.model).stem}"
        command = (f"segrt quantize {a.model} --calib {a.calib} -o {a.output} --num-images {a.num_images} "
                   f"--method {a.method} --{'' if a.per_channel else 'no-'}per-channel --activation-type "
                   f"{a.activation_type} --weight-type {a.weight_type}{' --reduce-range' if a.reduce_range else ''}"
                   f"{' --exclude ' + ' '.join(a.exclude) if a.exclude else ''} --report {a.report} --split {a.split}"
                   f"{f' --threads {a.threads}' if a.threads else ''} --runs {a.runs} --warmup {a.warmup}")
        from engine.quantize import markdown

        print(markdown(result, command))
        for f in write_report(result, a.out_dir, name, command):
            print(f"wrote {f}")
    return 0


MODEL_HELP = ("model file: .onnx (ONNX Runtime), .plan/.engine (TensorRT), .pt/.pth checkpoint or .pt2 program "
              "(PyTorch)")


def _runtime_args(p: argparse.ArgumentParser) -> None:
    """The options that choose how engine.Predictor runs a model file (predict, video, bench)."""
    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="runtime (default: from the model file's suffix)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"),
                   help="torch models (.pt/.pth/.pt2) only: autocast precision; fp16 needs a CUDA device. An "
                        ".onnx or .plan model's precision is fixed when it is exported or built")
    p.add_argument("--compile", action="store_true", help="torch models (.pt/.pth/.pt2) only: torch.compile")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="torch models (.pt/.pth/.pt2) on CUDA only: capture and replay a CUDA graph per shape")
    p.add_argument("--device", default="auto",
                   help="auto, cpu, cuda or cuda:N (a .plan runs on CUDA only; .onnx on CUDA needs onnxruntime-gpu)")


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", required=True, help=MODEL_HELP)
    _runtime_args(p)
    p.add_argument("--palette", default=None, help="voc, cityscapes, ade20k or camvid (default: the model's)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--input-size", default=None, metavar="HxW", help="network input size (default: the model's)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The ``segrt`` argument parser."""
    p = argparse.ArgumentParser(prog="segrt", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    mo = sub.add_parser("models", help="list every registered model with its parameters and GFLOPs")
    mo.add_argument("names", nargs="*", help="models to show (default: all)")
    mo.add_argument("--shape", default="512x1024", help="input size HxW for the FLOP count (default 512x1024)")
    mo.add_argument("--num-classes", type=int, default=19)
    mo.add_argument("--backbone", default=None, help="build on this backbone instead of each model's default")
    mo.add_argument("--json", action="store_true", help="print JSON rows instead of a markdown table")
    mo.set_defaults(func=_models)
    cv = sub.add_parser("convert", help="import an MMSegmentation, torchvision or Hugging Face checkpoint")
    cv.add_argument("source", choices=["mmseg", "torchvision", "hf"])
    cv.add_argument("checkpoint", help="the checkpoint file (a Hugging Face folder for hf)")
    cv.add_argument("--config", default=None, help="MMSeg config .py (mmseg) or config.json (hf, with a file)")
    cv.add_argument("--arch", default=None, help="torchvision builder, e.g. deeplabv3_resnet50 (torchvision)")
    cv.add_argument("-o", "--output", required=True, help="segrt checkpoint to write (.pt)")
    cv.set_defaults(func=_convert)
    t = sub.add_parser("train", help="train a model from a YAML config")
    t.add_argument("config")
    t.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys")
    t.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="resume from CKPT (default: the work dir's last.pt)")
    t.add_argument("--work-dir", default=None)
    t.set_defaults(func=_train)
    e = sub.add_parser("export", help="export a checkpoint to ONNX (with metadata)")
    e.add_argument("checkpoint")
    e.add_argument("-o", "--output", required=True)
    e.set_defaults(func=_export)
    v = sub.add_parser("eval", help="metrics of a checkpoint or any model file on a dataset (whole/slide/TTA)")
    v.add_argument("model", help=".pt/.pt2 checkpoint or program, .onnx (fp32 or int8), .plan")
    v.add_argument("--data", default="data/synthetic", help="dataset root (default: the demo data)")
    v.add_argument("--dataset", default="folder",
                   help="on-disk format: folder, voc, voc_aug, cityscapes, camvid, ade20k, stanford_background, sbd")
    v.add_argument("--split", default="val")
    v.add_argument("--mode", choices=["whole", "slide"], default="whole")
    v.add_argument("--crop", default=None, metavar="HxW", help="sliding-window crop (mode slide)")
    v.add_argument("--stride", default=None, metavar="HxW", help="sliding-window stride (default 2/3 of the crop)")
    v.add_argument("--scales", default=None, help="multi-scale test, e.g. 0.5,0.75,1.0,1.25,1.5,1.75")
    v.add_argument("--flip", action="store_true", help="average with the horizontally flipped image")
    v.add_argument("--input-size", default=None, metavar="HxW", help="override the model's inference size")
    v.add_argument("--threads", type=int, default=None)
    v.add_argument("--device", default="auto")
    v.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples")
    v.add_argument("-o", "--output", default=None, help="also write the metrics JSON here")
    v.set_defaults(func=_eval)
    pr = sub.add_parser("predict", help="segment images, folders or globs into label PNGs (+ overlays, scores)")
    pr.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    _model_args(pr)
    pr.add_argument("-o", "--output", required=True,
                    help="output folder: OUT/REL.png mirrors each input folder (REL: the path inside it)")
    pr.add_argument("--overlay", action="store_true", help="also write OUT/overlays/REL.jpg")
    pr.add_argument("--overlay-format", default="jpg", choices=("jpg", "png"))
    pr.add_argument("--scores", action="store_true", help="also write OUT/scores/REL.npy (winning logit, float16)")
    pr.add_argument("--batch", type=int, default=1, help="images per inference batch (same sizes batch)")
    pr.add_argument("--mode", default="whole", choices=("whole", "slide"))
    pr.add_argument("--crop", default=None, metavar="HxW", help="slide window size (default: model input size)")
    pr.add_argument("--stride", default=None, metavar="HxW", help="slide stride (default: 2/3 of the crop)")
    pr.add_argument("--scales", default=None, help="multi-scale test, e.g. 0.75,1.0,1.25")
    pr.add_argument("--flip", action="store_true", help="average with the horizontally flipped image")
    pr.set_defaults(func=_predict)
    vid = sub.add_parser("video", help="segment a video file, camera or stream with a threaded pipeline")
    vid.add_argument("source", help="video file, camera index (0, 1, ...) or stream URL (rtsp://...)")
    _model_args(vid)
    vid.add_argument("-o", "--output", default=None, help="overlay video to write (e.g. out.mp4)")
    vid.add_argument("--show", action="store_true", help="show the overlay in a window")
    vid.add_argument("--stats", default=None, help="latency JSON (default: OUTPUT.stats.json)")
    vid.add_argument("--queue", type=int, default=2, help="queue length between stages")
    vid.add_argument("--max-frames", type=int, default=None)
    vid.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                     help="drop stale frames (default: on for cameras and rtsp/rtmp/udp streams)")
    vid.add_argument("--spin", action=argparse.BooleanOptionalAction, default=False,
                     help="let ONNX Runtime's idle threads spin-wait (default: off, so that the other stages get "
                          "the cores; see benchmarks/results/engine_pipeline_*.md)")
    vid.set_defaults(func=video_command, batch=None)
    b = sub.add_parser("bench", help="latency per stage and end to end, beside the bare network and torch eager",
                       description=BENCH_DESCRIPTION)
    add_bench_arguments(b, MODEL_HELP)
    _runtime_args(b)
    b.set_defaults(func=bench_command)
    bl = sub.add_parser("build", help="build a TensorRT engine (.plan) from an ONNX model (needs TensorRT)")
    add_build_arguments(bl)
    bl.set_defaults(func=run_build)
    q = sub.add_parser("quantize", help="int8 static quantization of an ONNX model for ONNX Runtime (QDQ)")
    q.add_argument("model", help="fp32 .onnx model with segrt metadata")
    q.add_argument("--calib", required=True, metavar="DIR", help="image folder or dataset root (uses images/train)")
    q.add_argument("-o", "--output", required=True, help="int8 .onnx to write")
    q.add_argument("--num-images", type=int, default=64, help="calibration images (0: all)")
    q.add_argument("--method", default="minmax", choices=("minmax", "entropy", "percentile"))
    q.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True)
    q.add_argument("--activation-type", default="uint8", choices=("uint8", "int8"))
    q.add_argument("--weight-type", default="int8", choices=("uint8", "int8"))
    q.add_argument("--reduce-range", action="store_true", help="7-bit weights (for CPUs without VNNI)")
    q.add_argument("--exclude", nargs="*", default=[], metavar="NODE", help="node names kept in float")
    q.add_argument("--report", default="auto", metavar="DATA",
                   help="compare fp32 vs int8 (speed, mIoU) on this dataset root's --split; default auto: on --calib "
                        "when it is a dataset root with that split; none: no report")
    q.add_argument("--split", default="val")
    q.add_argument("--threads", type=int, default=None)
    q.add_argument("--runs", type=int, default=30)
    q.add_argument("--warmup", type=int, default=5)
    q.add_argument("--out-dir", default="benchmarks/results")
    q.add_argument("--name", default=None, help="report file stem (default: quantize_MODEL)")
    q.set_defaults(func=_quantize)
    d = sub.add_parser("demo", help="synthetic data -> train -> evaluate -> export -> engine on video")
    d.add_argument("--out", default="demo_out")
    d.add_argument("--minutes", type=float, default=None, help="cap on training time")
    d.set_defaults(func=_demo)
    return p


# Failures a user can cause and fix (a missing or corrupt file, a bad option, a runtime or device that is not there,
# a checkpoint that does not fit its model): their message is the report. Others also get their type's name.
USER_ERRORS = (OSError, ValueError, RuntimeError, ImportError)  # MissingDependencyError is a RuntimeError
MAX_MESSAGE = 800  # characters of an error message shown (torch's state-dict errors list every tensor)


def _one_line(e: BaseException) -> str:
    """An exception's message on one line (its lines joined with "; "), cut at MAX_MESSAGE characters."""
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    text = "; ".join(line.strip() for line in text.splitlines() if line.strip()) or type(e).__name__
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE - 1] + "… (cut; SEGRT_DEBUG=1 shows all of it)"
    return text


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``segrt``: a failure prints ``segrt <command>: error: <message>`` (one line) on stderr and
    returns 2, Ctrl-C returns 130; with the environment variable ``SEGRT_DEBUG=1`` the exception is re-raised."""
    args = build_parser().parse_args(argv)
    debug = os.environ.get("SEGRT_DEBUG", "").strip() not in ("", "0")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"segrt {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            raise
        msg = _one_line(e)
        if not isinstance(e, USER_ERRORS):
            msg = f"{type(e).__name__}: {msg} (unexpected; SEGRT_DEBUG=1 shows the traceback)"
        print(f"segrt {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
