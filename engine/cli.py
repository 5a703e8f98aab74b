"""segrt: one command-line tool over training, export and the engine."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _train(a: argparse.Namespace) -> int:
    from training.config import load_config
    from training.train import train

    cfg = load_config(a.config, a.set)
    if a.work_dir:
        cfg.work_dir = a.work_dir
    metrics = train(cfg, resume=a.resume)
    print(json.dumps({k: metrics.get(k) for k in ("mIoU", "pixAcc")}))
    return 0


def _export(a: argparse.Namespace) -> int:
    from training.export import export_checkpoint

    print(export_checkpoint(a.checkpoint, a.output))
    return 0


def _eval(a: argparse.Namespace) -> int:
    import engine
    from training.data import SegFolderDataset
    from training.evaluate import evaluate_predictor

    ds = SegFolderDataset(a.data, a.split)
    if a.model.endswith((".pt", ".pth")):
        from training.evaluate import evaluate_model
        from training.export import load_trained

        model, meta = load_trained(a.model)
        metrics = evaluate_model(model, ds, meta.get("input_size"), meta["mean"], meta["std"])
    else:
        metrics = evaluate_predictor(engine.Predictor(a.model), ds)
    print(json.dumps(metrics, indent=2))
    return 0


def _video(a: argparse.Namespace) -> int:
    import engine
    from engine.video import segment_video

    stats = segment_video(engine.Predictor(a.model), a.source, a.output, alpha=a.alpha)
    print(f"{stats.count} frames")
    print(stats.table())
    return 0


def _demo(a: argparse.Namespace) -> int:
    from training.demo import run_demo

    run_demo(Path(a.out), minutes=a.minutes)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``segrt`` argument parser."""
    p = argparse.ArgumentParser(prog="segrt", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
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
    v = sub.add_parser("eval", help="evaluate a checkpoint or a model file on a dataset folder")
    v.add_argument("model")
    v.add_argument("--data", default="data/synthetic")
    v.add_argument("--split", default="val")
    v.set_defaults(func=_eval)
    vid = sub.add_parser("video", help="segment a video file and write an overlay video")
    vid.add_argument("source")
    vid.add_argument("-m", "--model", required=True)
    vid.add_argument("-o", "--output", default=None)
    vid.add_argument("--alpha", type=float, default=0.5)
    vid.set_defaults(func=_video)
    d = sub.add_parser("demo", help="synthetic data -> train -> evaluate -> export -> engine on video")
    d.add_argument("--out", default="demo_out")
    d.add_argument("--minutes", type=float, default=None, help="cap on training time")
    d.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``segrt``; user errors print one line and exit 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"segrt {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
