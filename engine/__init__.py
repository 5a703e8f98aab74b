"""segrt runtime: run exported segmentation models without PyTorch.

    import engine
    p = engine.Predictor("model.onnx")
    labels = p.run(img)          # HxWx3 uint8 RGB -> HxW class ids

``Predictor`` is imported on first use: importing it sets OMP_WAIT_POLICY=PASSIVE for the engine's native
kernels (see engine/predictor.py), which must not leak into a training process that only needs
``engine.metadata`` or ``engine.fileio``.
"""

import importlib
from typing import Any

from engine.metadata import ModelMeta

__all__ = ["ModelMeta", "Predictor", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Predictor":
        from engine.predictor import Predictor

        return Predictor
    try:  # submodules are attributes once imported; import them on first access too
        return importlib.import_module(f"engine.{name}")
    except ModuleNotFoundError:
        raise AttributeError(f"module 'engine' has no attribute {name!r}") from None
