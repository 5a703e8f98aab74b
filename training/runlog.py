"""A run's logs in its work dir: log.jsonl (every record), metrics.csv (one row per logged iteration), TensorBoard
event files (training.tblog; optional), and plots (loss and mIoU curves, the last evaluation's confusion matrix)
re-drawn after each evaluation. A resumed run first drops the records a killed process wrote after its last
checkpoint, so the logs of a killed and resumed run read like those of an uninterrupted one."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from engine.fileio import atomic_path, write_atomic
from training.tblog import open_events

log = logging.getLogger(__name__)
CSV_FIELDS = ("iter", "loss", "lr", "time", "mIoU", "pixAcc", "mAcc")


class RunLog:
    """Appends training and evaluation records; ``plot`` draws curves.png and confusion.png.

    ``resume_iter`` (a resumed run's starting iteration) keeps only the records up to it; ``tensorboard=False``
    writes no event files.
    """

    def __init__(self, work_dir: str | Path, resume_iter: int | None = None, tensorboard: bool = True) -> None:
        self.dir = Path(work_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        if resume_iter is not None:
            self._truncate(resume_iter)
        self.tb = open_events(self.dir, None if resume_iter is None else resume_iter + 1) if tensorboard else None
        self._jsonl = (self.dir / "log.jsonl").open("a")
        if self._jsonl.tell():
            with open(self.dir / "log.jsonl", "rb") as f:
                f.seek(-1, 2)
                if f.read(1) != b"\n":
                    self._jsonl.write("\n")  # end a line that a killed run left unfinished (records() skips it)
        new = not (self.dir / "metrics.csv").exists()
        self._csv_file = (self.dir / "metrics.csv").open("a", newline="")
        self._csv = csv.DictWriter(self._csv_file, fieldnames=CSV_FIELDS, extrasaction="ignore")
        if new:
            self._csv.writeheader()

    def _truncate(self, last_iter: int) -> None:
        keep = [r for r in self.records() if r.get("iter", 0) <= last_iter]
        write_atomic(self.dir / "log.jsonl", "".join(json.dumps(r) + "\n" for r in keep))
        with atomic_path(self.dir / "metrics.csv") as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows({k: r.get(k, "") for k in CSV_FIELDS} for r in keep)

    def _append(self, record: dict[str, Any]) -> None:
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        self._csv.writerow({k: record.get(k, "") for k in CSV_FIELDS})
        self._csv_file.flush()

    def _tb(self, fn: str, *args: Any) -> None:
        """An EventWriter call; a failing writer is switched off with a warning, never ends the run."""
        if self.tb is None:
            return
        try:
            getattr(self.tb, fn)(*args)
        except Exception as e:
            log.warning("TensorBoard logging off after %s: %s", type(e).__name__, e)
            self.tb = None

    def write(self, **record: Any) -> None:
        """A training step's record (iter, loss, lr, time), flushed at once; loss and lr also go to TensorBoard."""
        self._append(record)
        self._tb("scalars", record["iter"], {f"train/{k}": v for k, v in record.items() if k in ("loss", "lr")})

    def evaluation(self, it: int, metrics: dict[str, Any], confusion: np.ndarray | None = None,
                   classes: list[str] | None = None) -> None:
        """An evaluation at iteration ``it``: its record, every metric (per-class IoU too) to TensorBoard, the
        plots re-drawn and added there as images."""
        self._append({"iter": it, **{k: metrics[k] for k in ("mIoU", "pixAcc", "mAcc")}})
        scalars = {f"val/{k}": v for k, v in metrics.items() if isinstance(v, int | float)}
        scalars.update({f"val/IoU/{c}": v for c, v in (metrics.get("per_class_IoU") or {}).items() if v is not None})
        self._tb("scalars", it, scalars)
        self.plot(confusion, classes)
        for name in ("curves", "confusion") if confusion is not None else ("curves",):
            self._tb("png", it, name, self.dir / f"{name}.png")

    def close(self) -> None:
        """Close the files."""
        self._jsonl.close()
        self._csv_file.close()
        self._tb("close")

    def records(self) -> list[dict[str, Any]]:
        """Every record so far (including earlier runs resumed into this work dir); a line cut short by a kill
        is skipped."""
        path = self.dir / "log.jsonl"
        if not path.is_file():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def plot(self, confusion: np.ndarray | None = None, classes: list[str] | None = None) -> None:
        """Write curves.png (loss and mIoU against iterations) and, given a matrix, confusion.png."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        recs = self.records()
        loss = [(r["iter"], r["loss"]) for r in recs if "loss" in r]
        miou = [(r["iter"], r["mIoU"]) for r in recs if "mIoU" in r]
        fig, ax = plt.subplots(figsize=(7, 3.5))
        if loss:
            ax.plot(*zip(*loss), color="tab:blue", lw=1, label="loss")
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
        if miou:
            ax2 = ax.twinx()
            ax2.plot(*zip(*miou), "o-", color="tab:orange", label="val mIoU")
            ax2.set_ylabel("mIoU")
            ax2.set_ylim(0, 1)
        fig.legend(loc="upper right")
        fig.tight_layout()
        with atomic_path(self.dir / "curves.png") as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)
        if confusion is not None:
            self._plot_confusion(plt, confusion, classes)

    def _plot_confusion(self, plt: Any, mat: np.ndarray, classes: list[str] | None) -> None:
        rows = mat.sum(1, keepdims=True)
        norm = np.divide(mat, rows, out=np.zeros(mat.shape, float), where=rows > 0)
        k = mat.shape[0]
        size = min(3 + 0.35 * k, 20)
        fig, ax = plt.subplots(figsize=(size, size))
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        names = classes or [str(i) for i in range(k)]
        if k <= 40:
            ax.set_xticks(range(k), names, rotation=90)
            ax.set_yticks(range(k), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("ground truth")
        ax.set_title("confusion matrix (rows normalised)")
        fig.tight_layout()
        with atomic_path(self.dir / "confusion.png") as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)
