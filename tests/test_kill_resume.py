"""A real `segrt train` process SIGKILLed and resumed ends with exactly the weights, optimizer state and logs of an
uninterrupted run (deterministic CPU setting), and a kill during a checkpoint write never leaves last.pt broken.

Kills are aimed by polling the run's files (log.jsonl, the checkpoint's temporary file), never by fixed sleeps; where
they land is checked afterwards and an attempt that landed elsewhere (a loaded machine) is tried again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from training.checkpoint import load_checkpoint
from training.data import generate_dataset

CKPT, ITERS = 4, 16  # checkpoint interval and schedule of the reference run
START_TIMEOUT, RUN_TIMEOUT = 180.0, 600.0  # seconds; generous for a loaded 2-core machine
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # about ten training processes: a minute on 2 cores; still runs by default


def _write_config(tmp: Path, work: str, **train: Any) -> Path:
    """A tiny PSPNet run (aux head, EMA, cached samples, the uint8 augmentation pipeline) on the fixture data."""
    raw = {
        "model": {"name": "pspnet", "backbone": "resnet18",
                  "backbone_kwargs": {"stem_channels": 16, "base_channels": 16}},
        "data": {"root": str(tmp / "data"), "input_size": [128, 256], "crop_size": [96, 192], "cache": True,
                 "augment": [{"type": "RandomResize", "scale": [256, 128], "ratio_range": [0.75, 1.25]},
                             {"type": "RandomCrop", "crop_size": [96, 192], "cat_max_ratio": 0.9},
                             {"type": "RandomFlip", "prob": 0.5}, {"type": "PhotoMetricDistortion"},
                             {"type": "Pad", "size": [96, 192]}]},
        "train": {"iters": ITERS, "batch_size": 2, "lr": 0.02, "warmup_iters": 2, "ema": 0.9, "eval_interval": 6,
                  "checkpoint_interval": CKPT, "log_interval": 1, "threads": 1, "deterministic": True, **train},
        "work_dir": str(tmp / work),
    }
    path = tmp / f"{work}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _start(cfg: Path, resume: bool = False) -> subprocess.Popen:
    err = open(cfg.with_suffix(".stderr"), "ab")  # a file, not a pipe: a full pipe would stall the run
    cmd = [sys.executable, "-m", "engine.cli", "train", str(cfg), *(["--resume"] if resume else [])]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=err, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _run(cfg: Path, resume: bool = False) -> None:
    proc = _start(cfg, resume)
    try:
        rc = proc.wait(RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"{cfg.name}: training did not finish within {RUN_TIMEOUT:.0f} s")
    assert rc == 0, f"{cfg.name} exited {rc}: {cfg.with_suffix('.stderr').read_text()[-2000:]}"


def _logged_iter(work: Path) -> int:
    """The last training iteration in log.jsonl (0 before any); a line being written is skipped."""
    try:
        lines = (work / "log.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    done = 0
    for line in lines:
        try:
            done = max(done, int(json.loads(line).get("iter", 0)))
        except ValueError:
            continue
    return done


def _wait(proc: subprocess.Popen, until: Callable[[], bool], what: str) -> bool:
    """Poll ``until`` every millisecond; False if the process ended first, a test failure after START_TIMEOUT."""
    deadline = time.monotonic() + START_TIMEOUT
    while not until():
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"timed out after {START_TIMEOUT:.0f} s waiting for {what}")
        time.sleep(0.001)
    return True


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(60) == -signal.SIGKILL


def _assert_same(a: Any, b: Any, where: str) -> None:
    """Nested dicts/lists of tensors and plain values: every tensor bit-identical (torch.equal)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"  # NaN metrics compare equal


def _assert_same_run(ref_work: Path, work: Path) -> None:
    """Final checkpoint, CSV/JSON logs and TensorBoard scalars of ``work`` equal those of the reference run."""
    a, b = load_checkpoint(ref_work / "last.pt"), load_checkpoint(work / "last.pt")
    assert a["iter"] == b["iter"] == ITERS
    for key in a.keys() - {"config"}:  # the configs differ in work_dir and checkpoint_interval only
        _assert_same(a[key], b[key], key)
    best_a, best_b = load_checkpoint(ref_work / "best.pt"), load_checkpoint(work / "best.pt")
    _assert_same(best_a["state_dict"], best_b["state_dict"], "best.pt")
    assert best_a["iter"] == best_b["iter"] and best_a["best_mIoU"] == best_b["best_mIoU"]

    def losses(w: Path) -> list[tuple[int, float, float]]:
        return [(r["iter"], r["loss"], r["lr"]) for r in map(json.loads, (w / "log.jsonl").read_text().splitlines())
                if "loss" in r]

    assert losses(ref_work) == losses(work) and [i for i, _, _ in losses(work)] == list(range(1, ITERS + 1))
    from training.tblog import read_summaries

    tb_a, tb_b = read_summaries(ref_work), read_summaries(work)
    assert [s for s, _ in tb_b["train/loss"]] == list(range(1, ITERS + 1))
    assert tb_a["train/loss"] == tb_b["train/loss"] and tb_a["val/mIoU"] == tb_b["val/mIoU"]
    assert [s for s, _ in tb_b["val/mIoU"]] == [6, 12, ITERS] and [s for s, _ in tb_b["confusion"]] == [6, 12, ITERS]
    assert not list(work.glob(".*.tmp*")), "a stale temporary checkpoint file was left behind"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture data and one uninterrupted run; returns the folder holding both."""
    tmp = tmp_path_factory.mktemp("kill")
    generate_dataset(tmp / "data", n_train=6, n_val=2, height=128, width=256)
    _run(_write_config(tmp, "ref"))
    return tmp


def test_kill_between_checkpoints_then_resume_is_exact(reference: Path) -> None:
    for attempt in range(4):
        cfg = _write_config(reference, f"between{attempt}")
        work = reference / f"between{attempt}"
        proc = _start(cfg)
        if not _wait(proc, lambda w=work: _logged_iter(w) > CKPT, f"iteration {CKPT + 1} in {work}/log.jsonl"):
            pytest.fail(f"the run ended before it could be killed: {cfg.with_suffix('.stderr').read_text()[-2000:]}")
        _kill(proc)  # log.jsonl shows iteration CKPT + 1: the checkpoint at CKPT is complete
        if _logged_iter(work) < 2 * CKPT and load_checkpoint(work / "last.pt")["iter"] == CKPT:
            break  # killed strictly between the checkpoints at CKPT and 2 * CKPT
    else:
        pytest.fail(f"4 kills all landed past iteration {2 * CKPT}: the machine is too loaded to aim them")
    _run(cfg, resume=True)
    _assert_same_run(reference / "ref", work)


def test_kill_during_checkpoint_writes_leaves_last_pt_loadable(reference: Path) -> None:
    cfg = _write_config(reference, "writes", checkpoint_interval=1)
    work = reference / "writes"
    mid_write, last = 0, 0
    for _ in range(8):
        stale = set(work.glob(".last.*.tmp.pt"))  # left by the last kill; the resumed run deletes them

        def writing(stale: set[Path] = stale) -> bool:  # a later checkpoint than the first is being written
            return (work / "last.pt").exists() and bool(set(work.glob(".last.*.tmp.pt")) - stale)

        proc = _start(cfg, resume=(work / "last.pt").exists())
        if not _wait(proc, writing, f"a checkpoint write in {work}"):
            break  # the schedule finished
        _kill(proc)
        mid_write += bool(set(work.glob(".last.*.tmp.pt")) - stale)  # the kill cut a write short: its file is left
        ckpt = load_checkpoint(work / "last.pt")  # whole, wherever the kill landed
        assert last <= ckpt["iter"] <= _logged_iter(work)
        last = ckpt["iter"]
        if mid_write >= 2:
            break
    assert mid_write >= 1, "no kill landed during a checkpoint write (all came after the rename)"
    _run(cfg, resume=True)
    _assert_same_run(reference / "ref", work)


def test_resuming_a_finished_run_returns_its_last_metrics(reference: Path) -> None:
    from training.config import load_config
    from training.train import train

    shutil.copytree(reference / "ref", reference / "again")
    cfg = load_config(_write_config(reference, "again"))
    metrics = train(cfg, resume="auto", quiet=True)  # nothing left to train: the checkpoint's evaluation
    saved = load_checkpoint(reference / "again" / "last.pt")["metrics"]
    assert metrics == saved and set(metrics) >= {"mIoU", "pixAcc"}
