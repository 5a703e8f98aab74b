"""Bilinear resize on the CPU: our op (training.ops.resize_bilinear) vs F.interpolate, forward + backward.

Run (writes benchmarks/results/resize_op_cpu.{md,json} at the end; not with --benchmark-only, which skips that):
    .venv/bin/python -m pytest benchmarks/bench_resize_op.py -p no:cacheprovider -q
Two cases, each one pytest-benchmark group: logits upsampled to a Cityscapes frame ([2, 19, 128, 256] ->
[1024, 2048], the loss-on-full-resolution case) and a decoder feature map ([8, 256, 64, 128] -> [128, 256]).
One step = forward, backward with a fixed upstream gradient, input gradient cleared; align_corners=False.
The machine is shared, so a second figure that a busy machine disturbs less: a fresh subprocess with
OMP_NUM_THREADS=1 and torch.set_num_threads(1) times the two implementations interleaved (median of its rounds),
forward alone and forward + backward.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from training import ops  # noqa: E402

F = torch.nn.functional
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CASES = {
    "2x19x128x256->1024x2048": ((2, 19, 128, 256), (1024, 2048)),
    "8x256x64x128->128x256": ((8, 256, 64, 128), (128, 256)),
}
ROUNDS = {"2x19x128x256->1024x2048": 7, "8x256x64x128->128x256": 10}


def _interpolate(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


IMPLS = {"ours": ops.resize_bilinear, "interpolate": _interpolate}
_times: dict[tuple[str, str], float] = {}

_TIME_SCRIPT = """
import statistics, sys, time, torch
import torch.nn.functional as F
from training import ops
torch.set_num_threads(1)
n, c, h, w, oh, ow, rounds = map(int, sys.argv[1:8])
gen = torch.Generator().manual_seed(0)
x = torch.randn(n, c, h, w, generator=gen).requires_grad_()
g = torch.randn(n, c, oh, ow, generator=gen)
impls = {"ours": lambda t: ops.resize_bilinear(t, (oh, ow)),
         "interpolate": lambda t: F.interpolate(t, size=(oh, ow), mode="bilinear", align_corners=False)}
fwd = {name: [] for name in impls}
step = {name: [] for name in impls}
for r in range(rounds + 1):  # round 0 warms up
    for name, f in impls.items():
        t = time.perf_counter()
        with torch.no_grad():
            f(x)
        t1 = time.perf_counter()
        f(x).backward(g)
        x.grad = None
        t2 = time.perf_counter()
        if r:
            fwd[name].append(t1 - t)
            step[name].append(t2 - t1)
print(*(statistics.median(d[k]) for d in (fwd, step) for k in ("ours", "interpolate")))
"""


def _one_thread(case: str) -> dict[str, float]:
    (n, c, h, w), (oh, ow) = CASES[case]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    args = [sys.executable, "-c", _TIME_SCRIPT, *map(str, (n, c, h, w, oh, ow, max(3, ROUNDS[case] // 2)))]
    out = subprocess.run(args, cwd=ROOT, check=True, capture_output=True, text=True, env=env)
    f_ours, f_ref, s_ours, s_ref = map(float, out.stdout.strip().splitlines()[-1].split())
    return {"fwd_ours_s": f_ours, "fwd_interpolate_s": f_ref, "ours_s": s_ours, "interpolate_s": s_ref}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("case", list(CASES))
def test_resize_fwd_bwd(benchmark, case: str, impl: str) -> None:
    torch.set_num_threads(2)
    shape, size = CASES[case]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=gen).requires_grad_()
    g = torch.randn(*shape[:2], *size, generator=gen)
    fn = IMPLS[impl]

    def step() -> None:
        fn(x, size).backward(g)
        x.grad = None

    benchmark.group = f"resize_bilinear fwd+bwd {case}"
    benchmark.pedantic(step, rounds=ROUNDS[case], iterations=1, warmup_rounds=1)
    _times[(case, impl)] = benchmark.stats.stats.median


def test_write_summary() -> None:
    """Speed-ups (interpolate time / our time) to benchmarks/results/resize_op_cpu.{md,json}."""
    if len(_times) != len(CASES) * len(IMPLS):
        pytest.skip("needs every benchmark of this file in the same session")
    rows = []
    for case, (shape, size) in CASES.items():
        one = _one_thread(case)
        t_ours, t_ref = _times[(case, "ours")], _times[(case, "interpolate")]
        rows.append({"case": case, "input": shape, "size": size, "ours_s": t_ours, "interpolate_s": t_ref,
                     "speedup": t_ref / t_ours, "ours_1thread_s": one["ours_s"],
                     "interpolate_1thread_s": one["interpolate_s"],
                     "speedup_1thread": one["interpolate_s"] / one["ours_s"],
                     "fwd_ours_1thread_s": one["fwd_ours_s"], "fwd_interpolate_1thread_s": one["fwd_interpolate_s"],
                     "fwd_speedup_1thread": one["fwd_interpolate_s"] / one["fwd_ours_s"]})
    command = " ".join([Path(sys.executable).relative_to(ROOT).as_posix() if sys.executable.startswith(str(ROOT))
                        else sys.executable, "-m", "pytest", *sys.argv[1:]])
    meta = {"command": command, "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "threads": [2, 1], "align_corners": False, "dtype": "float32",
            "load_average": os.getloadavg()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "resize_op_cpu.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    lines = ["# Bilinear resize op, CPU, forward + backward (ours vs F.interpolate)", "", f"Command: `{command}`", "",
             f"{meta['cpus']} CPUs, torch {meta['torch']}, float32, align_corners=False; 2 threads in the pytest "
             "session (pytest-benchmark median) and 1 thread in a fresh subprocess (OMP_NUM_THREADS=1, "
             "torch.set_num_threads(1), the two implementations interleaved, median). Load average at the end "
             f"{', '.join(f'{x:.1f}' for x in meta['load_average'])}: a shared machine, so absolute times are "
             "noisy; the 1-thread ratio is the steadier figure.", "",
             "| case | threads | ours fwd+bwd (s) | interpolate fwd+bwd (s) | speed-up | ours fwd (s) | "
             "interpolate fwd (s) | fwd speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines += [f"| {r['case']} | 2 | {r['ours_s']:.4f} | {r['interpolate_s']:.4f} | {r['speedup']:.2f}x | | | |",
                  f"| {r['case']} | 1 | {r['ours_1thread_s']:.4f} | {r['interpolate_1thread_s']:.4f} | "
                  f"{r['speedup_1thread']:.2f}x | {r['fwd_ours_1thread_s']:.4f} | "
                  f"{r['fwd_interpolate_1thread_s']:.4f} | {r['fwd_speedup_1thread']:.2f}x |"]
    lines += ["", "Speed-up: interpolate time / our time (> 1: ours is faster)."]
    (RESULTS / "resize_op_cpu.md").write_text("\n".join(lines) + "\n")
