"""``segrt predict``: images, folders or globs -> palette-indexed label PNGs, overlays and score maps."""

from __future__ import annotations

import glob
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.fileio import atomic_path
from engine.predictor import Predictor

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".gif")


@dataclass
class PredictReport:
    """Which inputs were written and which failed (with the reason)."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every input was processed."""
        return not self.failed


def collect_inputs(specs: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, folders (recursively, image suffixes only) and glob patterns; also return what was missing."""
    files: list[Path] = []
    missing: list[tuple[str, str]] = []
    for spec in specs:
        text = str(spec)
        p = Path(text)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            files += found
            if not found:
                missing.append((text, "folder holds no images"))
        elif p.is_file():
            files.append(p)  # named explicitly: try it whatever its suffix
        elif glob.has_magic(text):
            found = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
            files += found
            if not found:
                missing.append((text, "no file matches the pattern"))
        else:
            missing.append((text, "no such file or folder"))
    seen: set[Path] = set()
    unique = [f for f in files if not (f.resolve() in seen or seen.add(f.resolve()))]  # type: ignore[func-returns-value]
    return unique, missing


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


def _out_names(files: Sequence[Path]) -> list[str]:
    """One output stem per input, made unique by a numeric suffix where two inputs share a name."""
    used: dict[str, int] = {}
    names = []
    for f in files:
        n = used.get(f.stem, 0)
        used[f.stem] = n + 1
        names.append(f.stem if n == 0 else f"{f.stem}_{n}")
    return names


def predict_files(predictor: Predictor, inputs: Sequence[str | Path], out_dir: str | Path, *,
                  overlay: bool = False, overlay_format: str = "jpg", scores: bool = False, batch: int = 1,
                  alpha: float = 0.5, progress: bool = True) -> PredictReport:
    """Segment every input image and write ``OUT/<name>.png`` (+ ``_overlay.jpg``, ``_scores.npy`` float16).

    Unreadable inputs are skipped and listed in the report; the run goes on with the others.
    """
    from PIL import Image
    from tqdm import tqdm

    if overlay_format.lower() not in ("jpg", "jpeg", "png"):
        raise ValueError(f"overlay format must be jpg or png, got {overlay_format!r}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    files, report_missing = collect_inputs(inputs)
    report = PredictReport(failed=list(report_missing))
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    palette = predictor.palette
    names = _out_names(files)
    bar = tqdm(total=len(files), unit="img", disable=not progress, file=sys.stderr)
    for s in range(0, len(files), batch):
        chunk: list[tuple[Path, str, np.ndarray]] = []
        for f, name in zip(files[s:s + batch], names[s:s + batch]):
            try:
                chunk.append((f, name, load_image(f)))
            except (ValueError, FileNotFoundError) as e:
                report.failed.append((str(f), str(e)))
                bar.update(1)
        if not chunk:
            continue
        results = predictor.run_batch([c[2] for c in chunk], return_scores=scores)
        for (f, name, img), res in zip(chunk, results):
            labels, score = res if scores else (res, None)
            target = out / f"{name}.png"
            try:
                save_label_png(target, labels, palette)
                if overlay:
                    shown = Image.fromarray(predictor.overlay(img, labels, alpha))
                    fmt = "PNG" if overlay_format.lower() == "png" else "JPEG"
                    ov = out / f"{name}_overlay.{'png' if fmt == 'PNG' else 'jpg'}"
                    _atomic_save(ov, lambda t, im=shown, fmt=fmt: im.save(t, format=fmt, quality=92))
                if score is not None:
                    sp = out / f"{name}_scores.npy"
                    _atomic_save(sp, lambda t, a=score: _save_npy(t, a.astype(np.float16)))
            except OSError as e:
                report.failed.append((str(f), f"cannot write output: {e}"))
            else:
                report.written.append(target)
            bar.update(1)
    bar.close()
    return report
