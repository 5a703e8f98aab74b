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
        return cls(**_checked(kw, source))


def round_up(size: tuple[int, int], divisor: int) -> tuple[int, int]:
    """``(H, W)`` rounded up to multiples of ``divisor`` (a model's ``size_divisor``; 0 or 1: unchanged)."""
    d = max(1, int(divisor or 1))
    return -(-int(size[0]) // d) * d, -(-int(size[1]) // d) * d


def _num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _checked(kw: dict, source: str) -> dict:
    """``kw`` with every metadata value checked for its type and range (ValueError naming the entry)."""

    def bad(name: str, want: str) -> ValueError:
        return ValueError(f"{source}: metadata entry 'segrt.{name}' must be {want}, got {kw[name]!r}")

    out = dict(kw)
    if "classes" in kw:
        if not isinstance(kw["classes"], list) or not all(isinstance(c, str) for c in kw["classes"]):
            raise bad("classes", "a list of class names")
    if "palette" in kw:
        pal = kw["palette"]
        if not isinstance(pal, list) or not all(isinstance(c, list) and len(c) == 3 and all(
                _int(v) and 0 <= v <= 255 for v in c) for c in pal):
            raise bad("palette", "a list of [r, g, b] colours with values 0..255")
    for name in ("mean", "std"):
        if name in kw:
            v = kw[name]
            if not isinstance(v, list) or len(v) != 3 or not all(_num(x) for x in v):
                raise bad(name, "3 numbers (R, G, B in 0..255 pixel units)")
            if name == "std" and min(v) <= 0:
                raise bad(name, "3 positive numbers")
            out[name] = tuple(float(x) for x in v)
    if kw.get("input_size") is not None:
        v = kw["input_size"]
        if not isinstance(v, list) or len(v) != 2 or not all(_int(x) and x > 0 for x in v):
            raise bad("input_size", "two positive ints [H, W] or null")
        out["input_size"] = (v[0], v[1])
    for name in ("output_stride", "size_divisor"):
        if name in kw and not (_int(kw[name]) and kw[name] >= 1):
            raise bad(name, "a positive int")
    if "ignore_index" in kw and not _int(kw["ignore_index"]):
        raise bad("ignore_index", "an int")
    if "align_corners" in kw and not isinstance(kw["align_corners"], bool):
        raise bad("align_corners", "true or false")
    if "model" in kw and not isinstance(kw["model"], str):
        raise bad("model", "a string")
    return out
