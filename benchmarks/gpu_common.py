"""Helpers of ``benchmarks/gpu_kernels.py``.

Pure ones (no GPU needed, unit-tested): bandwidth arithmetic, markdown tables, the report and its atomic writes. Device
ones: :class:`Launchers` (tensor-level calls of ``engine._C.cuda``: contiguous tensors, ``data_ptr()``, the current
stream), :class:`Timer` (CUDA events) and :func:`peak_mib`. Units: milliseconds, bytes, GB/s (1e9 bytes per second).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from engine.fileio import write_atomic

GB = 1e9
DTYPES = {torch.float32: "float32", torch.float16: "float16"}  # the dtypes of the CUDA kernels, by name
MIB = float(1 << 20)


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence of numbers."""
    if not values:
        raise ValueError("median: no values")
    return float(statistics.median(values))


def tensor_bytes(shape: Sequence[int], itemsize: int) -> int:
    """Bytes of a dense tensor of ``shape`` with elements of ``itemsize`` bytes."""
    return math.prod(int(s) for s in shape) * int(itemsize)


def bandwidth_gbs(nbytes: float, ms: float) -> float:
    """Achieved bandwidth in GB/s of moving ``nbytes`` (read + written) in ``ms`` milliseconds."""
    if ms <= 0:
        raise ValueError(f"bandwidth_gbs: time must be positive, got {ms} ms")
    return nbytes / (ms * 1e-3) / GB


def copy_bandwidth_gbs(copied_bytes: float, ms: float) -> float:
    """Bandwidth of a device-to-device copy of ``copied_bytes``: every byte is read once and written once."""
    return bandwidth_gbs(2.0 * copied_bytes, ms)


def percent_of(achieved: float, peak: float) -> float:
    """``achieved`` as a percentage of ``peak``."""
    if peak <= 0:
        raise ValueError(f"percent_of: peak must be positive, got {peak}")
    return 100.0 * achieved / peak


def speedup(reference_ms: float, ours_ms: float) -> float:
    """How many times faster ours is than the reference (> 1: ours is faster)."""
    if ours_ms <= 0:
        raise ValueError(f"speedup: time must be positive, got {ours_ms} ms")
    return reference_ms / ours_ms


def fmt(x: Any) -> str:
    """One table cell: ``-`` for None, yes/no for booleans, 4 significant digits for floats, ``|`` escaped."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            return str(x)
        return f"{x:.4g}"
    return str(x).replace("|", "\\|")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; every row must have one cell per header."""
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"markdown_table: row has {len(row)} cells, expected {len(headers)}: {row!r}")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def out_paths(prefix: str | Path) -> tuple[Path, Path]:
    """``(prefix.json, prefix.md)``; a ``.json`` or ``.md`` suffix on ``prefix`` is dropped first."""
    p = Path(prefix)
    if p.suffix in (".json", ".md"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".json"), p.with_name(p.name + ".md")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (engine.fileio)."""
    write_atomic(path, text)


CORRECTNESS_COLUMNS = ("kernel", "case", "dtype", "align_corners", "max_err", "tol", "passed", "note")
TIMING_COLUMNS = ("kernel", "case", "ours_ms", "reference", "ref_ms", "speedup", "ours_gbs", "pct_of_measured",
                  "target", "target_met", "ours_peak_mib", "ref_peak_mib")
TIMING_HEADERS = ("kernel", "case", "ours (ms)", "reference", "ref (ms)", "speedup", "ours GB/s",
                  "% of measured BW", "target", "met", "ours peak MiB", "ref peak MiB")


def render_markdown(report: dict[str, Any]) -> str:
    """The markdown twin of the JSON report written by ``benchmarks/gpu_kernels.py``."""
    env, t = report["environment"], report["timing_setup"]
    checks = report["correctness"]
    passed = sum(bool(c["passed"]) for c in checks)
    parts = [
        f"# CUDA kernels vs PyTorch on {env['device']}",
        f"Command: `{report['command']}`  \nDate: {report['date']}; git {env.get('git') or '-'}; "
        f"mode: {'quick' if report['quick'] else 'full'}",
        f"Device: {env['device']} (compute capability {env['capability']}, {env['sms']} SMs, "
        f"{fmt(env['memory_gib'])} GiB); torch {env['torch']}, CUDA {env['cuda']}, Python {env['python']}; "
        f"TF32 matmul {env['tf32_matmul']}, TF32 cuDNN {env['tf32_cudnn']}.",
        f"Measured device bandwidth: **{fmt(report['device_bandwidth_gbs'])} GB/s** (torch device-to-device copy of "
        f"{fmt(t['copy_mib'])} MiB; bytes read + written / median time).",
        f"## Correctness: {passed}/{len(checks)} pass",
        "`rel` errors are max \\|ours - reference\\| / max(1, max \\|reference\\|), `abs` errors max \\|ours - "
        "reference\\|. resize_argmax labels: the error is the largest logit gap (reference max minus the reference "
        "logit of our label) at mismatching pixels, relative like `rel`, so only exact ties (gap ~ 0) may differ.",
        markdown_table(CORRECTNESS_COLUMNS, [[c[k] for k in CORRECTNESS_COLUMNS] for c in checks]),
        "## Timing",
        f"CUDA events on the current stream, median of {t['iters']} samples after {t['warmup']} warm-up calls "
        f"(criss-cross attention: {t['cca_iters']} after {t['cca_warmup']}); the L2 cache is flushed "
        f"({fmt(t['flush_mib'])} MiB write) before each sample. Bandwidth = compulsory bytes (inputs read once + "
        "outputs written once) / time. Speedup = reference time / our time. Peak = growth of "
        "torch.cuda.max_memory_allocated over one call (outputs included).",
        markdown_table(TIMING_HEADERS, [[r.get(k) for k in TIMING_COLUMNS] for r in report["timings"]]),
    ]
    if report.get("notes"):
        parts += ["## Notes", "\n".join(f"- {n}" for n in report["notes"])]
    return "\n\n".join(parts) + "\n"


def write_report(report: dict[str, Any], prefix: str | Path) -> tuple[Path, Path]:
    """Write ``prefix.json`` and ``prefix.md`` atomically; returns their paths."""
    json_path, md_path = out_paths(prefix)
    atomic_write_text(json_path, json.dumps(report, indent=2, sort_keys=False, default=str) + "\n")
    atomic_write_text(md_path, render_markdown(report))
    return json_path, md_path


# ------------------------------------------------------------------------------------------------ device helpers
def _ptr(t: torch.Tensor) -> int:
    if not t.is_contiguous():
        raise ValueError(f"internal: a {tuple(t.shape)} tensor passed to a launcher is not contiguous")
    return t.data_ptr()


class Launchers:
    """Tensor-level calls of ``engine._C.cuda``: contiguous tensors, ``data_ptr()`` and the current CUDA stream."""

    def __init__(self, cu: Any) -> None:
        self.cu = cu

    @staticmethod
    def stream() -> int:
        """The handle of the current CUDA stream (``cudaStream_t`` as an int; 0 = legacy default)."""
        return torch.cuda.current_stream().cuda_stream

    def resize_bilinear(self, x: torch.Tensor, oh: int, ow: int, ac: bool) -> torch.Tensor:
        """``[N, C, h, w]`` float32/float16 -> ``[N, C, oh, ow]``."""
        x = x.contiguous()
        n, c, h, w = x.shape
        out = torch.empty((n, c, oh, ow), dtype=x.dtype, device=x.device)
        self.cu.resize_bilinear(x_ptr=_ptr(x), N=n, C=c, h=h, w=w, out_ptr=_ptr(out), out_h=oh, out_w=ow,
                                align_corners=ac, dtype=DTYPES[x.dtype], stream=self.stream())
        return out

    def resize_argmax(self, x: torch.Tensor, oh: int, ow: int, ac: bool,
                      scores: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Labels ``[B, oh, ow]`` (uint8 if C <= 255 else int32) and, with ``scores``, the winning logit (float32)."""
        x = x.contiguous()
        b, c, h, w = x.shape
        labels = torch.empty((b, oh, ow), dtype=torch.uint8 if c <= 255 else torch.int32, device=x.device)
        sc = torch.empty((b, oh, ow), dtype=torch.float32, device=x.device) if scores else None
        self.cu.resize_argmax(logits_ptr=_ptr(x), B=b, C=c, h=h, w=w, out_ptr=_ptr(labels), out_h=oh, out_w=ow,
                              align_corners=ac, stream=self.stream(), scores_ptr=0 if sc is None else _ptr(sc),
                              dtype=DTYPES[x.dtype])
        return labels, sc

    def preprocess(self, img: torch.Tensor, oh: int, ow: int, mean: Sequence[float], std: Sequence[float], bgr: bool,
                   ac: bool, dtype: torch.dtype) -> torch.Tensor:
        """uint8 ``[h, w, 3]`` -> ``[1, 3, oh, ow]`` of ``dtype``: resize, BGR->RGB if ``bgr``, (x - mean) / std."""
        img = img.contiguous()
        out = torch.empty((1, 3, oh, ow), dtype=dtype, device=img.device)
        self.cu.preprocess(img_ptr=_ptr(img), h=img.shape[0], w=img.shape[1], out_ptr=_ptr(out), out_h=oh, out_w=ow,
                           mean=list(mean), std=list(std), bgr=bgr, align_corners=ac, out_dtype=DTYPES[dtype],
                           stream=self.stream())
        return out

    def overlay(self, frame: torch.Tensor, labels: torch.Tensor, palette: torch.Tensor, alpha: float) -> torch.Tensor:
        """Blend ``palette[labels]`` (uint8/int32 labels, uint8 ``[K, 3]`` palette) over a uint8 ``[h, w, 3]`` frame."""
        frame, labels, palette = frame.contiguous(), labels.contiguous(), palette.contiguous()
        out = torch.empty_like(frame)
        self.cu.overlay(frame_ptr=_ptr(frame), labels_ptr=_ptr(labels), label_dtype=str(labels.dtype)[6:],
                        h=frame.shape[0], w=frame.shape[1], palette_ptr=_ptr(palette), K=palette.shape[0],
                        alpha=alpha, out_ptr=_ptr(out), stream=self.stream())
        return out

    def cca_forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Criss-cross attention ``(out [B, C, H, W], lse [B, H, W] float32)``."""
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        (b, cq, h, w), c = q.shape, v.shape[1]
        out = torch.empty_like(v)
        lse = torch.empty((b, h, w), dtype=torch.float32, device=q.device)
        self.cu.criss_cross_attention_forward(q_ptr=_ptr(q), k_ptr=_ptr(k), v_ptr=_ptr(v), out_ptr=_ptr(out),
                                              lse_ptr=_ptr(lse), B=b, Cq=cq, C=c, H=h, W=w, dtype=DTYPES[q.dtype],
                                              stream=self.stream())
        return out, lse

    def cca_backward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, g: torch.Tensor,
                     lse: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(dq, dk, dv)``; ``lse=None`` makes the kernel recompute it."""
        q, k, v, out, g = (t.contiguous() for t in (q, k, v, out, g))
        (b, cq, h, w), c = q.shape, v.shape[1]
        gq, gk, gv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        ws = torch.empty((2, b, h, w), dtype=torch.float32, device=q.device)
        self.cu.criss_cross_attention_backward(
            q_ptr=_ptr(q), k_ptr=_ptr(k), v_ptr=_ptr(v), out_ptr=_ptr(out), lse_ptr=0 if lse is None else _ptr(lse),
            grad_out_ptr=_ptr(g), gq_ptr=_ptr(gq), gk_ptr=_ptr(gk), gv_ptr=_ptr(gv), workspace_ptr=_ptr(ws), B=b,
            Cq=cq, C=c, H=h, W=w, dtype=DTYPES[q.dtype], stream=self.stream())
        return gq, gk, gv


class Timer:
    """Median CUDA-event time of a callable; the L2 cache is flushed (a large write) before every sample."""

    def __init__(self, flush_bytes: int, device: str = "cuda") -> None:
        self.flush = torch.empty(flush_bytes, dtype=torch.uint8, device=device)

    def ms(self, fn: Callable[[], Any], warmup: int, iters: int, flush: bool = True) -> float:
        """Median milliseconds of ``fn`` over ``iters`` samples after ``warmup`` calls."""
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
        for start, end in events:
            if flush:
                self.flush.zero_()
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        return median([s.elapsed_time(e) for s, e in events])


def peak_mib(fn: Callable[[], Any]) -> float:
    """Growth of torch.cuda.max_memory_allocated over one call of ``fn`` (its outputs included)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / MIB
