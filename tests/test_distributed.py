"""Distributed training on the CPU (gloo, two processes): cross-process BatchNorm, rank-sliced batches, DDP training
that matches one process on the same data, and exact resume under DDP."""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from torch import nn

from training.batcher import Batcher, open_datasets
from training.checkpoint import load_checkpoint
from training.config import config_from_dict
from training.distributed import DatasetShard, DistBatchNorm2d, all_reduce, convert_sync_batchnorm, world
from training.train import build_model, train

ROOT = Path(__file__).resolve().parents[1]
SPLIT = (3, 1)  # per-rank batch sizes in the BatchNorm test: uneven on purpose (the counts are all-reduced too)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _init(rank: int, world_size: int, port: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)


def _bn_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(sum(SPLIT), 3, 5, 6, generator=g) * 2.0 + 1.5
    w = torch.rand(3, generator=g) + 0.5
    b = torch.randn(3, generator=g)
    gy = torch.randn(x.shape, generator=g)
    return x, w, b, gy


def _run_bn(bn: nn.BatchNorm2d, x: torch.Tensor, gy: torch.Tensor) -> dict[str, torch.Tensor]:
    """Two training steps (running statistics) and a backward of sum(y * gy) on the second, then eval."""
    x = x.clone().requires_grad_(True)
    bn(x)
    y = bn(x)
    (y * gy).sum().backward()
    bn.eval()
    with torch.no_grad():
        y_eval = bn(x)
    return {"y": y.detach(), "x_grad": x.grad, "w_grad": bn.weight.grad, "b_grad": bn.bias.grad, "y_eval": y_eval,
            "running_mean": bn.running_mean, "running_var": bn.running_var, "nbt": bn.num_batches_tracked}


def _bn_worker(rank: int, world_size: int, port: int, out: str) -> None:
    _init(rank, world_size, port)
    try:
        x, w, b, gy = _bn_case()
        lo = sum(SPLIT[:rank])
        part = slice(lo, lo + SPLIT[rank])
        bn = DistBatchNorm2d(3)
        with torch.no_grad():
            bn.weight.copy_(w)
            bn.bias.copy_(b)
        r = _run_bn(bn, x[part], gy[part])
        for k in ("w_grad", "b_grad"):  # parameter gradients are per-process partial sums (DDP would reduce them)
            dist.all_reduce(r[k])
        parts: list[Any] = [None] * world_size
        dist.all_gather_object(parts, {k: r[k] for k in ("y", "x_grad", "y_eval")})
        for k in ("y", "x_grad", "y_eval"):
            r[k] = torch.cat([p[k] for p in parts])
        if rank == 0:
            torch.save(r, out)
    finally:
        dist.destroy_process_group()


def test_dist_batchnorm_matches_batchnorm_on_the_whole_batch(tmp_path: Path) -> None:
    out = tmp_path / "bn.pt"
    mp.spawn(_bn_worker, args=(len(SPLIT), _free_port(), str(out)), nprocs=len(SPLIT))
    got = torch.load(out, weights_only=True)
    x, w, b, gy = _bn_case()
    ref = nn.BatchNorm2d(3)
    with torch.no_grad():
        ref.weight.copy_(w)
        ref.bias.copy_(b)
    want = _run_bn(ref, x, gy)
    assert set(got) == set(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-5, msg=k)


def test_convert_keeps_parameters_buffers_and_keys() -> None:
    torch.manual_seed(0)
    model = build_model(config_from_dict(_cfg(Path("unused"), "w")), num_classes=4)
    ref = copy.deepcopy(model)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    params = {id(p) for p in model.parameters()}
    conv = convert_sync_batchnorm(model)
    assert n_bn > 0 and sum(isinstance(m, DistBatchNorm2d) for m in conv.modules()) == n_bn
    assert {id(p) for p in conv.parameters()} == params  # the optimizer's parameters stay the same objects
    a, b = ref.state_dict(), conv.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 3, 32, 64)
    torch.testing.assert_close(conv(x), ref(x))  # no process group: plain BatchNorm2d (train mode)
    a, b = ref.state_dict(), conv.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float()) for k in a)  # running statistics updated alike
    bn = convert_sync_batchnorm(nn.BatchNorm2d(5))
    assert type(bn) is DistBatchNorm2d


def test_single_process_helpers() -> None:
    import numpy as np

    assert world() == 1
    a = np.arange(4)
    assert all_reduce(a) is a
    shard = DatasetShard(list(range(7)), 1, 3)
    assert [shard[i] for i in range(len(shard))] == [1, 4]
    with pytest.raises(ValueError, match="rank"):
        DatasetShard([], 3, 3)


def _cfg(tmp: Path, work: str, **train: Any) -> dict:
    """The tiny FCN; crop == image size with scale >= 1 (no padding, no ignored pixels: equal pixel counts per
    rank), no dropout and no auxiliary head (their random draws would differ between 1 and 2 processes)."""
    return {
        "model": {"name": "fcn", "backbone": "resnet18", "aux": False, "head_kwargs": {"dropout_ratio": 0.0},
                  "backbone_kwargs": {"stem_channels": 8, "base_channels": 8}},
        "data": {"root": str(tmp / "data"), "synthetic": {"n_train": 6, "n_val": 3, "height": 64, "width": 128},
                 "input_size": [64, 128], "crop_size": [64, 128], "scale_range": [1.0, 1.25]},
        "train": {"iters": 3, "batch_size": 4, "lr": 0.05, "eval_interval": 3, "checkpoint_interval": 3,
                  "log_interval": 1, **train},
        "work_dir": str(tmp / work),
    }


def test_rank_batches_are_slices_of_the_global_batch(tmp_path: Path) -> None:
    cfg = config_from_dict(_cfg(tmp_path, "w", batch_size=4))
    cfg.data.scale_range = (0.75, 1.5)
    ds, _ = open_datasets(cfg)
    one = Batcher(ds, cfg, 7)
    ranks = [Batcher(ds, cfg, 7, rank=r, world=2) for r in range(2)]
    for _ in range(3):  # 12 draws over 6 samples: crosses epoch boundaries
        x, y = one.next()
        parts = [b.next() for b in ranks]
        assert torch.equal(torch.cat([p[0] for p in parts]), x) and torch.equal(torch.cat([p[1] for p in parts]), y)
        assert ranks[0].rng.bit_generator.state == ranks[1].rng.bit_generator.state == one.rng.bit_generator.state
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        Batcher(ds, cfg, 0, rank=0, world=3)


def test_two_processes_match_one(tmp_path: Path) -> None:
    """torchrun + the CLI with gloo: final weights (and BatchNorm statistics) and metrics equal one process's."""
    single = train(config_from_dict(_cfg(tmp_path, "one")), quiet=True)
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(_cfg(tmp_path, "two")))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "engine.cli", "train", str(path)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    a = load_checkpoint(tmp_path / "one" / "last.pt")
    b = load_checkpoint(tmp_path / "two" / "last.pt")
    assert list(a["state_dict"]) == list(b["state_dict"])  # no "module." prefixes
    torch.manual_seed(0)  # as train() does before building the model
    init = build_model(config_from_dict(_cfg(tmp_path, "x")), len(a["meta"]["classes"]))
    moved = 0.0
    for k, va in a["state_dict"].items():
        vb = b["state_dict"][k]
        if va.is_floating_point():
            torch.testing.assert_close(vb, va, rtol=1e-4, atol=1e-5, msg=k)
            moved = max(moved, float((va - init.state_dict()[k]).abs().max()))
        else:
            assert torch.equal(va, vb), k
    assert moved > 1e-2  # the runs really trained, so matching weights mean matching updates
    for k in ("mIoU", "pixAcc", "mAcc"):
        assert b["metrics"][k] == pytest.approx(single[k], abs=1e-6), k
        assert a["metrics"][k] == pytest.approx(single[k], abs=1e-6), k
    assert (tmp_path / "two" / "metrics.csv").read_text().count("\n") == 3 + 1 + 1  # one writer: header, 3 + 1 rows


def _resume_worker(rank: int, world_size: int, port: int, full: dict, split: dict) -> None:
    _init(rank, world_size, port)
    torch.use_deterministic_algorithms(True)
    try:
        train(config_from_dict(full), quiet=True)
        train(config_from_dict(split), quiet=True, stop_after=2)
        train(config_from_dict(split), resume="auto", quiet=True)
    finally:
        dist.destroy_process_group()


def test_resume_under_ddp_continues_exactly(tmp_path: Path) -> None:
    """Two processes, with the auxiliary head, dropout and EMA: a stopped and resumed run equals an unbroken one."""
    over = {"aux": True, "head_kwargs": {}}
    full = _cfg(tmp_path, "full", iters=4, checkpoint_interval=2, eval_interval=100, ema=0.9)
    split = _cfg(tmp_path, "split", iters=4, checkpoint_interval=2, eval_interval=100, ema=0.9)
    full["model"].update(over)
    split["model"].update(over)
    open_datasets(config_from_dict(full))  # generate the data once, before the workers start
    mp.spawn(_resume_worker, args=(2, _free_port(), full, split), nprocs=2)
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    assert a["iter"] == b["iter"] == 4 and len(a["rng"]["torch_ranks"]) == 2
    assert any(k.startswith("auxiliary_head.") for k in a["state_dict"])
    for key in ("state_dict", "train_state_dict"):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)
