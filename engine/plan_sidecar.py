"""The sidecar ``<plan>.json`` that ``segrt build`` writes beside a TensorRT plan and the backend reads back: the
TensorRT version, GPU, precision, shape profile, tensor names, the model's ``segrt.*`` metadata, and the plan's size
and SHA-256 (so a plan replaced without its sidecar is caught)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from engine.fileio import write_atomic

SIDECAR_FORMAT = "segrt-plan"
SIDECAR_VERSION = 1


def sidecar_path(plan_path: str | Path) -> Path:
    """``model.plan`` -> ``model.plan.json``."""
    return Path(str(plan_path) + ".json")


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_sidecar(plan_path: str | Path, info: dict[str, Any]) -> Path:
    """Write ``<plan>.json`` atomically: ``info`` plus format tag, plan size and SHA-256 of the written plan."""
    plan_path = Path(plan_path)
    doc = {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, **info,
           "plan_bytes": plan_path.stat().st_size, "plan_sha256": sha256_file(plan_path)}
    return write_atomic(sidecar_path(plan_path), (json.dumps(doc, indent=2) + "\n").encode())


def read_sidecar(plan_path: str | Path, verify: bool = True) -> dict[str, Any]:
    """Read ``<plan>.json``; errors name the file: missing, not JSON, not ours, or not matching the plan."""
    plan_path, path = Path(plan_path), sidecar_path(plan_path)
    if not path.is_file():
        raise FileNotFoundError(f"TensorRT plan metadata not found: {path} (written by `segrt build` next to "
                                f"{plan_path.name}; rebuild the plan)")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != SIDECAR_FORMAT:
        raise ValueError(f"{path}: not a segrt plan metadata file (format != {SIDECAR_FORMAT!r})")
    for key in ("metadata", "profile", "input", "output", "tensorrt"):
        if key not in doc:
            raise ValueError(f"{path}: missing entry {key!r}")
    if verify and plan_path.is_file():
        if doc.get("plan_bytes") != plan_path.stat().st_size or doc.get("plan_sha256") != sha256_file(plan_path):
            raise ValueError(f"{path} does not describe {plan_path} (size / SHA-256 differ): the plan was replaced "
                             "without its metadata; rebuild it with `segrt build`")
    return doc


__all__ = ["SIDECAR_FORMAT", "SIDECAR_VERSION", "read_sidecar", "sha256_file", "sidecar_path", "write_sidecar"]
