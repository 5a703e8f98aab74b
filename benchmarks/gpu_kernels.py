"""Correctness and speed of the CUDA kernels in ``engine._C.cuda`` against their PyTorch twins, on one NVIDIA GPU.

Run from the repository root of a CUDA build (``pip install --no-build-isolation --no-deps -e .``):
    python benchmarks/gpu_kernels.py [--out benchmarks/results/gpu_kernels] [--quick]
Without a usable GPU (torch sees none, engine._C built without CUDA, or no device visible to it) it prints the reason
and exits 0 without writing anything. Otherwise it checks every kernel against torch on random inputs (PASS/FAIL per
case), times ours against torch with CUDA events, writes ``<out>.json`` and ``<out>.md`` atomically, and exits 1 if
any correctness case failed. Performance targets (resize_argmax >= 70% of the measured copy bandwidth, criss-cross
attention >= 3x the einsum reference) are reported, never turned into a failing exit code.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(Path(__file__).resolve().parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import gpu_common as gc  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from gpu_common import Launchers, Timer, peak_mib  # noqa: E402

DEVICE = "cuda"
DTYPES = gc.DTYPES
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)  # ImageNet, 0..255 pixel units
Check = dict[str, Any]


def unavailable_reason() -> str | None:
    """Why the kernels cannot run here (None when they can): torch CUDA, a CUDA build of engine._C, a device."""
    if not torch.cuda.is_available():
        return f"torch.cuda.is_available() is False (torch {torch.__version__}, CUDA build {torch.version.cuda})"
    try:
        from engine import _C
    except ImportError as err:
        return f"engine._C cannot be imported ({err}); run `pip install --no-build-isolation --no-deps -e .`"
    if not _C.has_cuda():
        return "engine._C was built without CUDA (engine._C.has_cuda() is False); rebuild it where nvcc is found"
    if _C.cuda_device_count() == 0:
        return "engine._C.cuda_device_count() is 0: the extension's CUDA runtime sees no GPU"
    return None


# ----------------------------------------------------------------------------------------------------- correctness
def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    """max |a - ref| / max(1, max |ref|), in float64 (relative for large tensors, absolute for small ones)."""
    ref = ref.detach().double()
    return float((a.detach().double() - ref).abs().max() / ref.abs().max().clamp_min(1.0))


def _abs(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.detach().double() - ref.detach().double()).abs().max())


def _record(out: list[Check], kernel: str, case: str, dtype: str, ac: bool | None, err: float | None, tol: float,
            note: str = "", passed: bool | None = None) -> None:
    ok = bool(passed if passed is not None else err is not None and err <= tol)
    out.append({"kernel": kernel, "case": case, "dtype": dtype, "align_corners": ac, "max_err": err, "tol": tol,
                "passed": ok, "note": note})
    print(f"{'PASS' if ok else 'FAIL'} {kernel:<22} {case:<28} {dtype:<8} ac={ac!s:<5} max_err="
          f"{'-' if err is None else f'{err:.3g}'} (tol {tol:g}) {note}", flush=True)


def _guard(out: list[Check], kernel: str, case: str, dtype: str, ac: bool | None, fn: Callable[..., None],
           *args: Any) -> None:
    """Run one case; an exception (bad launch, illegal address) is a FAIL naming it, and the run goes on."""
    try:
        fn(*args)
    except Exception as err:  # every error of a case is reported as that case's failure
        _record(out, kernel, case, dtype, ac, None, 0.0, f"error: {type(err).__name__}: {err}"[:300], passed=False)


def _bilinear_case(L: Launchers, out: list[Check], x: torch.Tensor, oh: int, ow: int, ac: bool, case: str) -> None:
    ref = F.interpolate(x.float(), (oh, ow), mode="bilinear", align_corners=ac).to(x.dtype)
    tol = 1e-5 if x.dtype == torch.float32 else 4e-3
    _record(out, "resize_bilinear", case, DTYPES[x.dtype], ac, _rel(L.resize_bilinear(x, oh, ow, ac), ref), tol, "rel")


def _argmax_case(L: Launchers, out: list[Check], x: torch.Tensor, oh: int, ow: int, ac: bool, case: str) -> None:
    labels, scores = L.resize_argmax(x, oh, ow, ac, scores=True)
    c, name = x.shape[1], DTYPES[x.dtype]
    ref = F.interpolate(x.float(), (oh, ow), mode="bilinear", align_corners=ac)
    best, arg = ref.max(1)
    lab = labels.long()
    bad = int(((lab < 0) | (lab >= c)).sum())
    mism = lab != arg
    gap = (best - ref.gather(1, lab.clamp(0, c - 1)[:, None])[:, 0])[mism]  # reference logit gap where labels differ
    err = float(gap.max()) / max(1.0, float(best.abs().max())) if gap.numel() else 0.0
    _record(out, "resize_argmax.labels", case, name, ac, err, 1e-5,
            f"rel logit gap; {gap.numel()} tie mismatches of {lab.numel()}, {bad} out of range",
            passed=bad == 0 and err <= 1e-5 and labels.dtype == (torch.uint8 if c <= 255 else torch.int32))
    _record(out, "resize_argmax.scores", case, name, ac, _rel(scores, best), 1e-5, "rel")


def check_resize(L: Launchers, out: list[Check], quick: bool) -> None:
    """resize_bilinear vs F.interpolate; resize_argmax vs interpolate + argmax (ties only) and its scores."""
    shapes = [(1, 3, 7, 5, 13, 17), (2, 5, 33, 65, 129, 257), (1, 4, 64, 48, 31, 23), (1, 2, 1, 1, 5, 4),
              (1, 3, 9, 7, 1, 1), (3, 5, 17, 31, 17, 31), (1, 300, 9, 11, 37, 41)]
    if not quick:
        shapes += [(1, 19, 128, 256, 1024, 2048), (8, 19, 64, 128, 512, 1024)]
    for (b, c, h, w, oh, ow) in shapes:
        for dt in DTYPES:
            for ac in (False, True):
                case = f"{b}x{c}x{h}x{w}->{oh}x{ow}"
                x = torch.randn(b, c, h, w, device=DEVICE).to(dt)
                _guard(out, "resize_bilinear", case, DTYPES[dt], ac, _bilinear_case, L, out, x, oh, ow, ac, case)
                _guard(out, "resize_argmax", case, DTYPES[dt], ac, _argmax_case, L, out, x, oh, ow, ac, case)
                if c == 5:  # small integer logits: many exact ties, which must keep the first channel or tie exactly
                    x = torch.randint(0, 3, (b, c, h, w), device=DEVICE).to(dt)
                    _guard(out, "resize_argmax", case + " ties", DTYPES[dt], ac, _argmax_case, L, out, x, oh, ow, ac,
                           case + " ties")


def _preprocess_case(L: Launchers, out: list[Check], img: torch.Tensor, oh: int, ow: int, bgr: bool, ac: bool,
                     dt: torch.dtype, case: str) -> None:
    mean, std = (torch.tensor(v, device=img.device).view(1, 3, 1, 1) for v in (MEAN, STD))
    x = img.permute(2, 0, 1)[None].float()
    x = x.flip(1) if bgr else x
    if tuple(img.shape[:2]) != (oh, ow):
        x = F.interpolate(x, (oh, ow), mode="bilinear", align_corners=ac)
    ref = ((x - mean) / std).to(dt)
    _record(out, "preprocess", case, DTYPES[dt], ac, _abs(L.preprocess(img, oh, ow, MEAN, STD, bgr, ac, dt), ref),
            1e-4 if dt == torch.float32 else 5e-3, "abs")


def check_preprocess(L: Launchers, out: list[Check], quick: bool) -> None:
    """preprocess vs permute + float + (BGR flip) + F.interpolate + (x - mean) / std."""
    shapes = [(37, 53, 64, 96), (480, 640, 480, 640), (7, 5, 1, 1), (1, 1, 3, 4), (101, 67, 50, 33)]
    if not quick:
        shapes += [(1080, 1920, 512, 1024)]
    for (h, w, oh, ow) in shapes:
        img = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, device=DEVICE)
        for dt in DTYPES:
            for ac in (False, True):
                for bgr in (False, True):
                    case = f"{h}x{w}->{oh}x{ow}" + (" bgr" if bgr else "")
                    _guard(out, "preprocess", case, DTYPES[dt], ac, _preprocess_case, L, out, img, oh, ow, bgr, ac,
                           dt, case)


def overlay_reference(frame: torch.Tensor, labels: torch.Tensor, palette: torch.Tensor, alpha: float) -> torch.Tensor:
    """floor((1 - alpha) * frame + alpha * palette[label] + 0.5); labels outside [0, K) leave the pixel unchanged."""
    lab = labels.long()  # (a uint8 tensor compared with K = 256 would wrap K to 0)
    valid = (lab >= 0) & (lab < palette.shape[0])
    colour = palette[lab.clamp(0, palette.shape[0] - 1)].float()
    blend = torch.floor(frame.float() * (1.0 - alpha) + alpha * colour + 0.5).to(torch.uint8)
    return torch.where(valid[..., None], blend, frame)


def _overlay_case(L: Launchers, out: list[Check], h: int, w: int, k: int, ldt: torch.dtype, alpha: float,
                  case: str) -> None:
    frame = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, device=DEVICE)
    palette = torch.randint(0, 256, (k, 3), dtype=torch.uint8, device=DEVICE)
    lo, hi = (-2, k + 3) if ldt == torch.int32 else (0, min(k + 3, 256))
    labels = torch.randint(lo, hi, (h, w), device=DEVICE).to(ldt)
    got = L.overlay(frame, labels, palette, alpha)
    diff = (got.int() - overlay_reference(frame, labels, palette, alpha).int()).abs()
    invalid = (labels.long() < 0) | (labels.long() >= k)
    err_inv = int(diff[invalid].max()) if bool(invalid.any()) else 0
    _record(out, "overlay", case, str(ldt)[6:], None, float(diff.max()), 1.0,
            f"abs; {int((diff > 0).sum())} px off by 1 (rounding at .5); invalid-label px max diff {err_inv}",
            passed=int(diff.max()) <= 1 and err_inv == 0)


def check_overlay(L: Launchers, out: list[Check], quick: bool) -> None:
    """overlay vs torch float32 arithmetic: off by at most 1 where rounding meets .5, exact where labels are invalid."""
    cases = [(37, 53, 19, torch.int32, 0.3), (5, 7, 256, torch.uint8, 1.0), (9, 11, 3, torch.int32, 0.0),
             (64, 48, 19, torch.uint8, 0.5)]
    if not quick:
        cases += [(1080, 1920, 19, torch.uint8, 0.5)]
    for (h, w, k, ldt, alpha) in cases:
        case = f"{h}x{w} K={k} alpha={alpha}"
        _guard(out, "overlay", case, str(ldt)[6:], None, _overlay_case, L, out, h, w, k, ldt, alpha, case)


def cca_inputs(b: int, c: int, cq: int, h: int, w: int, dt: torch.dtype) -> tuple[torch.Tensor, ...]:
    """q, k, v, grad_out; float16 scales q, k so that the energies have standard deviation ~2 (float32: ~sqrt(Cq))."""
    s = 1.0 if dt == torch.float32 else (4.0 / cq) ** 0.25
    q, k = (torch.randn(b, cq, h, w, device=DEVICE) * s for _ in range(2))
    v, g = (torch.randn(b, c, h, w, device=DEVICE) for _ in range(2))
    return tuple(t.to(dt) for t in (q, k, v, g))


def _cca_case(L: Launchers, out: list[Check], shape: tuple[int, ...], dt: torch.dtype, case: str) -> None:
    from training import ops

    b, c, cq, h, w = shape
    tol_out, tol_grad = (2e-4, 1e-3) if dt == torch.float32 else (2e-2, 5e-2)
    q, k, v, g = cca_inputs(b, c, cq, h, w, dt)
    r = [t.double().requires_grad_() for t in (q, k, v)]  # float64 reference of the same (rounded) inputs
    ref = ops.criss_cross_attention_reference(*r)
    ref.backward(g.double())
    diag = torch.eye(h, dtype=torch.bool, device=q.device)[None, :, None, :]
    e_h = torch.einsum("bchw,bciw->bhwi", r[0], r[1]).masked_fill(diag, float("-inf"))
    lse_ref = torch.logsumexp(torch.cat([e_h, torch.einsum("bchw,bchj->bhwj", r[0], r[1])], -1), -1).detach()
    t = [x.clone().requires_grad_() for x in (q, k, v)]
    y = ops.criss_cross_attention(*t)  # the torch custom op: CUDA launchers on the current stream, lse recomputed
    y.backward(g)
    y2, lse = L.cca_forward(q, k, v)
    grads = L.cca_backward(q, k, v, y2, g, lse)
    name = DTYPES[dt]
    _record(out, "cca.forward", case, name, None, max(_rel(y, ref), _rel(y2, ref)), tol_out, "rel; op and launcher")
    _record(out, "cca.lse", case, name, None, _rel(lse, lse_ref), tol_out, "rel")
    _record(out, "cca.backward (op)", case, name, None, max(_rel(x.grad, rx.grad) for x, rx in zip(t, r)), tol_grad,
            "rel; max over dq, dk, dv; lse recomputed")
    _record(out, "cca.backward (lse)", case, name, None, max(_rel(x, rx.grad) for x, rx in zip(grads, r)), tol_grad,
            "rel; max over dq, dk, dv; lse passed")


def check_cca(L: Launchers, out: list[Check], quick: bool) -> None:
    """Criss-cross attention (torch op and raw launchers) forward, lse and backward vs the einsum reference in fp64."""
    shapes = [(1, 8, 4, 1, 7), (2, 16, 8, 5, 1), (1, 3, 2, 1, 1), (2, 32, 8, 13, 17), (1, 24, 8, 70, 40)]
    if not quick:
        shapes += [(1, 64, 8, 33, 65), (1, 5, 3, 9, 100), (2, 512, 64, 97, 97)]
    for shape in shapes:
        for dt in DTYPES:
            b, c, cq, h, w = shape
            case = f"[{b},{c},{h},{w}] Cq={cq}"
            _guard(out, "cca", case, DTYPES[dt], None, _cca_case, L, out, shape, dt, case)


# ---------------------------------------------------------------------------------------------------------- timing
def compare(timer: Timer, rows: list[dict[str, Any]], kernel: str, case: str, ours: Callable[[], Any],
            ref: Callable[[], Any], ref_name: str, reps: tuple[int, int], bw: float, nbytes: int | None = None,
            target_pct: float | None = None, target_x: float | None = None, ours_ms: float | None = None) -> float:
    """Time ours and a reference, add one result row (bandwidth when ``nbytes``); returns our time."""
    ours_ms = timer.ms(ours, *reps) if ours_ms is None else ours_ms
    ref_ms = timer.ms(ref, *reps)
    gbs = gc.bandwidth_gbs(nbytes, ours_ms) if nbytes else None
    pct = gc.percent_of(gbs, bw) if gbs is not None else None
    x = gc.speedup(ref_ms, ours_ms)
    target, met = None, None
    if target_pct is not None and pct is not None:
        target, met = f">= {target_pct:g}% of measured BW", pct >= target_pct
    if target_x is not None:
        target, met = f">= {target_x:g}x", x >= target_x
    row = {"kernel": kernel, "case": case, "ours_ms": ours_ms, "reference": ref_name, "ref_ms": ref_ms, "speedup": x,
           "ours_gbs": gbs, "pct_of_measured": pct, "target": target, "target_met": met, "bytes": nbytes,
           "ours_peak_mib": peak_mib(ours), "ref_peak_mib": peak_mib(ref)}
    rows.append(row)
    print(f"TIME {kernel:<22} {case:<30} ours {ours_ms:.4f} ms, {ref_name} {ref_ms:.4f} ms, {x:.2f}x"
          + (f", {gbs:.0f} GB/s = {pct:.1f}% of measured" if gbs is not None else ""), flush=True)
    return ours_ms


def run_timings(L: Launchers, timer: Timer, rows: list[dict[str, Any]], notes: list[str], bw: float,
                quick: bool) -> None:
    """Ours vs torch for every kernel at deployment sizes; criss-cross attention fwd + bwd also vs torch.compile."""
    from training import ops

    reps, creps = ((3, 10), (1, 5)) if quick else ((10, 50), (3, 20))
    dtypes = (torch.float32,) if quick else tuple(DTYPES)
    size = (1024, 2048)
    for b in (1, 8):
        for dt in dtypes:
            x = torch.randn(b, 19, 128, 256, device=DEVICE).to(dt)
            nbytes = gc.tensor_bytes(x.shape, x.element_size()) + gc.tensor_bytes((b, *size), 1)
            compare(timer, rows, "resize_argmax", f"{b}x19x128x256->1024x2048 {DTYPES[dt]}",
                    lambda x=x: L.resize_argmax(x, *size, False),
                    lambda x=x: F.interpolate(x, size, mode="bilinear", align_corners=False).argmax(1),
                    "F.interpolate+argmax", reps, bw, nbytes, target_pct=70.0)
    for dt in dtypes:
        x = torch.randn(1, 19, 128, 256, device=DEVICE).to(dt)
        nbytes = gc.tensor_bytes(x.shape, x.element_size()) + gc.tensor_bytes((1, 19, *size), x.element_size())
        compare(timer, rows, "resize_bilinear", f"1x19x128x256->1024x2048 {DTYPES[dt]}",
                lambda x=x: L.resize_bilinear(x, *size, False),
                lambda x=x: F.interpolate(x, size, mode="bilinear", align_corners=False), "F.interpolate", reps, bw,
                nbytes)
    img = torch.randint(0, 256, (1080, 1920, 3), dtype=torch.uint8, device=DEVICE)
    mean, std = (torch.tensor(v, device=DEVICE).view(1, 3, 1, 1) for v in (MEAN, STD))
    for dt in dtypes:
        def chain(dt: torch.dtype = dt) -> torch.Tensor:
            x = F.interpolate(img.permute(2, 0, 1)[None].float(), (512, 1024), mode="bilinear", align_corners=False)
            return ((x - mean) / std).to(dt)

        nbytes = img.numel() + gc.tensor_bytes((3, 512, 1024), torch.tensor([], dtype=dt).element_size())
        compare(timer, rows, "preprocess", f"1080x1920x3->512x1024 {DTYPES[dt]}",
                partial(L.preprocess, img, 512, 1024, MEAN, STD, False, False, dt), chain, "torch chain", reps, bw,
                nbytes)
    labels = torch.randint(0, 19, (1080, 1920), dtype=torch.uint8, device=DEVICE)
    palette = torch.randint(0, 256, (19, 3), dtype=torch.uint8, device=DEVICE)
    compare(timer, rows, "overlay", "1080x1920 K=19 uint8", lambda: L.overlay(img, labels, palette, 0.5),
            lambda: overlay_reference(img, labels, palette, 0.5), "torch arithmetic", reps, bw,
            2 * img.numel() + labels.numel())  # frame read, labels read, frame written

    def step(f: Callable[..., torch.Tensor], q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
             g: torch.Tensor) -> None:
        f(q, k, v).backward(g)
        q.grad = k.grad = v.grad = None

    compile_left = 0.0 if quick else 120.0  # seconds of torch.compile time this run may spend
    for (b, c, cq, h, w) in ((2, 512, 64, 97, 97), (1, 64, 8, 33, 65)):
        for dt in dtypes:
            t = [x.requires_grad_(i < 3) for i, x in enumerate(cca_inputs(b, c, cq, h, w, dt))]
            case = f"[{b},{c},{h},{w}] Cq={cq} fwd+bwd {DTYPES[dt]}"
            ours = partial(step, ops.criss_cross_attention, *t)
            ours_ms = compare(timer, rows, "criss_cross_attention", case, ours,
                              partial(step, ops.criss_cross_attention_reference, *t), "einsum reference", creps, bw,
                              target_x=3.0)
            if dt != torch.float32 or compile_left <= 0:
                continue
            try:
                compiled = torch.compile(ops.criss_cross_attention_reference, dynamic=False)
                t0 = time.perf_counter()
                step(compiled, *t)
                torch.cuda.synchronize()
                spent = time.perf_counter() - t0
                compile_left -= spent
                notes.append(f"torch.compile(einsum reference) for {case}: first call (compile) {spent:.1f} s")
                compare(timer, rows, "criss_cross_attention", case, ours, partial(step, compiled, *t),
                        "torch.compile(einsum)", creps, bw, target_x=3.0, ours_ms=ours_ms)
            except Exception as err:  # inductor missing or failing: the eager comparison still stands
                compile_left = 0.0
                notes.append(f"torch.compile(einsum reference) failed for {case}: {type(err).__name__}: {err}"[:300])


def environment() -> dict[str, Any]:
    """Device, versions and the commit of the tree that was measured."""
    p = torch.cuda.get_device_properties(torch.cuda.current_device())
    try:
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        git = f"{git}{' (uncommitted changes)' if dirty else ''}" if git else None
    except (OSError, subprocess.SubprocessError):
        git = None
    return {"device": p.name, "capability": f"{p.major}.{p.minor}", "sms": p.multi_processor_count,
            "memory_gib": p.total_memory / 2**30, "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32, "git": git}


def main(argv: Sequence[str] | None = None) -> int:
    """Check, time, write the report; 0 when every case passed (or nothing could run), 1 otherwise."""
    ap = argparse.ArgumentParser(description="Correctness and speed of engine._C.cuda against PyTorch on a GPU.")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_kernels"),
                    help="path prefix of the <out>.json and <out>.md reports (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="fewer shapes and samples, float32 timings only, no compile")
    args = ap.parse_args(argv)
    reason = unavailable_reason()
    if reason is not None:
        print(f"gpu_kernels: skipped, nothing written: {reason}")
        return 0
    from engine import _C

    started = time.perf_counter()
    torch.manual_seed(0)
    L, checks = Launchers(_C.cuda), []
    for check in (check_resize, check_preprocess, check_overlay, check_cca):
        check(L, checks, args.quick)
    failed = sum(not c["passed"] for c in checks)
    print(f"correctness: {len(checks) - failed}/{len(checks)} pass ({time.perf_counter() - started:.0f} s)", flush=True)
    copy_bytes = (256 if args.quick else 1024) << 20
    setup = {"warmup": 3 if args.quick else 10, "iters": 10 if args.quick else 50, "cca_warmup": 1 if args.quick else 3,
             "cca_iters": 5 if args.quick else 20, "copy_mib": copy_bytes / gc.MIB, "flush_mib": 256.0}
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    bw = None
    try:
        timer = Timer(256 << 20, DEVICE)
        src = torch.ones(copy_bytes, dtype=torch.uint8, device=DEVICE)
        copy = partial(torch.empty_like(src).copy_, src)
        bw = gc.copy_bandwidth_gbs(copy_bytes, timer.ms(copy, setup["warmup"], setup["iters"], flush=False))
        del src, copy
        print(f"device bandwidth (copy): {bw:.0f} GB/s", flush=True)
        run_timings(L, timer, rows, notes, bw, args.quick)
    except Exception as err:  # keep the correctness results and the rows measured so far
        notes.append(f"timing stopped early: {type(err).__name__}: {err}"[:300])
        print(f"timing stopped early: {err}", flush=True)
    report = {"command": shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv])),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "quick": args.quick,
              "environment": environment(), "device_bandwidth_gbs": bw, "timing_setup": setup,
              "all_pass": failed == 0, "correctness": checks, "timings": rows, "notes": notes,
              "wall_s": round(time.perf_counter() - started, 1)}
    json_path, md_path = gc.write_report(report, args.out)
    print(f"wrote {json_path} and {md_path} ({report['wall_s']} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
