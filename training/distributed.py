"""Multi-process (torchrun) training helpers: process-group set-up, rank queries, collectives, cross-process BatchNorm.

One process per device, launched by ``torchrun --nproc_per_node N -m engine.cli train CONFIG``. torchrun exports
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; ``setup`` reads them and joins the
group with the gloo backend on the CPU or NCCL on CUDA (device ``cuda:LOCAL_RANK``). Without those variables (or
with ``WORLD_SIZE=1``) everything here degrades to the single-process no-op, so the same training code runs both ways.

``torch.nn.SyncBatchNorm`` only runs on CUDA ("expected input tensor to be on GPU"), so ``DistBatchNorm2d`` does the
same job on any device: batch statistics from an autograd-aware all-reduce of per-process [sum, sum of squares,
count] (``autograd_all_reduce``, like the now deprecated ``torch.distributed.nn.functional.all_reduce``).
``convert_sync_batchnorm`` picks torch's layer on CUDA and ours elsewhere.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T", np.ndarray, torch.Tensor)

_OWNS_GROUP = False  # True when setup() created the process group (and cleanup() must destroy it)
_REDUCE_OPS = {"sum": "SUM", "mean": "SUM", "max": "MAX", "min": "MIN"}


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


def is_initialized() -> bool:
    """Whether a torch.distributed process group is active."""
    return dist.is_available() and dist.is_initialized()


def world() -> int:
    """Number of training processes (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def local_rank() -> int:
    """This process's rank on its machine (torchrun's ``LOCAL_RANK``; 0 by default)."""
    return _env_int("LOCAL_RANK", 0)


def is_main() -> bool:
    """True on rank 0, the process that writes logs, checkpoints and plots."""
    return rank() == 0


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and world() > 1:
        return torch.device("cuda", local_rank() % max(torch.cuda.device_count(), 1))
    return dev


def setup(device: str = "auto") -> torch.device:
    """Join the torchrun process group if the environment asks for one; return this process's device.

    ``device`` is "auto", "cpu" or "cuda[:i]". With ``WORLD_SIZE > 1`` a CUDA device becomes ``cuda:LOCAL_RANK``
    (NCCL backend) and the CPU uses gloo. A process group created by the caller beforehand is used as it is (and
    left alone by ``cleanup``).
    """
    global _OWNS_GROUP
    n = _env_int("WORLD_SIZE", 1)
    if not is_initialized() and n > 1:
        missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
        if missing:
            raise ValueError(f"WORLD_SIZE={n} but {', '.join(missing)} not set: launch with torchrun "
                             "(torchrun --nproc_per_node N -m engine.cli train CONFIG)")
        cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if cuda:
            torch.cuda.set_device(local_rank() % max(torch.cuda.device_count(), 1))
        dist.init_process_group("nccl" if cuda else "gloo", init_method="env://")
        _OWNS_GROUP = True
    dev = _resolve_device(device)
    if dev.type == "cuda" and world() > 1:
        torch.cuda.set_device(dev)
    return dev


def cleanup() -> None:
    """Leave the process group if ``setup`` created it."""
    global _OWNS_GROUP
    if _OWNS_GROUP and is_initialized():
        dist.destroy_process_group()
    _OWNS_GROUP = False


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if world() > 1:
        dist.barrier()


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce(x: T, op: str = "sum") -> T:
    """``x`` reduced over every process ("sum", "mean", "max" or "min"): a new array/tensor of the same type,
    dtype and device (``x`` itself in a single process). Not autograd-aware; see ``DistBatchNorm2d`` for that."""
    if op not in _REDUCE_OPS:
        raise ValueError(f"all_reduce op must be one of {sorted(_REDUCE_OPS)}, got {op!r}")
    if world() == 1:
        return x
    is_np = isinstance(x, np.ndarray)
    t = torch.from_numpy(np.ascontiguousarray(x)) if is_np else x.detach()
    buf = t.to(_comm_device(), copy=True)
    dist.all_reduce(buf, op=getattr(dist.ReduceOp, _REDUCE_OPS[op]))
    if op == "mean":
        buf = buf / world() if buf.is_floating_point() else buf // world()
    if is_np:
        return buf.cpu().numpy().astype(x.dtype, copy=False)
    return buf.to(t.device)


def all_gather_object(obj: Any) -> list[Any]:
    """Every process's ``obj`` (picklable), in rank order."""
    if world() == 1:
        return [obj]
    out: list[Any] = [None] * world()
    dist.all_gather_object(out, obj)
    return out


class DatasetShard:
    """The samples ``rank, rank + world, ...`` of ``dataset`` (for sharded evaluation); other attributes
    (``classes``, ``num_classes``, ``ignore_index``, ...) are the dataset's own."""

    def __init__(self, dataset: Any, rank: int, world: int) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} out of range for world size {world}")
        self.dataset = dataset
        self.indices = range(rank, len(dataset), world)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.indices[i]]

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose backward sums the incoming gradients over processes too (the same as the
    deprecated ``torch.distributed.nn.functional.all_reduce``): d(sum_r x_r)/dx_q is 1 for every rank's loss."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        """Sum of ``x`` over processes."""
        out = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        """Sum of the output gradients over processes."""
        out = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out


def autograd_all_reduce(x: torch.Tensor) -> torch.Tensor:
    """``x`` summed over every process, differentiable: the backward all-reduces the gradient."""
    return _AllReduceSum.apply(x) if world() > 1 else x


class DistBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics cover the whole global batch, on any device (gloo on the CPU).

    A drop-in subclass: same parameters and buffers (``weight``, ``bias``, ``running_mean``, ``running_var``,
    ``num_batches_tracked``), hence the same state-dict keys. In training mode with a process group of more than
    one process, each process contributes its per-channel [count * mean, sum of squares, count] (the squares
    summed around its local mean, in float64, so no catastrophic cancellation) through
    ``autograd_all_reduce``, whose backward all-reduces the gradients: outputs, running
    statistics (unbiased variance for ``running_var``) and gradients equal those of one BatchNorm2d on the
    concatenated batch. Processes may hold different numbers of samples. In eval mode, or without a group, it is
    plain BatchNorm2d (no communication, so ranks may evaluate different numbers of images).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` [N, C, H, W] with global batch statistics (training) or running statistics (eval)."""
        if not self.training or world() == 1:
            return super().forward(x)
        self._check_input_dim(x)
        xf = x.float()
        n = x.numel() // x.shape[1]
        if n > 0:
            var, mean = torch.var_mean(xf, dim=(0, 2, 3), correction=0)
        else:
            mean = var = xf.new_zeros(x.shape[1])
        mean64, var64 = mean.double(), var.double()
        count = torch.full((1,), float(n), dtype=torch.float64, device=x.device)
        local = torch.cat([mean64 * n, (var64 + mean64 * mean64) * n, count])
        total = autograd_all_reduce(local)
        c = x.shape[1]
        big_n = float(total[-1].item())
        if big_n <= 1:
            raise ValueError(f"DistBatchNorm2d: expected more than 1 value per channel when training, got {big_n:g}")
        g_mean = total[:c] / big_n
        g_var = (total[c:2 * c] / big_n - g_mean * g_mean).clamp_min(0.0)
        self._update_running_stats(g_mean.detach(), g_var.detach(), big_n)
        scale = torch.rsqrt(g_var.float() + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        y = (xf - g_mean.float().view(1, c, 1, 1)) * scale.view(1, c, 1, 1)
        if self.bias is not None:
            y = y + self.bias.view(1, c, 1, 1)
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: float) -> None:
        if not self.track_running_stats or self.running_mean is None or self.running_var is None:
            return
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * (count / (count - 1))
        self.running_mean.mul_(1 - f).add_(mean.to(self.running_mean.dtype), alpha=f)
        self.running_var.mul_(1 - f).add_(unbiased.to(self.running_var.dtype), alpha=f)


def _to_dist_bn(bn: nn.BatchNorm2d) -> DistBatchNorm2d:
    new = DistBatchNorm2d(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
                          device=bn.running_mean.device if bn.running_mean is not None else None)
    if bn.affine:
        new.weight, new.bias = bn.weight, bn.bias  # the same Parameter objects (as torch's convert does)
    new.running_mean, new.running_var = bn.running_mean, bn.running_var
    new.num_batches_tracked = bn.num_batches_tracked
    new.train(bn.training)
    return new


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` by a cross-process one, keeping its parameters and buffers:
    torch's ``nn.SyncBatchNorm`` when the module lives on CUDA, ``DistBatchNorm2d`` otherwise. Returns the module
    (a new one if ``module`` itself is a BatchNorm2d)."""
    if any(p.is_cuda for p in module.parameters()) or any(b.is_cuda for b in module.buffers()):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, DistBatchNorm2d):
        return _to_dist_bn(module)
    for name, child in module.named_children():
        new = convert_sync_batchnorm(child)
        if new is not child:
            setattr(module, name, new)
    return module

