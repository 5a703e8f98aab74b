"""Atomic writes: all or nothing, and the result gets ordinary permissions (not mkstemp's 0600)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from engine import fileio


def test_atomic_write_has_the_umask_permissions(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(fileio, "_UMASK", 0o022)
    out = fileio.write_atomic(tmp_path / "sub" / "a.json", "{}\n")
    assert out.read_text() == "{}\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # not mkstemp's 0600
    assert list(out.parent.iterdir()) == [out]  # no temporary file left behind
    out.chmod(0o600)  # a file replaced keeps its mode
    fileio.write_atomic(out, "[]\n")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and out.read_text() == "[]\n"


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = fileio.write_atomic(tmp_path / "m.onnx", b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with fileio.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]
