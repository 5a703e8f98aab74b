"""The built-in synthetic street dataset: scenes, an on-disk dataset in the custom folder format, a video.

Everything is deterministic given the seed. Images are rendered by :mod:`training.data.scene` from a
layout drawn by :mod:`training.data.layout`; labels come from the same material image as the colours.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from training.data.layout import make_layout
from training.data.scene import CLASSES, PALETTE, make_noise, render, render_background

__all__ = ["CLASSES", "PALETTE", "render_scene", "render_video_frames", "generate_dataset", "generate_video"]

IGNORE_INDEX = 255
FORMAT_VERSION = 1  # bump when the renderer changes, so stale datasets are regenerated


def _check_size(height: int, width: int) -> None:
    if int(height) != height or int(width) != width or height < 32 or width < 32:
        raise ValueError(f"image size must be integers >= 32, got height={height} width={width}")


def render_scene(rng: np.random.Generator, height: int = 256, width: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """One random street scene: (RGB uint8 HxWx3, class ids uint8 HxW), drawn from ``rng``."""
    _check_size(height, width)
    lay = make_layout(rng, height, width)
    return render(lay, render_background(lay), lay.props, make_noise(lay))


def render_video_frames(n_frames: int = 120, height: int = 256, width: int = 512, fps: int = 15,
                        seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Frames of one street with traffic and pedestrians moving smoothly: yields (RGB, labels)."""
    _check_size(height, width)
    if n_frames < 1 or fps < 1:
        raise ValueError(f"n_frames and fps must be >= 1, got n_frames={n_frames} fps={fps}")
    lay = make_layout(np.random.default_rng(seed), height, width, duration=n_frames / fps)
    background, noise = render_background(lay), make_noise(lay)
    for i in range(n_frames):
        t = i / fps
        yield render(lay, background, [p.at(t) for p in lay.props], noise)


def _image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Each image has its own stream, so a split does not depend on the size of the other."""
    return np.random.default_rng([seed, 0 if split == "train" else 1, index])


def _manifest(n_train: int, n_val: int, height: int, width: int, seed: int, image_format: str) -> dict:
    return {"generator": "segrt.synthetic", "version": FORMAT_VERSION, "seed": seed, "n_train": n_train,
            "n_val": n_val, "height": height, "width": width, "image_format": image_format}


def _is_complete(root: Path, manifest: dict) -> bool:
    """True when ``root`` holds a finished dataset written with the same manifest."""
    try:
        if json.loads((root / "manifest.json").read_text()) != manifest:
            return False
        counts = {"train": manifest["n_train"], "val": manifest["n_val"]}
        return all(len(os.listdir(root / kind / split)) == n
                   for kind in ("images", "masks") for split, n in counts.items())
    except (OSError, ValueError):
        return False


def generate_dataset(root: str | Path, n_train: int = 400, n_val: int = 100, height: int = 256, width: int = 512,
                     seed: int = 0, *, image_format: str = "jpg") -> Path:
    """Write the synthetic dataset in the custom folder format under ``root`` and return ``root``.

    Layout: ``images/{train,val}/NNNNN.jpg`` (JPEG quality 95 4:4:4, or ``.png``), ``masks/{train,val}/NNNNN.png``
    (single-channel class ids), ``classes.yaml`` and ``manifest.json``. Written into a temporary directory
    beside ``root`` and renamed into place; an existing complete dataset with the same manifest is reused.
    """
    if int(n_train) != n_train or n_train < 1:
        raise ValueError(f"n_train must be an integer >= 1, got {n_train!r}")
    if int(n_val) != n_val or n_val < 0:
        raise ValueError(f"n_val must be an integer >= 0, got {n_val!r}")
    _check_size(height, width)
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    root = Path(root)
    manifest = _manifest(int(n_train), int(n_val), int(height), int(width), int(seed), image_format)
    if _is_complete(root, manifest):
        return root
    if root.exists() and (not root.is_dir() or (not (root / "manifest.json").is_file() and any(root.iterdir()))):
        raise FileExistsError(f"{root} exists and is not a synthetic dataset (no manifest.json); not overwriting it")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        for split, n in (("train", n_train), ("val", n_val)):
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "masks" / split).mkdir(parents=True)
            for i in range(n):
                img, labels = render_scene(_image_rng(seed, split, i), height, width)
                name = f"{i:05d}"
                if image_format == "jpg":
                    Image.fromarray(img).save(tmp / "images" / split / f"{name}.jpg", quality=95, subsampling=0)
                else:
                    Image.fromarray(img).save(tmp / "images" / split / f"{name}.png")
                Image.fromarray(labels, mode="L").save(tmp / "masks" / split / f"{name}.png")
        classes = {"classes": list(CLASSES), "palette": [list(c) for c in PALETTE], "ignore_index": IGNORE_INDEX}
        (tmp / "classes.yaml").write_text(yaml.safe_dump(classes, sort_keys=False, default_flow_style=None))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if not _is_complete(root, manifest):  # another process may have finished the same dataset meanwhile
            _swap_into_place(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _swap_into_place(tmp: Path, root: Path) -> None:
    """Rename ``tmp`` to ``root``, moving a stale ``root`` aside first."""
    old = None
    if root.exists():
        old = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(root, old)
    os.replace(tmp, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _video_codec() -> str:
    import av

    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except ValueError:  # av.codec.codec.UnknownCodecError: FFmpeg was built without x264
        return "mpeg4"


def generate_video(path: str | Path, n_frames: int = 120, height: int = 256, width: int = 512, fps: int = 15,
                   seed: int = 0) -> Path:
    """Write an H.264 (or MPEG-4 part 2) yuv420p mp4 of a synthetic street with moving traffic; return its path."""
    import av

    _check_size(height, width)
    if height % 2 or width % 2:
        raise ValueError(f"video height and width must be even for yuv420p, got {height}x{width}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex[:8]}.mp4")
    codec = _video_codec()
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            if codec == "libx264":
                stream.options = {"crf": "18", "preset": "veryfast"}
            else:
                stream.bit_rate = 4_000_000
            for frame, _ in render_video_frames(n_frames, height, width, fps, seed):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode(None))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
