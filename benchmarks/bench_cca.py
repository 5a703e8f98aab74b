"""Criss-cross attention on the CPU: our kernels (training.ops) vs the einsum reference, forward + backward.

Run (writes benchmarks/results/cca_cpu.{md,json} at the end; not with --benchmark-only, which skips that):
    .venv/bin/python -m pytest benchmarks/bench_cca.py -p no:cacheprovider -q
Two shapes, each one pytest-benchmark group: CCNet at 1/8 of 776x776 ([2, 512, 97, 97], Cq = 64) and a small map
([1, 64, 33, 65], Cq = 8). Peak memory is the growth of the peak RSS of a fresh subprocess over one forward +
backward (inputs allocated and the op warmed up before the baseline is taken).
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
        rows.append({"shape": name, "B_C_Cq_H_W": shape, "ours_s": t_ours, "einsum_s": t_ref,
                     "speedup": t_ref / t_ours, "ours_peak_mib": mem["ours"] / 2**20,
                     "einsum_peak_mib": mem["einsum"] / 2**20, "memory_ratio": mem["ours"] / max(mem["einsum"], 1)})
    command = " ".join([Path(sys.executable).relative_to(ROOT).as_posix() if sys.executable.startswith(str(ROOT))
                        else sys.executable, "-m", "pytest", *sys.argv[1:]])
    meta = {"command": command, "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "threads": 2, "load_average": os.getloadavg()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cca_cpu.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    lines = ["# Criss-cross attention, CPU, forward + backward", "", f"Command: `{command}`", "",
             f"{meta['cpus']} CPUs, torch {meta['torch']}, 2 threads; load average at the end "
             f"{', '.join(f'{x:.1f}' for x in meta['load_average'])} (a shared machine: absolute times are noisy, "
             "the two implementations ran interleaved in one session).", "",
             "| shape | ours (s) | einsum (s) | speedup | ours peak (MiB) | einsum peak (MiB) | memory ratio |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['shape']} | {r['ours_s']:.4f} | {r['einsum_s']:.4f} | {r['speedup']:.2f}x | "
              f"{r['ours_peak_mib']:.1f} | {r['einsum_peak_mib']:.1f} | {r['memory_ratio']:.2f} |" for r in rows]
    lines += ["", "Peak memory: growth of the peak RSS of a fresh process over one forward + backward (outputs and "
              "input gradients included)."]
    (RESULTS / "cca_cpu.md").write_text("\n".join(lines) + "\n")
