"""Opening the configured datasets and drawing reproducible, augmented training mini-batches."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from training.config import Config
from training.data import SegFolderDataset, build_dataset, build_pipeline, generate_dataset
from training.data.transforms import normalize, random_scale_crop_flip


def open_datasets(cfg: Config) -> tuple[Any, Any]:
    """Generate the synthetic dataset if the config asks for it, then open the train and val splits."""
    d = cfg.data
    if d.synthetic is not None:
        generate_dataset(d.root, **d.synthetic)
    if d.dataset == "folder" and not d.dataset_kwargs:
        return SegFolderDataset(d.root, d.train_split), SegFolderDataset(d.root, d.val_split)
    return (build_dataset(d.dataset, d.root, d.train_split, **d.dataset_kwargs),
            build_dataset(d.dataset, d.root, d.val_split, **d.dataset_kwargs))


class Batcher:
    """Endless shuffled mini-batches of augmented (image, mask) tensors, reproducible from its RNG state.

    Without ``data.augment`` each sample is scaled, cropped and flipped on tensors with the engine's resize
    (bilinear, align_corners=False, no antialias). With ``data.augment`` (a list of transform dicts, see
    training.data.augment) that uint8 pipeline runs instead; it must end in fixed-size crops or padding.
    ``data.cache`` keeps decoded uint8 samples in memory (small datasets only).

    Distributed training: every rank holds the same shared generator and draws the same *global* batch of
    ``train.batch_size`` (dataset index, augmentation seed) pairs, a fixed amount of randomness per sample; rank
    ``r`` of ``world`` then loads and augments only samples ``[r * b, (r + 1) * b)`` (``b = batch_size / world``),
    each with ``np.random.default_rng(seed)``. So the generators stay in step on every rank, the union of the
    ranks' batches is exactly the single-process batch, and ``state``/``load_state`` resume exactly.
    """

    def __init__(self, ds: Any, cfg: Config, seed: int, rank: int = 0, world: int = 1) -> None:
        bs = cfg.train.batch_size
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"rank {rank} out of range for world size {world}")
        if bs < 1 or bs % world:
            raise ValueError(f"train.batch_size={bs} (the global batch) must be a positive multiple of the number "
                             f"of processes ({world})")
        self.ds = ds
        self.cfg = cfg
        self.rank, self.world = rank, world
        self.local_batch = bs // world
        self.rng = np.random.default_rng(seed)
        self.order: list[int] = []
        self.pipeline = build_pipeline(cfg.data.augment) if cfg.data.augment else None
        self.cache: dict[int, dict] | None = {} if cfg.data.cache else None

    def _sample(self, i: int) -> dict:
        if self.cache is None:
            return self.ds[i]
        if i not in self.cache:
            self.cache[i] = self.ds[i]
        return self.cache[i]

    def _augment(self, s: dict, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.cfg.data
        if self.pipeline is not None:
            s = self.pipeline({"image": s["image"], "mask": s["mask"]}, rng)
            return torch.tensor(s["image"]).permute(2, 0, 1).float(), torch.tensor(s["mask"])
        img = torch.tensor(s["image"]).permute(2, 0, 1).float()
        base = d.input_size[0] if d.input_size else None
        return random_scale_crop_flip(img, torch.tensor(s["mask"]), tuple(d.crop_size), tuple(d.scale_range),
                                      d.flip, rng, self.cfg.train.ignore_index, base_height=base)

    def draw(self) -> list[tuple[int, int]]:
        """The next global batch as (dataset index, augmentation seed) pairs; identical on every rank."""
        picks = []
        for _ in range(self.cfg.train.batch_size):
            if not self.order:
                self.order = [int(i) for i in self.rng.permutation(len(self.ds))]
            picks.append((self.order.pop(), int(self.rng.integers(0, 2**63 - 1))))
        return picks

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's part of the next batch: images [b,3,h,w] normalized float32, labels [b,h,w] int64."""
        d = self.cfg.data
        picks = self.draw()[self.rank * self.local_batch:(self.rank + 1) * self.local_batch]
        imgs, masks = [], []
        for i, seed in picks:
            img, mask = self._augment(self._sample(i), np.random.default_rng(seed))
            imgs.append(normalize(img, d.mean, d.std))
            masks.append(mask)
        shapes = {tuple(m.shape) for m in masks}
        if len(shapes) > 1:
            raise ValueError(f"augmented samples differ in size {sorted(shapes)}: end data.augment with a "
                             "RandomCrop and Pad to a fixed size")
        return torch.stack(imgs), torch.stack(masks).long()

    def state(self) -> dict[str, Any]:
        """RNG and epoch-order state, for exact resume (``torch`` is this process's torch RNG state)."""
        return {"torch": torch.get_rng_state(), "numpy": self.rng.bit_generator.state, "order": list(self.order)}

    def load_state(self, st: dict[str, Any]) -> None:
        """Restore what ``state`` returned. A distributed checkpoint may hold ``torch_ranks`` (every rank's torch
        RNG state): each rank takes its own when the number of processes is unchanged. Otherwise a single process
        takes ``torch`` and ranks of a multi-process run keep their own seeding (the data sequence still continues
        exactly; only random layers such as dropout draw differently)."""
        ranks = st.get("torch_ranks")
        if ranks is not None and len(ranks) == self.world:
            torch.set_rng_state(ranks[self.rank])
        elif self.world == 1:
            torch.set_rng_state(st["torch"])
        self.rng.bit_generator.state = st["numpy"]
        self.order = [int(i) for i in st["order"]]
