"""The training loop: SGD + poly schedule, CE with ignore_index, periodic evaluation, atomic checkpoints, resume."""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from training.batcher import Batcher, open_datasets
from training.checkpoint import load_checkpoint, save_atomic
from training.config import Config
from training.evaluate import evaluate_model
from training.losses import build_loss
from training.metrics import ConfusionMatrix
from training.models import build
from training.optim import build_optimizer, lr_at, set_lr
from training.runlog import RunLog


def build_model(cfg: Config, num_classes: int) -> torch.nn.Module:
    """The segmentor a config describes."""
    m = cfg.model
    return build(m.name, num_classes=num_classes, backbone=m.backbone, backbone_kwargs=dict(m.backbone_kwargs),
                 aux=m.aux, **m.head_kwargs)


def model_meta(cfg: Config, ds: Any, model: torch.nn.Module) -> dict[str, Any]:
    """What the exported model must carry so that a model file alone is enough to run it."""
    return {
        "classes": list(ds.classes), "palette": [list(c) for c in ds.palette],
        "mean": list(cfg.data.mean), "std": list(cfg.data.std),
        "input_size": list(cfg.data.input_size) if cfg.data.input_size else None,
        "output_stride": int(getattr(model, "output_stride", 8)), "align_corners": False,
        "model": f"{cfg.model.name}_{cfg.model.backbone}", "ignore_index": ds.ignore_index,
    }


def _ema_model(model: torch.nn.Module, decay: float | None) -> Any:
    """An exponential moving average of ``model``'s weights (and buffers), or None when ``decay`` is None."""
    if decay is None:
        return None
    if not 0.0 < decay < 1.0:
        raise ValueError(f"train.ema must be a decay in (0, 1), got {decay!r}")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _autocast(amp: str | None, device: torch.device) -> Any:
    """The autocast context for ``amp`` (None, "bf16", or "fp16" on CUDA)."""
    if amp is None:
        return contextlib.nullcontext()
    if amp not in ("bf16", "fp16"):
        raise ValueError(f"train.amp must be bf16, fp16 or null, got {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("train.amp=fp16 needs a CUDA device; use bf16 on the CPU")
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def train(cfg: Config, resume: str | Path | None = None, quiet: bool = False,
          stop_after: int | None = None) -> dict[str, Any]:
    """Train as ``cfg`` says; returns the final evaluation metrics. Writes ``last.pt`` and ``best.pt``.

    ``resume`` is a checkpoint path or "auto" (the work dir's last.pt). ``stop_after`` ends the run after
    that iteration without finishing the schedule, as a kill would (used to test resume).
    """
    t = cfg.train
    if t.threads:
        torch.set_num_threads(int(t.threads))
    torch.manual_seed(t.seed)
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    train_ds, val_ds = open_datasets(cfg)
    device = torch.device(t.device if t.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    model = build_model(cfg, train_ds.num_classes).to(device)
    fmt = torch.channels_last if t.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = build_optimizer(model, t.optimizer, t.lr, t.weight_decay, t.momentum, t.head_lr_mult)
    loss_fn = build_loss(t.loss, t.ignore_index, train_ds.num_classes)
    autocast = _autocast(t.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=t.amp == "fp16")
    batcher = Batcher(train_ds, cfg, t.seed)
    meta = model_meta(cfg, train_ds, model)
    ema = _ema_model(model, t.ema)
    start, best = 0, -1.0
    if resume:
        ckpt = load_checkpoint(work / "last.pt" if str(resume) == "auto" else resume)
        model.load_state_dict(ckpt["train_state_dict"] if "train_state_dict" in ckpt else ckpt["state_dict"])
        if ema is not None:
            ema.module.load_state_dict(ckpt["state_dict"])
            ema.n_averaged.fill_(int(ckpt["iter"]))
        opt.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt.get("scaler") or {})
        start, best = int(ckpt["iter"]), float(ckpt.get("best_mIoU", -1.0))
        batcher.load_state(ckpt["rng"])

    def checkpoint(it: int, name: str, metrics: dict | None = None) -> None:
        state = model.state_dict()
        if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
            raise FloatingPointError(f"weights became non-finite by iteration {it}; the last good state is kept "
                                     f"in {work / 'last.pt'}")
        extra = {} if ema is None else {"state_dict": ema.module.state_dict(), "train_state_dict": state}
        save_atomic({"state_dict": state, **extra, "optimizer": opt.state_dict(), "iter": it,
                     "scaler": scaler.state_dict(), "config": cfg.to_dict(), "meta": meta, "best_mIoU": best,
                     "rng": batcher.state(), "metrics": metrics or {}}, work / name)

    log = RunLog(work)
    metrics: dict[str, Any] = {}
    t0 = time.time()
    bar = tqdm(range(start, t.iters), initial=start, total=t.iters, desc="train", disable=quiet, dynamic_ncols=True)
    model.train()
    for it in bar:
        lr = lr_at(it, t.iters, t.lr, t.schedule, t.power, t.min_lr, t.warmup_iters)
        set_lr(opt, lr)
        x, y = batcher.next()
        x, y = x.to(device, memory_format=fmt), y.to(device)
        with autocast:
            logits, aux = model.forward_with_aux(x)
            loss = loss_fn(logits.float(), y) + sum(t.aux_weight * loss_fn(a.float(), y) for a in aux)
        if not math.isfinite(loss.item()):
            checkpoint(it, "last.pt")  # the weights before this step, if still finite (else it raises)
            raise FloatingPointError(f"loss became {loss.item()} at iteration {it}; the last good state is kept in "
                                     f"{work / 'last.pt'}")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if t.clip_grad:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad)
        scaler.step(opt)
        scaler.update()
        if ema is not None:
            ema.update_parameters(model)
        done = it + 1
        if done % t.log_interval == 0 or done == t.iters:
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.4f}")
            log.write(iter=done, loss=loss.item(), lr=lr, time=time.time() - t0)
        timed_out = t.max_minutes is not None and time.time() - t0 > 60 * t.max_minutes
        if done % t.eval_interval == 0 or done == t.iters or timed_out:
            cm = ConfusionMatrix(val_ds.num_classes, val_ds.ignore_index)
            metrics = evaluate_model(model if ema is None else ema.module, val_ds, cfg.data.input_size,
                                     cfg.data.mean, cfg.data.std, confusion=cm)
            model.train()
            log.write(iter=done, **{k: metrics[k] for k in ("mIoU", "pixAcc", "mAcc")})
            log.plot(cm.mat, list(val_ds.classes))
            bar.write(f"iter {done}: mIoU {metrics['mIoU']:.4f} pixAcc {metrics['pixAcc']:.4f}")
            if metrics["mIoU"] > best:
                best = metrics["mIoU"]
                checkpoint(done, "best.pt", metrics)
        if done % t.checkpoint_interval == 0 or done == t.iters or timed_out:
            checkpoint(done, "last.pt", metrics)
        if stop_after is not None and done >= stop_after:
            break
        if timed_out:
            bar.write(f"stopping at iteration {done}: max_minutes={t.max_minutes} reached")
            break
    bar.close()
    log.close()
    return metrics
