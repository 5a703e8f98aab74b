"""Criss-cross attention on the CPU: our kernels (training.ops) vs the einsum reference, forward + backward.

Run (writes benchmarks/results/cca_cpu.{md,json} at the end; not with --benchmark-only, which skips that):
    .venv/bin/python -m pytest benchmarks/bench_cca.py -p no:cacheprovider -q
Two shapes, each one pytest-benchmark group: CCNet at 1/8 of 776x776 ([2, 512, 97, 97], Cq = 64) and a small map
([1, 64, 33, 65], Cq = 8). Peak memory is the growth of the peak RSS of a fresh subprocess over one forward +
backward (inputs allocated and the op warmed up before the baseline is taken). A per-core figure that a busy machine
disturbs less: a fresh subprocess with OMP_NUM_THREADS=1 and torch.set_num_threads(1) times the two implementations
interleaved (median of its rounds). GFLOP/s count the reference's arithmetic, 3 * (C + Cq) * 2 * B * H * W * (H + W)
(forward: energies over Cq and aggregation over C; backward twice that), for both implementations.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from training import ops  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHAPES = {"2x512x97x97 (Cq 64)": (2, 512, 64, 97, 97), "1x64x33x65 (Cq 8)": (1, 64, 8, 33, 65)}
ROUNDS = {"2x512x97x97 (Cq 64)": 3, "1x64x33x65 (Cq 8)": 30}
IMPLS = {"ours": ops.criss_cross_attention, "einsum": ops.criss_cross_attention_reference}
_times: dict[tuple[str, str], float] = {}

_MEM_SCRIPT = """
import sys, torch
from training import ops
def hwm():  # peak RSS of this process image (ru_maxrss would also count the parent's RSS at fork time)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
f = ops.criss_cross_attention if sys.argv[1] == "ours" else ops.criss_cross_attention_reference
b, c, cq, h, w = map(int, sys.argv[2:7])
torch.set_num_threads(2)
t = [torch.randn(1, 2, 3, 4, requires_grad=True) for _ in range(2)] + [torch.randn(1, 3, 3, 4, requires_grad=True)]
f(*t).sum().backward()
q, k = (torch.randn(b, cq, h, w, requires_grad=True) for _ in range(2))
v, g = torch.randn(b, c, h, w, requires_grad=True), torch.randn(b, c, h, w)
base = hwm()
f(q, k, v).backward(g)
print(hwm() - base)
"""


_TIME_SCRIPT = """
import statistics, sys, time, torch
from training import ops
torch.set_num_threads(1)
b, c, cq, h, w, rounds = map(int, sys.argv[1:7])
gen = torch.Generator().manual_seed(0)
q, k = (torch.randn(b, cq, h, w, generator=gen).requires_grad_() for _ in range(2))
v, g = torch.randn(b, c, h, w, generator=gen).requires_grad_(), torch.randn(b, c, h, w, generator=gen)
impls = {"ours": ops.criss_cross_attention, "einsum": ops.criss_cross_attention_reference}
times = {name: [] for name in impls}
for r in range(rounds + 1):  # round 0 warms up
    for name, f in impls.items():
        t = time.perf_counter()
        f(q, k, v).backward(g)
        q.grad = k.grad = v.grad = None
        if r:
            times[name].append(time.perf_counter() - t)
print(statistics.median(times["ours"]), statistics.median(times["einsum"]))
"""


def _flops(shape: tuple[int, ...]) -> float:
    b, c, cq, h, w = shape
    return 3.0 * (c + cq) * 2 * b * h * w * (h + w)


def _one_thread(shape: tuple[int, ...], rounds: int) -> tuple[float, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-c", _TIME_SCRIPT, *map(str, shape), str(rounds)], cwd=ROOT, check=True,
                         capture_output=True, text=True, env=env)
    ours, ref = map(float, out.stdout.strip().splitlines()[-1].split())
    return ours, ref


def _inputs(shape: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    b, c, cq, h, w = shape
    gen = torch.Generator().manual_seed(0)
    q, k = (torch.randn(b, cq, h, w, generator=gen).requires_grad_() for _ in range(2))
    return q, k, torch.randn(b, c, h, w, generator=gen).requires_grad_(), torch.randn(b, c, h, w, generator=gen)


def _peak_bytes(impl: str, shape: tuple[int, ...]) -> int:
    out = subprocess.run([sys.executable, "-c", _MEM_SCRIPT, impl, *map(str, shape)], cwd=ROOT, check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("name", list(SHAPES))
def test_cca_fwd_bwd(benchmark, name: str, impl: str) -> None:
    torch.set_num_threads(2)
    q, k, v, g = _inputs(SHAPES[name])
    fn = IMPLS[impl]

    def step() -> None:
        fn(q, k, v).backward(g)
        q.grad = k.grad = v.grad = None

    benchmark.group = f"criss_cross_attention fwd+bwd {name}"
    benchmark.pedantic(step, rounds=ROUNDS[name], iterations=1, warmup_rounds=1)
    _times[(name, impl)] = benchmark.stats.stats.median


def test_write_summary() -> None:
    """Ratios (speed from the runs above, memory from subprocesses) to benchmarks/results/cca_cpu.{md,json}."""
    if len(_times) != len(SHAPES) * len(IMPLS):
        pytest.skip("needs every benchmark of this file in the same session (run with --benchmark-only)")
    rows = []
    for name, shape in SHAPES.items():
        mem = {impl: statistics.median(_peak_bytes(impl, shape) for _ in range(2)) for impl in IMPLS}
        t_ours, t_ref = _times[(name, "ours")], _times[(name, "einsum")]
        t1_ours, t1_ref = _one_thread(shape, ROUNDS[name])
        gf = _flops(shape) / 1e9
        rows.append({"shape": name, "B_C_Cq_H_W": shape, "ours_s": t_ours, "einsum_s": t_ref,
                     "speedup": t_ref / t_ours, "ours_gflops": gf / t_ours, "einsum_gflops": gf / t_ref,
                     "ours_1thread_s": t1_ours, "einsum_1thread_s": t1_ref, "speedup_1thread": t1_ref / t1_ours,
                     "ours_1thread_gflops": gf / t1_ours, "einsum_1thread_gflops": gf / t1_ref,
                     "ours_peak_mib": mem["ours"] / 2**20,
                     "einsum_peak_mib": mem["einsum"] / 2**20, "memory_ratio": mem["ours"] / max(mem["einsum"], 1)})
    command = " ".join([Path(sys.executable).relative_to(ROOT).as_posix() if sys.executable.startswith(str(ROOT))
                        else sys.executable, "-m", "pytest", *sys.argv[1:]])
    meta = {"command": command, "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "threads": [2, 1], "load_average": os.getloadavg()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cca_cpu.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    lines = ["# Criss-cross attention, CPU, forward + backward", "", f"Command: `{command}`", "",
             f"{meta['cpus']} CPUs, torch {meta['torch']}, 2 threads (and 1 in a subprocess); load average at the end "
             f"{', '.join(f'{x:.1f}' for x in meta['load_average'])} (a shared machine: absolute times are noisy, "
             "the two implementations ran interleaved in one session).", "",
             "| shape | threads | ours (s) | einsum (s) | speedup | ours GFLOP/s | einsum GFLOP/s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines += [f"| {r['shape']} | 2 | {r['ours_s']:.4f} | {r['einsum_s']:.4f} | {r['speedup']:.2f}x | "
                  f"{r['ours_gflops']:.1f} | {r['einsum_gflops']:.1f} |",
                  f"| {r['shape']} | 1 | {r['ours_1thread_s']:.4f} | {r['einsum_1thread_s']:.4f} | "
                  f"{r['speedup_1thread']:.2f}x | {r['ours_1thread_gflops']:.1f} | {r['einsum_1thread_gflops']:.1f} |"]
    lines += ["", "| shape | ours peak (MiB) | einsum peak (MiB) | memory ratio |", "|---|---|---|---|"]
    lines += [f"| {r['shape']} | {r['ours_peak_mib']:.1f} | {r['einsum_peak_mib']:.1f} | {r['memory_ratio']:.2f} |"
              for r in rows]
    lines += ["", "GFLOP/s: the reference's arithmetic, 3 * (C + Cq) * 2 * B * H * W * (H + W), over the time. "
              "1 thread: a fresh process with OMP_NUM_THREADS=1 and torch.set_num_threads(1), the two implementations "
              "interleaved (median).", "",
              "Peak memory: growth of the peak RSS of a fresh process over one forward + backward (outputs and "
              "input gradients included)."]
    (RESULTS / "cca_cpu.md").write_text("\n".join(lines) + "\n")
