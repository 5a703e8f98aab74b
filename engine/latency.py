"""Per-stage latency bookkeeping: median, p90, p99 in milliseconds."""

from __future__ import annotations

import numpy as np


class LatencyStats:
    """Collects named stage times (ms) per item and summarises them."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}
        self.count = 0

    def add(self, **stages_ms: float) -> None:
        """Record one item's stage times."""
        for k, v in stages_ms.items():
            self.samples.setdefault(k, []).append(float(v))
        self.count += 1

    def summary(self) -> dict[str, dict[str, float]]:
        """{stage: {median, p90, p99, mean}} in ms."""
        out = {}
        for k, v in self.samples.items():
            a = np.asarray(v)
            out[k] = {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
                      "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}
        return out

    def table(self) -> str:
        """A small markdown table of the summary."""
        rows = ["| stage | median ms | p90 ms | p99 ms |", "|---|---:|---:|---:|"]
        for k, s in self.summary().items():
            rows.append(f"| {k} | {s['median']:.2f} | {s['p90']:.2f} | {s['p99']:.2f} |")
        return "\n".join(rows)
