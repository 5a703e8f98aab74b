"""The interface every inference backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from engine.metadata import ModelMeta


class Backend(ABC):
    """Runs the network only: normalized NCHW float32 in, low-resolution logits NCHW float32 out."""

    name: str = "base"
    meta: ModelMeta

    @abstractmethod
    def infer(self, x: np.ndarray) -> np.ndarray:
        """Run the network on a [B,3,H,W] float32 batch and return [B,K,h,w] float32 logits."""

    def warmup(self, shape: tuple[int, int, int, int]) -> None:
        """Run once on zeros so that first-call costs are not measured."""
        self.infer(np.zeros(shape, np.float32))
