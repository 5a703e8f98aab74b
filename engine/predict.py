"""``segrt predict``: images, folders or globs -> palette-indexed label PNGs, overlays and score maps.

Outputs mirror the inputs' layout (see :func:`plan_outputs`): an image at ``REL`` (its path relative to the folder
given, to the non-magic base of the glob given, or just its name when named itself) gets its labels at
``OUT/REL.png`` (``REL`` without its suffix), its overlay at ``OUT/overlays/REL.jpg`` (or ``.png``) and its score
map at ``OUT/scores/REL.npy``. Images whose ``REL`` differ only by suffix (``a.jpg``, ``a.png``) keep it
(``OUT/a.jpg.png``, ``OUT/a.png.png``). Any two outputs that would still share a path, or an output that would
overwrite an input, are a ValueError before any image is read.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import numpy as np

from engine.fileio import atomic_path
from engine.predictor import Predictor

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".gif")
OVERLAYS, SCORES = "overlays", "scores"  # sibling folders of the label PNGs in OUT


@dataclass
class PredictReport:
    """Which inputs were written and which failed (with the reason)."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every input was processed."""
        return not self.failed


def _glob_base(pattern: str) -> Path:
    """The leading folders of a glob pattern that hold no wildcard (``imgs/**/*.png`` -> ``imgs``)."""
    parts = Path(pattern).parts
    fixed = parts[: next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))]
    return Path(*fixed) if fixed else Path(".")


def _relative(f: Path, base: Path) -> PurePath:
    rel = PurePath(os.path.relpath(f, base))
    return rel if rel.parts and ".." not in rel.parts and not rel.is_absolute() else PurePath(f.name)


def _expand(specs: Iterable[str | Path], skip: Path | None = None
            ) -> tuple[list[tuple[Path, PurePath]], list[tuple[str, str]]]:
    """(file, path relative to its input) for every image of ``specs``, and the specs that matched nothing.
    Folder walks skip the folder ``skip`` when it lies inside theirs (the output folder: earlier outputs are
    not inputs)."""
    found: list[tuple[Path, PurePath]] = []
    missing: list[tuple[str, str]] = []
    for spec in specs:
        text = str(spec)
        p = Path(text)
        if p.is_dir():
            inner = skip if skip is not None and skip != p.resolve() and skip.is_relative_to(p.resolve()) else None
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                           and not (inner is not None and f.resolve().is_relative_to(inner)))
            found += [(f, f.relative_to(p)) for f in files]
            if not files:
                missing.append((text, "folder holds no images"))
        elif p.is_file():
            found.append((p, PurePath(p.name)))  # named explicitly: try it whatever its suffix
        elif glob.has_magic(text):
            base = _glob_base(text)
            files = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file()
                           and not (skip is not None and Path(m).resolve().is_relative_to(skip)))
            found += [(f, _relative(f, base)) for f in files]
            if not files:
                missing.append((text, "no file matches the pattern"))
        else:
            missing.append((text, "no such file or folder"))
    # a file reached through several inputs is processed once, at the deepest of its relative paths (ties: the
    # first in sort order), so where it goes does not depend on the order of the inputs
    best: dict[Path, tuple[Path, PurePath]] = {}
    order: list[Path] = []
    for f, rel in found:
        key = f.resolve()
        if key not in best:
            order.append(key)
            best[key] = (f, rel)
        elif (-len(rel.parts), str(rel)) < (-len(best[key][1].parts), str(best[key][1])):
            best[key] = (f, rel)
    return [best[k] for k in order], missing


def collect_inputs(specs: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, folders (recursively, image suffixes only) and glob patterns; also return what was missing."""
    found, missing = _expand(specs)
    return [f for f, _ in found], missing


@dataclass(frozen=True)
class OutputPlan:
    """Where the outputs of one input image go (``overlay`` / ``scores`` None when not asked for)."""

    source: Path
    labels: Path
    overlay: Path | None = None
    scores: Path | None = None


def plan_outputs(specs: Iterable[str | Path], out_dir: str | Path, *, overlay_ext: str | None = None,
                 scores: bool = False) -> tuple[list[OutputPlan], list[tuple[str, str]]]:
    """The output paths of every input image (see the module docstring for the layout), and the specs that matched
    nothing. ValueError, naming both inputs, when two outputs would share a path or an output is an input."""
    out = Path(out_dir)
    found, missing = _expand(specs, skip=out.resolve() if out.is_dir() else None)
    stems: dict[PurePath, list[PurePath]] = {}
    for _, rel in found:
        stems.setdefault(rel.with_suffix(""), []).append(rel)
    plans = []
    for f, rel in found:
        stem = rel if len({r.suffix for r in stems[rel.with_suffix("")]}) > 1 else rel.with_suffix("")
        plans.append(OutputPlan(f, out / f"{stem}.png",
                                out / OVERLAYS / f"{stem}.{overlay_ext}" if overlay_ext else None,
                                out / SCORES / f"{stem}.npy" if scores else None))
    inputs = {pl.source.resolve(): pl.source for pl in plans}
    owner: dict[Path, Path] = {}
    for pl in plans:
        for target in (pl.labels, pl.overlay, pl.scores):
            if target is None:
                continue
            key = target.resolve()
            if key in inputs:
                what = "that input itself" if inputs[key] == pl.source else f"the input {inputs[key]}"
                raise ValueError(f"{target}: the outputs of {pl.source} would overwrite {what}; choose another "
                                 "output folder")
            if key in owner:
                raise ValueError(f"{owner[key]} and {pl.source} would both be written to {target}; rename one, or "
                                 "give their common folder as the input (outputs mirror its layout)")
            owner[key] = pl.source
    return plans, missing


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB (EXIF orientation applied); ValueError naming the file otherwise."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                a = np.asarray(im, dtype=np.float64)
                a = (a * (255.0 / max(a.max(), 1.0))).astype(np.uint8)
                return np.ascontiguousarray(np.repeat(a[..., None], 3, axis=2))
            return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None


def _atomic_save(path: Path, save: object) -> None:
    with atomic_path(path) as tmp:
        save(tmp)  # type: ignore[operator]


def _save_npy(path: Path, a: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, a)


def save_label_png(path: Path, labels: np.ndarray, palette: np.ndarray) -> None:
    """Palette-indexed PNG (mode 'P') of class ids; 16-bit grey PNG when there are more than 256 classes."""
    from PIL import Image

    if labels.dtype == np.uint8:
        im = Image.frombytes("P", labels.shape[::-1], np.ascontiguousarray(labels).tobytes())
        flat = np.zeros((256, 3), np.uint8)
        flat[: min(len(palette), 256)] = palette[:256]
        im.putpalette(flat.reshape(-1).tolist())
    else:
        im = Image.fromarray(labels.astype(np.uint16))
    _atomic_save(path, lambda t: im.save(t, format="PNG"))


def predict_files(predictor: Predictor, inputs: Sequence[str | Path], out_dir: str | Path, *,
                  overlay: bool = False, overlay_format: str = "jpg", scores: bool = False, batch: int = 1,
                  alpha: float = 0.5, progress: bool = True) -> PredictReport:
    """Segment every input image into ``OUT/REL.png``, with ``overlay`` also ``OUT/overlays/REL.jpg`` (or ``.png``),
    with ``scores`` also ``OUT/scores/REL.npy`` (the winning logit, float16); ``REL`` mirrors the input's path
    (module docstring, :func:`plan_outputs`). Clashing outputs are a ValueError before any image is read;
    unreadable inputs are skipped and listed in the report, and the run goes on with the others.
    """
    from PIL import Image
    from tqdm import tqdm

    if overlay_format.lower() not in ("jpg", "jpeg", "png"):
        raise ValueError(f"overlay format must be jpg or png, got {overlay_format!r}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} exists and is not a folder")
    fmt = "PNG" if overlay_format.lower() == "png" else "JPEG"
    plans, report_missing = plan_outputs(inputs, out, overlay_ext=("png" if fmt == "PNG" else "jpg") if overlay
                                         else None, scores=scores)
    report = PredictReport(failed=list(report_missing))
    out.mkdir(parents=True, exist_ok=True)
    palette = predictor.palette
    bar = tqdm(total=len(plans), unit="img", disable=not progress, file=sys.stderr)
    for s in range(0, len(plans), batch):
        chunk: list[tuple[OutputPlan, np.ndarray]] = []
        for plan in plans[s:s + batch]:
            try:
                chunk.append((plan, load_image(plan.source)))
            except (ValueError, FileNotFoundError) as e:
                report.failed.append((str(plan.source), str(e)))
                bar.update(1)
        if not chunk:
            continue
        results = predictor.run_batch([c[1] for c in chunk], return_scores=scores)
        for (plan, img), res in zip(chunk, results):
            labels, score = res if scores else (res, None)
            try:
                save_label_png(plan.labels, labels, palette)
                if plan.overlay is not None:
                    shown = Image.fromarray(predictor.overlay(img, labels, alpha))
                    _atomic_save(plan.overlay, lambda t, im=shown: im.save(t, format=fmt, quality=92))
                if plan.scores is not None and score is not None:
                    _atomic_save(plan.scores, lambda t, a=score: _save_npy(t, a.astype(np.float16)))
            except OSError as e:
                report.failed.append((str(plan.source), f"cannot write output: {e}"))
            else:
                report.written.append(plan.labels)
            bar.update(1)
    bar.close()
    return report
