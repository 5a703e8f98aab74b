"""Run logs: TensorBoard event files written, read back, purged on resume, optional; JSON/CSV logs after kills."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from training.config import config_from_dict
from training.train import train


def _cfg(tmp: Path, **train: object) -> dict:
    return {
        "model": {"name": "fcn", "backbone": "resnet18", "backbone_kwargs": {"stem_channels": 8, "base_channels": 8}},
        "data": {"root": str(tmp / "data"), "synthetic": {"n_train": 4, "n_val": 2, "height": 64, "width": 128},
                 "input_size": [64, 128], "crop_size": [64, 128]},
        "train": {"iters": 4, "batch_size": 2, "eval_interval": 2, "checkpoint_interval": 2, "log_interval": 1,
                  **train},
        "work_dir": str(tmp / "work"),
    }


def test_run_writes_events_with_loss_lr_metrics_and_images(tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX")
    from training.tblog import read_summaries

    train(config_from_dict(_cfg(tmp_path)), quiet=True)
    work = tmp_path / "work"
    assert len(list(work.glob("events.out.tfevents.*"))) == 1
    tb = read_summaries(work)
    logged = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    losses = [(r["iter"], r["loss"]) for r in logged if "loss" in r]
    assert [s for s, _ in tb["train/loss"]] == [i for i, _ in losses] == [1, 2, 3, 4]
    assert [v for _, v in tb["train/loss"]] == [float(np.float32(v)) for _, v in losses]  # float32 in the proto
    assert [s for s, _ in tb["train/lr"]] == [1, 2, 3, 4]
    for tag in ("val/mIoU", "val/pixAcc", "val/mAcc", "val/mDice", "val/IoU/road", "confusion", "curves"):
        assert [s for s, _ in tb[tag]] == [2, 4], tag
    assert tb["confusion"][-1][1] == (work / "confusion.png").read_bytes()


def test_resume_purges_what_a_killed_run_logged_after_its_checkpoint(tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX")
    from training.runlog import RunLog
    from training.tblog import read_summaries

    log = RunLog(tmp_path)
    for it in range(1, 6):  # a run that checkpointed at 3 and was killed after logging 5
        log.write(iter=it, loss=float(it), lr=0.1, time=0.0)
    log._jsonl.write('{"iter": 6, "lo')  # a record cut short by the kill
    log.close()
    resumed = RunLog(tmp_path, resume_iter=3)
    for it in range(4, 7):
        resumed.write(iter=it, loss=10.0 * it, lr=0.1, time=0.0)
    resumed.close()
    want = [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0), (5, 50.0), (6, 60.0)]
    assert read_summaries(tmp_path)["train/loss"] == want
    assert [(r["iter"], r["loss"]) for r in resumed.records()] == want
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("iter,loss") and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4", "5", "6"]


def test_truncated_and_corrupt_event_files(tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX")
    from training.tblog import EventWriter, read_summaries

    w = EventWriter(tmp_path)
    w.scalars(1, {"a": 1.0})
    w.scalars(2, {"a": 2.0})
    w.close()
    path = next(tmp_path.glob("events.out.tfevents.*"))
    data = path.read_bytes()
    path.write_bytes(data[:-3])  # a kill during the last write
    assert read_summaries(tmp_path)["a"] == [(1, 1.0)]
    path.write_bytes(data[:20] + bytes([data[20] ^ 0xFF]) + data[21:])
    with pytest.raises(ValueError, match="corrupt record"):
        read_summaries(tmp_path)


def test_training_runs_without_tensorboardx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import tensorboardX raises ImportError
    monkeypatch.setitem(sys.modules, "tensorboardX.event_file_writer", None)
    with caplog.at_level(logging.WARNING, logger="training.tblog"):
        metrics = train(config_from_dict(_cfg(tmp_path, iters=2)), quiet=True)
    assert 0.0 <= metrics["mIoU"] <= 1.0
    warnings = [r.getMessage() for r in caplog.records if r.name == "training.tblog"]
    assert len(warnings) == 1 and "TensorBoard logging off" in warnings[0] and "\n" not in warnings[0]
    assert not list((tmp_path / "work").glob("events.out.tfevents.*"))
    assert (tmp_path / "work" / "metrics.csv").is_file()


def test_a_line_cut_short_by_a_kill_is_ended_before_new_records(tmp_path: Path) -> None:
    from training.runlog import RunLog

    (tmp_path / "log.jsonl").write_text('{"iter": 1, "loss": 1.0}\n{"iter": 2, "lo')
    log = RunLog(tmp_path, tensorboard=False)
    log.write(iter=3, loss=3.0, lr=0.1, time=0.0)
    log.close()
    assert [r["iter"] for r in log.records()] == [1, 3]
    assert not list(tmp_path.glob("events.out.tfevents.*"))
