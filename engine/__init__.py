"""segrt runtime: run exported segmentation models without PyTorch.

    import engine
    p = engine.Predictor("model.onnx")
    labels = p.run(img)          # HxWx3 uint8 RGB -> HxW class ids
"""

from engine.metadata import ModelMeta
from engine.predictor import Predictor

__all__ = ["ModelMeta", "Predictor", "__version__"]
__version__ = "0.1.0"
