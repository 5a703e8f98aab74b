"""The training loop: SGD + poly schedule, CE with ignore_index, periodic evaluation, atomic checkpoints, resume.

Runs in one process or, under ``torchrun --nproc_per_node N -m engine.cli train CONFIG``, as N DistributedDataParallel
processes (gloo on the CPU, NCCL on CUDA; see training.distributed): ``train.batch_size`` is the global batch split
over the processes, BatchNorm is synchronised (``train.sync_bn``), evaluation is sharded with the confusion
matrices summed, and only rank 0 writes logs, plots and checkpoints (the unwrapped model's state dict).
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from training import distributed as dist
from training.batcher import Batcher, open_datasets
from training.checkpoint import load_checkpoint, save_atomic
from training.config import Config
from training.distributed import DatasetShard
from training.evaluate import evaluate_model
from training.losses import build_loss
from training.metrics import ConfusionMatrix
from training.models import build
from training.optim import build_optimizer, lr_at, set_lr
from training.runlog import RunLog


def build_model(cfg: Config, num_classes: int) -> torch.nn.Module:
    """The segmentor a config describes (without ``model.init_weights``: see :func:`load_init_weights`)."""
    m = cfg.model
    return build(m.name, num_classes=num_classes, backbone=m.backbone, backbone_kwargs=dict(m.backbone_kwargs),
                 aux=m.aux, **m.head_kwargs)


def load_init_weights(model: torch.nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Fine-tuning start: copy every tensor of the checkpoint at ``path`` whose name and shape match ``model``'s
    (``weights_only=True``). Returns the ``loaded``, ``skipped`` (shape differs, e.g. the classifier of another
    class count) and ``missing`` names; raises ``ValueError`` when nothing matches (the wrong architecture)."""
    ckpt = load_checkpoint(path) if Path(path).is_file() else None
    if ckpt is None:
        raise FileNotFoundError(f"model.init_weights: file not found: {path}")
    state = ckpt["state_dict"]
    own = model.state_dict()
    loaded = [k for k, v in state.items() if k in own and own[k].shape == v.shape]
    skipped = sorted(k for k, v in state.items() if k in own and own[k].shape != v.shape)
    missing = sorted(set(own) - set(loaded))
    if not any(state[k].is_floating_point() for k in loaded):  # BN counters alone do not count
        raise ValueError(f"model.init_weights: no tensor of {path} matches the model (first keys: "
                         f"{sorted(state)[:5]}, model: {sorted(own)[:5]})")
    model.load_state_dict({k: state[k] for k in loaded}, strict=False)
    return {"loaded": loaded, "skipped": skipped, "missing": missing}


def aux_weights(t: Any, aux: list[torch.Tensor]) -> list[float]:
    """One loss weight per auxiliary output from ``train.aux_weight`` (a number, or a list matching ``aux``)."""
    w = t.aux_weight
    if isinstance(w, int | float):
        return [float(w)] * len(aux)
    if len(w) != len(aux):
        raise ValueError(f"train.aux_weight lists {len(w)} weights but the model has {len(aux)} auxiliary outputs")
    return [float(v) for v in w]


def aux_losses(model: torch.nn.Module, n: int, default: Any) -> list[Any]:
    """The loss of each of the ``n`` auxiliary outputs: ``default``, except for auxiliary heads with a loss of their
    own (STDC's boundary head: ``head.loss(logits, labels)``). The outputs end with one per auxiliary head."""
    heads = model.auxiliary_head if isinstance(model.auxiliary_head, torch.nn.ModuleList) else [model.auxiliary_head]
    own = [getattr(h, "loss", None) for h in heads if h is not None]
    own = [None] * (n - len(own)) + own
    return [fn or default for fn in own]


def model_meta(cfg: Config, ds: Any, model: torch.nn.Module) -> dict[str, Any]:
    """What the exported model must carry so that a model file alone is enough to run it."""
    return {
        "classes": list(ds.classes), "palette": [list(c) for c in ds.palette],
        "mean": list(cfg.data.mean), "std": list(cfg.data.std),
        "input_size": list(cfg.data.input_size) if cfg.data.input_size else None,
        "output_stride": int(getattr(model, "output_stride", 8)), "align_corners": False,
        "size_divisor": int(getattr(model, "size_divisor", 1)),
        "model": f"{cfg.model.name}_{cfg.model.backbone or 'default'}", "ignore_index": ds.ignore_index,
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


class _WithAux(torch.nn.Module):
    """Routes ``forward`` to ``forward_with_aux`` so that DistributedDataParallel (which hooks ``forward``) syncs
    the gradients of the decode and auxiliary heads."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Decode logits and the auxiliary logits."""
        return self.model.forward_with_aux(x)


def _evaluate(model: torch.nn.Module, val_ds: Any, cfg: Config) -> tuple[dict[str, Any], ConfusionMatrix]:
    """Metrics on the whole validation split: each rank evaluates ``val[rank::world]`` and the confusion
    matrices are summed, so the metrics equal a single process's."""
    cm = ConfusionMatrix(val_ds.num_classes, val_ds.ignore_index)
    part = val_ds if dist.world() == 1 else DatasetShard(val_ds, dist.rank(), dist.world())
    metrics = evaluate_model(model, part, cfg.data.input_size, cfg.data.mean, cfg.data.std, confusion=cm)
    if dist.world() > 1:
        cm.mat = dist.all_reduce(cm.mat)
        metrics = cm.compute(list(val_ds.classes))
    return metrics, cm


def train(cfg: Config, resume: str | Path | None = None, quiet: bool = False,
          stop_after: int | None = None) -> dict[str, Any]:
    """Train as ``cfg`` says; returns the final evaluation metrics. Writes ``last.pt`` and ``best.pt``.

    ``resume`` is a checkpoint path or "auto" (the work dir's last.pt). ``stop_after`` ends the run after
    that iteration without finishing the schedule, as a kill would (used to test resume). Under torchrun (or
    inside a process group the caller created) every process calls this and gets the same metrics.
    """
    if cfg.train.threads:
        torch.set_num_threads(int(cfg.train.threads))
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        if cfg.train.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS; read at CUDA init
            torch.use_deterministic_algorithms(True)
        device = dist.setup(cfg.train.device)
        try:
            return _train(cfg, device, resume, quiet, stop_after)
        finally:
            dist.cleanup()
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


def _train(cfg: Config, device: torch.device, resume: str | Path | None, quiet: bool,
           stop_after: int | None) -> dict[str, Any]:
    t = cfg.train
    rank, world = dist.rank(), dist.world()
    main = rank == 0
    torch.manual_seed(t.seed)
    work = Path(cfg.work_dir)
    if main:  # rank 0 writes the config and generates the synthetic dataset before the others open it
        work.mkdir(parents=True, exist_ok=True)
        for stale in (*work.glob(".last.*.tmp.pt"), *work.glob(".best.*.tmp.pt")):
            stale.unlink(missing_ok=True)  # a checkpoint write that a kill cut short (last.pt itself is whole)
        (work / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        train_ds, val_ds = open_datasets(cfg)
    dist.barrier()
    if not main:
        train_ds, val_ds = open_datasets(cfg)
    batcher = Batcher(train_ds, cfg, t.seed, rank=rank, world=world)  # checks batch_size % world first
    model = build_model(cfg, train_ds.num_classes)
    if cfg.model.init_weights and not resume:
        init = load_init_weights(model, cfg.model.init_weights)
        if main:
            print(f"init_weights: loaded {len(init['loaded'])} tensors from {cfg.model.init_weights}; kept fresh: "
                  f"{init['missing'][:8]}{' ...' if len(init['missing']) > 8 else ''}", file=sys.stderr)
    model = model.to(device)
    if world > 1 and t.sync_bn:
        model = dist.convert_sync_batchnorm(model)
    if world > 1:
        torch.manual_seed(t.seed + rank)  # independent dropout draws per rank (weights come from rank 0 anyway)
    fmt = torch.channels_last if t.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = build_optimizer(model, t.optimizer, t.lr, t.weight_decay, t.momentum, t.head_lr_mult, t.layer_decay)
    loss_fn = build_loss(t.loss, t.ignore_index, train_ds.num_classes)
    autocast = _autocast(t.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=t.amp == "fp16")
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
    forward: Any = model.forward_with_aux
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # synced BatchNorm keeps the running statistics identical on every rank: no need to re-broadcast buffers
        # before each forward (torch >= 2.13 names this forward_sync_buffers; the buffers are still synced at init)
        sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(
            DistributedDataParallel.__init__).parameters else "broadcast_buffers"
        forward = DistributedDataParallel(_WithAux(model), device_ids=[device.index] if device.type == "cuda" else None,
                                          find_unused_parameters=False, **{sync: not t.sync_bn})

    def checkpoint(it: int, name: str, metrics: dict | None = None) -> None:
        """Collective: every rank checks the weights and contributes its RNG state; rank 0 writes."""
        state = model.state_dict()
        finite = all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())
        if not dist.all_reduce(torch.tensor(float(finite)), "min").item():
            raise FloatingPointError(f"weights became non-finite by iteration {it}; the last good state is kept "
                                     f"in {work / 'last.pt'}")
        rng = batcher.state()
        if world > 1:
            rng["torch_ranks"] = dist.all_gather_object(rng["torch"])
        if main:
            extra = {} if ema is None else {"state_dict": ema.module.state_dict(), "train_state_dict": state}
            save_atomic({"state_dict": state, **extra, "optimizer": opt.state_dict(), "iter": it,
                         "scaler": scaler.state_dict(), "config": cfg.to_dict(), "meta": meta, "best_mIoU": best,
                         "rng": rng, "metrics": metrics or {}}, work / name)
        dist.barrier()

    log = RunLog(work, resume_iter=start if resume else None) if main else None
    metrics: dict[str, Any] = dict(ckpt.get("metrics") or {}) if resume else {}  # the last evaluation's
    t0 = time.time()
    bar = tqdm(range(start, t.iters), initial=start, total=t.iters, desc="train", disable=quiet or not main,
               dynamic_ncols=True)
    model.train()
    for it in bar:
        lr = lr_at(it, t.iters, t.lr, t.schedule, t.power, t.min_lr, t.warmup_iters)
        set_lr(opt, lr)
        x, y = batcher.next()
        x, y = x.to(device, memory_format=fmt), y.to(device)
        with autocast:
            logits, aux = forward(x)
            aux_fns = aux_losses(model, len(aux), loss_fn)
            loss = loss_fn(logits.float(), y) + sum(
                w * fn(a.float(), y) for w, fn, a in zip(aux_weights(t, aux), aux_fns, aux))
        loss_value = dist.all_reduce(loss.detach(), "mean").item()  # the same on every rank
        if not math.isfinite(loss_value):
            checkpoint(it, "last.pt")  # the weights before this step, if still finite (else it raises)
            raise FloatingPointError(f"loss became {loss_value} at iteration {it}; the last good state is kept in "
                                     f"{work / 'last.pt'}")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # DDP averages the gradients: the global batch's mean loss
        if t.clip_grad:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad)
        scaler.step(opt)
        scaler.update()
        if ema is not None:
            ema.update_parameters(model)
        done = it + 1
        if log is not None and (done % t.log_interval == 0 or done == t.iters):
            bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.4f}")
            log.write(iter=done, loss=loss_value, lr=lr, time=time.time() - t0)
        timed_out = t.max_minutes is not None and time.time() - t0 > 60 * t.max_minutes
        if t.max_minutes is not None and world > 1:  # every rank must stop at the same iteration
            timed_out = bool(dist.all_reduce(torch.tensor(float(timed_out)), "max").item())
        if done % t.eval_interval == 0 or done == t.iters or timed_out:
            metrics, cm = _evaluate(model if ema is None else ema.module, val_ds, cfg)
            model.train()
            if log is not None:
                log.evaluation(done, metrics, cm.mat, list(val_ds.classes))
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
    if log is not None:
        log.close()
    dist.barrier()
    return metrics
