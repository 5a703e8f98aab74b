"""A run's logs in its work dir: log.jsonl (every record), metrics.csv (one row per logged iteration), and plots
(loss and mIoU curves, the last evaluation's confusion matrix) re-drawn after each evaluation."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from engine.fileio import atomic_path

CSV_FIELDS = ("iter", "loss", "lr", "time", "mIoU", "pixAcc", "mAcc")


class RunLog:
    """Appends training and evaluation records; ``plot`` draws curves.png and confusion.png."""

    def __init__(self, work_dir: str | Path) -> None:
        self.dir = Path(work_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = (self.dir / "log.jsonl").open("a")
        new = not (self.dir / "metrics.csv").exists()
        self._csv_file = (self.dir / "metrics.csv").open("a", newline="")
        self._csv = csv.DictWriter(self._csv_file, fieldnames=CSV_FIELDS, extrasaction="ignore")
        if new:
            self._csv.writeheader()

    def write(self, **record: Any) -> None:
        """One record (a training step's loss/lr or an evaluation's metrics), flushed at once."""
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        self._csv.writerow({k: record.get(k, "") for k in CSV_FIELDS})
        self._csv_file.flush()

    def close(self) -> None:
        """Close the files."""
        self._jsonl.close()
        self._csv_file.close()

    def records(self) -> list[dict[str, Any]]:
        """Every record so far (including earlier runs resumed into this work dir)."""
        with open(self.dir / "log.jsonl") as f:
            return [json.loads(line) for line in f if line.strip()]

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
