"""Model metadata carried inside the model file, so a file alone is enough to run it.

In ONNX files each field is one ``metadata_props`` entry named ``segrt.<field>`` holding JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

PREFIX = "segrt."
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass
class ModelMeta:
    """What the engine needs to pre- and post-process for a model.

    mean/std are in 0..255 pixel units of RGB input. ``input_size`` is (H, W) the model expects
    (None: run at the image's own size). ``align_corners`` is the resize policy of the model
    (the project default is False everywhere). ``size_divisor``: the network's H and W must be multiples of it
    (U-Net 16, ConvNeXt 32); the engine rounds the sizes it runs at up to a multiple.
    """

    classes: list[str] = field(default_factory=list)
    palette: list[list[int]] = field(default_factory=list)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: tuple[int, int] | None = None
    output_stride: int = 8
    align_corners: bool = False
    model: str = ""
    ignore_index: int = 255
    size_divisor: int = 1

    @property
    def num_classes(self) -> int:
        """Number of classes (length of ``classes``)."""
        return len(self.classes)

    def to_props(self) -> dict[str, str]:
        """Serialise as ``{"segrt.<field>": json}`` strings."""
        return {PREFIX + k: json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "model") -> ModelMeta:
        """Parse ``segrt.*`` entries; other keys are ignored. Raises ValueError naming a bad entry."""
        known = {f.name for f in fields(cls)}
        kw = {}
        for key, raw in props.items():
            if not key.startswith(PREFIX) or key[len(PREFIX):] not in known:
                continue
            try:
                kw[key[len(PREFIX):]] = json.loads(raw)
            except json.JSONDecodeError as e:
                raise ValueError(f"{source}: metadata entry {key!r} is not valid JSON: {e}") from None
        meta = cls(**kw)
        if meta.input_size is not None:
            meta.input_size = tuple(int(v) for v in meta.input_size)
            if len(meta.input_size) != 2 or min(meta.input_size) <= 0:
                raise ValueError(f"{source}: metadata input_size must be two positive ints, got {meta.input_size}")
        if not isinstance(meta.size_divisor, int) or meta.size_divisor < 1:
            raise ValueError(f"{source}: metadata size_divisor must be a positive int, got {meta.size_divisor!r}")
        meta.mean = tuple(float(v) for v in meta.mean)
        meta.std = tuple(float(v) for v in meta.std)
        if len(meta.mean) != 3 or len(meta.std) != 3 or min(meta.std) <= 0:
            raise ValueError(f"{source}: metadata mean/std must be 3 values each, std > 0")
        return meta
