"""``segrt bench`` rows and report: row names from a configuration, ratios, label agreement, markdown and PNG.

Row names say the backend and the options that change what is measured, e.g. ``segrt (onnxruntime)`` /
``bare onnxruntime`` (ONNX Runtime on the CPU, the names of every earlier report), ``segrt (torch, fp16, cuda graphs)``
/ ``bare torch (fp16, cuda graphs)``; an ``--also`` model adds its label: ``segrt (onnxruntime, model.int8.onnx)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.fileio import atomic_path, write_atomic

STAGES = ("pre", "infer", "post", "end_to_end")
MAIN, BARE, TORCH = "segrt (onnxruntime)", "bare onnxruntime", "torch eager"
TORCH_TARGET = 3.5  # the engine issue's target: torch eager fp32 / fastest segrt end to end


def row_tags(config: dict[str, Any]) -> list[str]:
    """What a row name says besides the backend: a CUDA device (not for TensorRT, which runs only there, nor with
    CUDA graphs, which imply it), a precision other than fp32, ``compiled``, ``cuda graphs``."""
    tags = []
    device = str(config.get("device") or "cpu")
    if device.startswith("cuda") and config.get("backend") != "tensorrt" and not config.get("cuda_graphs"):
        tags.append("cuda" if device in ("cuda", "cuda:0") else device)
    if config.get("precision") not in (None, "fp32"):
        tags.append(str(config["precision"]))
    if config.get("compile"):
        tags.append("compiled")
    if config.get("cuda_graphs"):
        tags.append("cuda graphs")
    return tags


def engine_rows(config: dict[str, Any], label: str | None = None) -> tuple[str, str]:
    """The (engine, bare network) row names of a configuration (``backend``, ``device``, ``precision``,
    ``compile``, ``cuda_graphs``), with an ``--also`` model's label last."""
    backend = str(config.get("backend", "onnxruntime"))
    tags = [*row_tags(config), *([label] if label else [])]
    bare = f"bare {backend}" + (f" ({', '.join(tags)})" if tags else "")
    return f"segrt ({', '.join([backend, *tags])})", bare


def also_rows(label: str, config: dict[str, Any] | None = None) -> tuple[str, str]:
    """The (engine, bare network) row names of an ``--also`` model (default: ONNX Runtime on the CPU)."""
    return engine_rows(config or {"backend": "onnxruntime"}, label)


def default_names(labels_also: list[str]) -> dict[str, Any]:
    """Row names of ONNX Runtime on the CPU for the main and the ``--also`` models (reports without names)."""
    return {"segrt": MAIN, "bare": BARE, "also": {a: list(also_rows(a)) for a in labels_also}}


def ratios(rows: dict[str, dict[str, dict[str, float]]], labels_also: list[str],
           names: dict[str, Any] | None = None) -> dict[str, float]:
    """Ratios of end-to-end medians: engine over bare network, torch eager over each engine row, and the main
    model over each ``--also`` model (its speed-up). ``names``: the row names (default: ONNX Runtime's)."""
    names = names or default_names(labels_also)
    e2e = {k: v["end_to_end"]["median"] for k, v in rows.items()}
    main, bare = names["segrt"], names["bare"]
    out: dict[str, float] = {}
    if main not in e2e:
        return out
    out["end_to_end / bare network"] = e2e[main] / e2e[bare]
    if TORCH in e2e:
        out["torch eager / segrt"] = e2e[TORCH] / e2e[main]
    for label in labels_also:
        row, other_bare = names["also"][label]
        out[f"end_to_end / bare network ({label})"] = e2e[row] / e2e[other_bare]
        out[f"segrt / segrt ({label})"] = e2e[main] / e2e[row]
        out[f"{bare} / {other_bare}"] = e2e[bare] / e2e[other_bare]
        if TORCH in e2e:
            out[f"torch eager / segrt ({label})"] = e2e[TORCH] / e2e[row]
    return out


def agreement(labels: dict[str, Any], labels_also: list[str],
              names: dict[str, Any] | None = None) -> dict[str, float]:
    """Share of pixels labelled alike: each ``--also`` model vs the main one, torch eager vs each engine row."""
    names = names or default_names(labels_also)
    main = names["segrt"]
    engines = [r for r in (main, *(names["also"][a][0] for a in labels_also)) if r in labels]
    pairs = [(r, main) for r in engines if r != main and main in labels]
    pairs += [(TORCH, r) for r in engines if TORCH in labels]
    return {f"{a} vs {b}": float((labels[a] == labels[b]).mean()) for a, b in pairs}


def describe(config: dict[str, Any]) -> str:
    """One configuration in words: ``torch on cuda:0, fp16, cuda graphs, 16 threads, network 512x1024``."""
    mode = f" {config['mode']}" if config.get("mode") else ""
    parts = [f"{config.get('backend', '?')}{mode} on {config.get('device', '?')}",
             str(config.get("precision") or "the file's precision")]
    if config.get("compile"):
        parts.append("compiled")
    if config.get("cuda_graphs"):
        parts.append("cuda graphs")
    if config.get("threads"):
        parts.append(f"{config['threads']} thread{'s' if config['threads'] != 1 else ''}")
    if config.get("network_shape"):
        parts.append("network {}x{}".format(*config["network_shape"]))
    return ", ".join(parts)


def markdown(result: dict) -> str:
    """The result as a markdown table of medians (p90, p99) per stage, then the ratios."""
    h, w = result["shape"]
    names = ", ".join(Path(m).name for m in (result["model"], *result.get("also", [])))
    lines = [f"# segrt bench: {names} at {h}x{w}", ""]
    if result.get("command"):
        lines += ["```", result["command"], "```", ""]
    settle = result.get("settle_s", 0.0)
    machine = result["machine"]
    versions = ", ".join(f"{k} {machine[k]}" for k in ("onnxruntime", "torch") if machine.get(k))
    gpu = f", GPU {machine['gpu']}" if machine.get("gpu") else ""
    main = result.get("row_names", {}).get("segrt", MAIN)
    shown = f" `{main}` is {Path(result['model']).name}." if main in result["results_ms"] else ""
    lines += [f"{result['runs']} interleaved runs after {result['warmup']} warm-up"
              f"{f' (each step {settle * 1e3:.0f} ms after the previous one)' if settle else ''}, "
              f"{result['threads']} threads, {machine['cores']} cores ({machine['cpu']}){gpu}"
              f"{', ' + versions if versions else ''}.{shown}", "",
              "| configuration | " + " | ".join(f"{s} ms (p90 / p99)" for s in STAGES) + " |",
              "|---|" + "---:|" * len(STAGES)]
    for row, stages in result["results_ms"].items():
        cells = [f"{stages[s]['median']:.2f} ({stages[s]['p90']:.2f} / {stages[s]['p99']:.2f})" if s in stages
                 else "" for s in STAGES]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines.append("")
    listed: list[dict] = []  # a bare row runs its engine row's configuration: said once
    for row, config in result.get("configs", {}).items():
        if config not in listed:
            listed.append(config)
            lines.append(f"- `{row}`: {describe(config)}")
    lines += [f"- {k}: **{v:.3f}x**" for k, v in result["ratios"].items()]
    if "label_agreement" in result:
        lines += [f"- pixels labelled alike, {k}: {100 * v:.3f}%" for k, v in result["label_agreement"].items()]
    elif "label_agreement_torch_vs_ours" in result:  # reports written before --also
        lines.append(f"- labels equal to torch eager's: {100 * result['label_agreement_torch_vs_ours']:.3f}%")
    best = {k: v for k, v in result["ratios"].items() if k.startswith("torch eager / segrt")}
    if best:
        k = max(best, key=best.get)
        verdict = "met" if best[k] >= TORCH_TARGET else "not met"
        lines.append(f"- target torch eager fp32 / segrt >= {TORCH_TARGET}x: {verdict} ({k}: {best[k]:.2f}x)")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """Stacked bars of median pre/infer/post per configuration, with the end-to-end p90 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(result["results_ms"].items())
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.7 * len(rows)))
    colours = {"pre": "#4c72b0", "infer": "#dd8452", "post": "#55a868"}
    for i, (_, stages) in enumerate(rows):
        left = 0.0
        for s in ("pre", "infer", "post"):
            if s in stages:
                v = stages[s]["median"]
                ax.barh(i, v, left=left, color=colours[s], label=s if i == 0 or s != "infer" else None)
                left += v
        ax.plot(stages["end_to_end"]["p90"], i, "k|", markersize=18)
    ax.set_yticks(range(len(rows)), [r for r, _ in rows])
    ax.invert_yaxis()
    h, w = result["shape"]
    ax.set_xlabel("latency, ms (bars: medians per stage; |: end-to-end p90)")
    names_ = ", ".join(Path(m).name for m in (result["model"], *result.get("also", [])))
    ax.set_title(f"{names_} at {h}x{w}")
    handles, names = ax.get_legend_handles_labels()
    uniq = dict(zip(names, handles))
    ax.legend(uniq.values(), uniq.keys(), loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png", bbox_inches="tight")
    plt.close(fig)


def write_report(result: dict, out_dir: Path, name: str) -> list[str]:
    """Write ``name``.json/.md/.png atomically under ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md", out_dir / f"{name}.png"]
    for path, text in ((paths[0], json.dumps(result, indent=2) + "\n"), (paths[1], markdown(result))):
        write_atomic(path, text)
    plot(result, paths[2])
    return [str(p) for p in paths]
