"""The shared part of mapping an MMSeg ``model`` dict onto a segrt builder (:mod:`training.convert.mmseg_models`).

:class:`ModelSpec` collects the builder options and the checks it runs on the built model; :class:`_Section` reads
one config dict and rejects the settings nobody handled; :func:`_norm` and :func:`_act` read ``norm_cfg``/``act_cfg``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from training.config import ModelCfg
from training.convert.mmseg_config import DELETE_KEY, find_unevaluated

# Each MMSeg setting is either passed to our builder (an option it takes) or checked against the built model's
# attributes (``ModelSpec.verify``); a setting that is neither fails, naming the config key and value.
_REQUIRED = object()
_NO_ATTR = object()
# Keys that only matter for training (losses, init, freezing, checkpointing): read and ignored.
_TRAINING_ONLY = frozenset({"type", "init_cfg", "pretrained", "frozen_stages", "norm_eval", "with_cp", "loss_decode",
                            "sampler", "ignore_index", "zero_init_residual", DELETE_KEY})


@dataclass
class _Check:
    key: str  # dotted config key
    expected: Any
    actual: Callable[[nn.Module], Any]  # reads the built model
    optional: bool = False  # the value went to the builder: an attribute-less module is trusted


@dataclass
class ModelSpec:
    """An MMSeg model dict mapped onto a segrt builder: ``model`` (name, backbone, backbone_kwargs, head_kwargs,
    aux, as stored in segrt checkpoints), ``num_classes``, and the checks :meth:`verify` runs on the built model."""

    model: ModelCfg
    num_classes: int
    ignore_index: int = 255
    checks: list[_Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def check(self, key: str, expected: Any, actual: Callable[[nn.Module], Any], optional: bool = False) -> None:
        """Record that the built model must show ``expected`` (read by ``actual(model)``) for config ``key``."""
        self.checks.append(_Check(key, _tupled(expected), actual, optional))

    def verify(self, model: nn.Module) -> None:
        """Raise ``ValueError`` naming every config key whose value the built model does not reproduce."""
        wrong = []
        for c in self.checks:
            try:
                actual = c.actual(model)
            except (AttributeError, IndexError, TypeError, KeyError):
                actual = _NO_ATTR
            if actual is _NO_ATTR:
                if not c.optional:
                    wrong.append(f"{c.key}={c.expected!r} (segrt's {self.model.name!r} cannot express it)")
                continue
            actual = _tupled(actual)
            if c.key.endswith("in_index"):
                n = _num_inputs(model)
                expected, actual = _index(c.expected, n), _index(actual, n)
            else:
                expected = c.expected
            if not _same(expected, actual):
                wrong.append(f"{c.key}={c.expected!r} (segrt's {self.model.name!r} builds {actual!r})")
        if wrong:
            hint = (" (pass drop_aux=True to convert without the training-only auxiliary head)"
                    if all(w.startswith("model.auxiliary_head") for w in wrong) else "")
            raise ValueError("the MMSeg config asks for what segrt cannot build: " + "; ".join(wrong) + hint)


def _tupled(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return tuple(_tupled(x) for x in v)
    if isinstance(v, dict):
        return {k: _tupled(x) for k, x in v.items()}
    return v


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and math.isclose(a, b, rel_tol=1e-9)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _index(v: Any, n: int) -> Any:
    if isinstance(v, tuple):
        return tuple(_index(x, n) for x in v)
    return v + n if isinstance(v, int) and v < 0 else v


def _num_inputs(model: nn.Module) -> int:
    """How many feature maps the heads receive (the neck's outputs, else the backbone's)."""
    neck = getattr(model, "neck", None)
    if neck is not None:
        outs = getattr(neck, "out_channels", None)
        if isinstance(outs, list | tuple):
            return len(outs)
        return int(getattr(neck, "num_outs", len(getattr(neck, "in_channels", ()))))
    return len(model.backbone.out_channels)


class _Section:
    """One MMSeg config dict being read: remembers the keys handled; :meth:`finish` rejects the rest."""

    def __init__(self, cfg: Any, where: str) -> None:
        if not isinstance(cfg, dict):
            raise ValueError(f"{where} must be a dict, got {cfg!r:.80}")
        self.cfg, self.where, self.used = cfg, where, set(_TRAINING_ONLY)

    @property
    def type(self) -> str:
        return str(self.cfg.get("type"))

    def key(self, key: str) -> str:
        return f"{self.where}.{key}"

    def get(self, key: str, default: Any = _REQUIRED) -> Any:
        self.used.add(key)
        if key not in self.cfg:
            if default is _REQUIRED:
                raise ValueError(f"{self.key(key)} is required but missing")
            return _tupled(default)
        bad = find_unevaluated(self.cfg[key])
        if bad:
            inner = f".{bad[0][0]}" if bad[0][0] else ""
            raise ValueError(f"{self.key(key)}{inner} could not be read from the config: {bad[0][1].why}")
        return _tupled(self.cfg[key])

    def fail(self, key: str, value: Any, why: str) -> None:
        raise ValueError(f"{self.key(key)}={value!r}: {why}")

    def expect(self, key: str, default: Any, allowed: tuple[Any, ...]) -> Any:
        value = self.get(key, default)
        if value not in allowed:
            self.fail(key, value, f"segrt supports only {' or '.join(map(repr, allowed))}")
        return value

    def finish(self) -> None:
        rest = [k for k in self.cfg if k not in self.used]
        if rest:
            raise ValueError(f"{self.where} (type {self.type!r}): segrt cannot build setting(s) "
                             + ", ".join(f"{k}={self.cfg[k]!r:.60}" for k in rest))


_NORMS: dict[str, tuple[type[nn.Module], float]] = {
    "BN": (nn.BatchNorm2d, 1e-5), "SyncBN": (nn.BatchNorm2d, 1e-5), "BN2d": (nn.BatchNorm2d, 1e-5),
    "LN": (nn.LayerNorm, 1e-5), "LN2d": (nn.LayerNorm, 1e-5),
}
Part = Callable[[nn.Module], nn.Module]
_BN = ("BN", "SyncBN", "BN2d")


def _norm(sec: _Section, spec: ModelSpec, key: str, default: Any, part: Part, allowed: tuple[Any, ...] = _BN,
          ) -> float | None:
    """Read a ``norm_cfg``: its type must be one segrt's module uses, and its eps is checked against that module's
    norm layers; returns the eps. ``None`` (no norm) is accepted when the built module has no such layers."""
    cfg = sec.get(key, default)
    classes = tuple({_NORMS[a][0] for a in allowed if a})
    if cfg is None:
        if None not in allowed:
            spec.check(sec.key(key), None, lambda m: next((type(x).__name__ for x in part(m).modules()
                                                           if isinstance(x, classes)), None))
        return None
    norm = _Section(dict(cfg), sec.key(key))
    kind = norm.expect("type", None, tuple(a for a in allowed if a))
    norm.get("requires_grad", True)
    norm.get("momentum", 0.1)  # training-only
    cls, eps_default = _NORMS[kind]
    eps = norm.get("eps", eps_default)
    norm.finish()

    def eps_of(model: nn.Module) -> Any:
        values = {m.eps for m in part(model).modules() if isinstance(m, cls)}
        return values.pop() if len(values) == 1 else (eps if not values else tuple(sorted(values)))

    spec.check(norm.key("eps"), eps, eps_of)
    return eps


def _act(sec: _Section, key: str, default: str | None, allowed: tuple[Any, ...]) -> None:
    cfg = sec.get(key, None if default is None else {"type": default})
    if cfg is None:
        if None not in allowed:
            sec.fail(key, None, f"segrt uses {allowed[0]} here")
        return
    act = _Section(dict(cfg), sec.key(key))
    act.expect("type", None, allowed)
    act.get("inplace", True)
    act.finish()


def _builder(name: str) -> Callable[..., Any]:
    from training.models.registry import builder

    return builder(name)


def _options(name: str) -> set[str]:
    from training.models import model_info

    return set(model_info(name)["options"])


def _takes_sequence(name: str, option: str) -> bool:
    """Whether builder ``name``'s keyword ``option`` is annotated as a sequence (e.g. one width per aux head)."""
    param = inspect.signature(_builder(name)).parameters.get(option)
    return param is not None and "Sequence" in str(param.annotation)

