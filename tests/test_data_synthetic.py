"""The synthetic street generator: determinism, label/image consistency, on-disk dataset and video."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from training.data import CLASSES, PALETTE, SegFolderDataset, generate_dataset, generate_video
from training.data.layout import make_layout
from training.data.scene import make_noise, render, render_background
from training.data.synthetic import render_scene, render_video_frames

H, W = 64, 128


def scene(seed: int, h: int = H, w: int = W) -> tuple[np.ndarray, np.ndarray]:
    return render_scene(np.random.default_rng(seed), h, w)


def test_classes_and_palette() -> None:
    assert CLASSES == ("road", "sidewalk", "building", "vegetation", "sky", "car", "person", "pole")
    assert len(PALETTE) == len(CLASSES) and len(set(PALETTE)) == len(PALETTE)


def test_render_types_and_determinism() -> None:
    img, labels = scene(3)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8 and img.flags.c_contiguous
    assert labels.shape == (H, W) and labels.dtype == np.uint8 and labels.max() < len(CLASSES)
    img2, labels2 = scene(3)
    np.testing.assert_array_equal(img, img2)
    np.testing.assert_array_equal(labels, labels2)
    img3, labels3 = scene(4)
    assert not np.array_equal(img, img3) and not np.array_equal(labels, labels3)


@pytest.mark.parametrize("size", [(32, 32), (50, 70), (256, 512)])
def test_render_any_size(size: tuple[int, int]) -> None:
    img, labels = scene(0, *size)
    assert img.shape == (*size, 3) and labels.shape == size


def test_every_class_appears() -> None:
    seen = set()
    for seed in range(12):
        seen |= set(np.unique(scene(seed)[1]).tolist())
    assert seen == set(range(len(CLASSES)))


def test_labels_follow_the_geometry() -> None:
    road, sidewalk, sky, car = (CLASSES.index(c) for c in ("road", "sidewalk", "sky", "car"))
    for seed in range(8):
        lay = make_layout(np.random.default_rng(seed), H, W)
        _, labels = render(lay, render_background(lay), lay.props, make_noise(lay))
        rows = np.arange(H)[:, None].repeat(W, 1)
        hz = lay.cam.horizon
        assert (rows[labels == sky] < hz + 1).all(), "sky below the horizon"
        assert (rows[np.isin(labels, [road, sidewalk])] > hz - 1).all(), "ground above the horizon"
        assert (rows[labels == car] > hz - 1).all(), "cars are lower than the camera, so below the horizon"


def test_class_colours_are_plausible() -> None:
    sky, veg, road = (CLASSES.index(c) for c in ("sky", "vegetation", "road"))
    for seed in range(6):
        img, labels = scene(seed, 128, 256)
        f = img.astype(np.float32)
        s = f[labels == sky].mean(0)
        assert s[2] > s[0], "sky is bluish"
        if (labels == veg).sum() > 50:
            v = f[labels == veg].mean(0)
            assert v[1] > v[2], "vegetation is greener than blue"
        r = f[labels == road].mean(0)
        assert r.max() - r.min() < 40, "asphalt is grey"


def test_dataset_round_trip_png(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "ds", n_train=3, n_val=2, height=H, width=W, seed=5, image_format="png")
    for split, n, k in (("train", 3, 0), ("val", 2, 1)):
        ds = SegFolderDataset(root, split)
        assert len(ds) == n and ds.classes == list(CLASSES) and ds.ignore_index == 255
        assert ds.palette == list(PALETTE)
        for i in range(n):
            img, labels = render_scene(np.random.default_rng([5, k, i]), H, W)
            item = ds[i]
            assert item["name"] == f"{i:05d}"
            np.testing.assert_array_equal(item["mask"], labels)
            np.testing.assert_array_equal(item["image"], img)


def test_dataset_jpeg_and_reuse(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "ds", n_train=2, n_val=1, height=H, width=W)
    assert sorted(p.name for p in (root / "images" / "train").iterdir()) == ["00000.jpg", "00001.jpg"]
    img, labels = render_scene(np.random.default_rng([0, 0, 1]), H, W)
    item = SegFolderDataset(root)[1]
    np.testing.assert_array_equal(item["mask"], labels)
    assert np.abs(item["image"].astype(int) - img).mean() < 5
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["n_train"] == 2 and manifest["height"] == H

    stamp = (root / "masks" / "train" / "00000.png").stat().st_mtime_ns
    assert generate_dataset(root, n_train=2, n_val=1, height=H, width=W) == root
    assert (root / "masks" / "train" / "00000.png").stat().st_mtime_ns == stamp, "a matching dataset is reused"
    generate_dataset(root, n_train=3, n_val=1, height=H, width=W)
    assert len(SegFolderDataset(root)) == 3, "a different request regenerates"
    assert [p.name for p in tmp_path.iterdir()] == ["ds"], "no temporary folders are left behind"


def test_dataset_arguments_and_foreign_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_train"):
        generate_dataset(tmp_path / "a", n_train=0)
    with pytest.raises(ValueError, match="n_val"):
        generate_dataset(tmp_path / "a", n_val=-1)
    with pytest.raises(ValueError, match="height=16"):
        generate_dataset(tmp_path / "a", height=16)
    with pytest.raises(ValueError, match="image_format"):
        generate_dataset(tmp_path / "a", n_train=1, n_val=0, height=H, width=W, image_format="gif")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="mine"):
        generate_dataset(foreign, n_train=1, n_val=0, height=H, width=W)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_video_frames_are_deterministic_and_smooth() -> None:
    frames = list(render_video_frames(n_frames=8, height=H, width=W, fps=15, seed=2))
    again = list(render_video_frames(n_frames=8, height=H, width=W, fps=15, seed=2))
    assert len(frames) == 8
    for (a, la), (b, lb) in zip(frames, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    labels = np.stack([lab for _, lab in frames])
    assert (labels[0] != labels[-1]).any(), "something moves"
    changed = (labels[1:] != labels[:-1]).mean(axis=(1, 2))
    assert changed.max() < 0.05, "motion between frames is small"
    moving = np.isin(labels, [CLASSES.index("car"), CLASSES.index("person")])
    still = ~moving.any(0)
    assert (labels[:, still] == labels[0, still]).all(), "only cars and people change the labels"


def test_generate_video(tmp_path: Path) -> None:
    path = generate_video(tmp_path / "out" / "street.mp4", n_frames=10, height=H, width=W, fps=10, seed=1)
    assert path == tmp_path / "out" / "street.mp4"
    assert [p.name for p in path.parent.iterdir()] == ["street.mp4"]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name in ("h264", "mpeg4")
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 10 and frames[0].shape == (H, W, 3)
    first, _ = next(render_video_frames(n_frames=10, height=H, width=W, fps=10, seed=1))
    assert np.abs(frames[0].astype(int) - first).mean() < 12
    with pytest.raises(ValueError, match="even"):
        generate_video(tmp_path / "odd.mp4", n_frames=2, height=65, width=W)
    with pytest.raises(ValueError, match="n_frames"):
        generate_video(tmp_path / "none.mp4", n_frames=0, height=H, width=W)
