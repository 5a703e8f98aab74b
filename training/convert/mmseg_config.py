"""Read MMSegmentation 1.x (mmengine) Python config files without mmengine and without executing them.

A config is a Python file of assignments, inheriting from the files named in ``_base_``. :func:`read_config` parses
each file with :mod:`ast` and evaluates only data: literals, ``dict(...)``/``list(...)``/``tuple(...)`` calls, names
bound earlier in the same file (or in its bases), ``_base_.x.y`` and ``{{_base_.x.y}}`` references, subscripts,
comprehensions, f-strings, simple arithmetic and a few pure builtins (``len``, ``range``, ``sum``, ``enumerate``,
``min``, ``max``, ...). Nothing is imported and no code from the file runs, so a hostile config can at worst be
rejected. Inheritance follows mmengine's ``Config.fromfile``: bases are read in order (a key defined by two bases is
an error), then the file's own variables are merged into them, dicts recursively, unless a dict says
``_delete_=True``; other values replace the base's.

An expression outside that subset does not fail the whole file: its variable holds an :class:`Unevaluated` marker
saying where and why, and only a caller that reads that value (e.g. the model converter) reports it. (Checked
against mmengine 0.10.7: all 769 config files of MMSeg 1.2.2 read to the same dict as ``Config.fromfile``.)

:func:`model_spec` then maps the config's ``model`` dict onto a segrt builder (``training.models.build``):
tables :data:`BACKBONES`, :data:`HEADS` and :data:`NECKS` say, per MMSeg type, which settings become builder
options; every other setting is checked against the built model (:meth:`ModelSpec.verify`), so anything segrt
cannot reproduce is a ``ValueError`` naming the config key and value.
"""

from __future__ import annotations

import ast
import inspect
import math
import operator
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from training.config import ModelCfg

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"
_MAX_ITEMS = 1_000_000  # largest sequence/string one expression may produce
_BUDGET = 5_000_000  # items (sequence elements, characters) all expressions of one file may produce together
_MAX_POW = 64
_MAX_BITS = 100_000  # largest integer arithmetic may produce


class ConfigError(ValueError):
    """A config file that cannot be read: names the file (and line) and what was wrong."""


class Unevaluated:
    """Placeholder for a value the safe evaluator does not compute (e.g. a lambda); ``why`` says where and why."""

    def __init__(self, why: str) -> None:
        self.why = why

    def __repr__(self) -> str:
        return f"<unevaluated: {self.why}>"


class _Skip(Exception):
    """Raised inside an expression the evaluator declines; turned into an :class:`Unevaluated` binding."""


def _length(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple | dict | set | range) else 0


def _safe_range(*args: int) -> range:
    if not all(isinstance(a, int) for a in args):
        raise _Skip("range() needs ints")
    return range(*args)  # lazy: its length is charged to the budget before anything iterates it


def _safe_pow(a: Any, b: Any) -> Any:
    if not isinstance(b, int | float) or abs(b) > _MAX_POW or (isinstance(a, int) and a.bit_length() * b > _MAX_BITS):
        raise _Skip(f"power {a!r:.20} ** {b!r} too large")
    return a**b


def _safe_mul(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > _MAX_BITS:
        raise _Skip("product too large")
    for seq, n in ((a, b), (b, a)):
        if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * max(n, 0) > _MAX_ITEMS:
            raise _Skip(f"repetition larger than {_MAX_ITEMS} items")
    return a * b


_BIN_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: _safe_mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _safe_pow,
}
_UNARY_OPS: dict[type, Callable[[Any], Any]] = {
    ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_,
}
_COMPARE_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
# Pure functions over plain data; applied only to values this evaluator produced.
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "dict": dict, "list": list, "tuple": tuple, "set": set, "int": int, "float": float, "str": str, "bool": bool,
    "len": len, "range": _safe_range, "sum": sum, "min": min, "max": max, "abs": abs, "round": round,
    "enumerate": lambda *a: list(enumerate(*a)), "zip": lambda *a: list(zip(*a)), "sorted": sorted,
    "reversed": lambda a: list(reversed(a)),
}
# Methods callable on values (dict.update is how some configs extend a dict in place).
_METHODS: dict[type, frozenset[str]] = {
    dict: frozenset({"get", "keys", "values", "items", "copy", "update"}),
    list: frozenset({"copy", "index", "count"}),
    tuple: frozenset({"index", "count"}),
    str: frozenset({"split", "upper", "lower", "strip", "startswith", "endswith"}),
}


class _Evaluator:
    """Evaluates expression nodes of one config file over its namespace (then its bases' variables)."""

    def __init__(self, filename: str, names: dict[str, Any], base: dict[str, Any]) -> None:
        self.filename = filename
        self.names = names
        self.base = base
        self.scopes: list[dict[str, Any]] = []
        self.budget = _BUDGET

    def sized(self, value: Any) -> Any:
        """Charge what an expression produced to the file's budget (so no config can exhaust memory)."""
        n = _length(value)
        if n > _MAX_ITEMS or n > self.budget:
            raise _Skip(f"the config builds too much data (over {min(_MAX_ITEMS, self.budget)} items at once)")
        self.budget -= n
        return value

    def where(self, node: ast.AST) -> str:
        return f"{self.filename}:{getattr(node, 'lineno', '?')}"

    def lookup(self, name: str, node: ast.AST) -> Any:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        if name in self.names:
            return self.names[name]
        if name == BASE_KEY:
            return _plain(self.base)
        if name in self.base:
            return _plain(self.base[name])
        raise _Skip(f"name {name!r} is not defined before {self.where(node)}")

    def value(self, node: ast.AST) -> Any:
        """Evaluate ``node`` for computing with it: an :class:`Unevaluated` operand makes the result unevaluated."""
        v = self.eval(node)
        if isinstance(v, Unevaluated):
            raise _Skip(f"depends on a value that was not evaluated: {v.why}")
        return v

    def eval(self, node: ast.AST) -> Any:  # noqa: C901 - one branch per node type
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.lookup(node.id, node)
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            items: list[Any] = []
            for elt in node.elts:
                if isinstance(elt, ast.Starred):
                    items.extend(self.value(elt.value))
                else:
                    items.append(self.eval(elt))
            kind = {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)]
            return kind(self.sized(items))
        if isinstance(node, ast.Dict):
            out: dict[Any, Any] = {}
            for k, v in zip(node.keys, node.values):
                if k is None:
                    out.update(self.value(v))
                else:
                    out[self.value(k)] = self.eval(v)
            return out
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Attribute):
            value = self.value(node.value)
            if isinstance(value, dict):  # mmengine's ConfigDict: attribute access reads a key
                if node.attr not in value:
                    raise _Skip(f"{ast.unparse(node)} is not defined ({self.where(node)})")
                return value[node.attr]
            raise _Skip(f"attribute {ast.unparse(node)} of a {type(value).__name__} ({self.where(node)})")
        if isinstance(node, ast.Subscript):
            value = self.value(node.value)
            if isinstance(node.slice, ast.Slice):
                s = node.slice
                parts = [None if p is None else self.value(p) for p in (s.lower, s.upper, s.step)]
                return value[slice(*parts)]
            return value[self.value(node.slice)]
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN_OPS:
            return self.sized(_BIN_OPS[type(node.op)](self.value(node.left), self.value(node.right)))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY_OPS:
            return _UNARY_OPS[type(node.op)](self.value(node.operand))
        if isinstance(node, ast.BoolOp):
            result: Any = None
            for v in node.values:
                result = self.value(v)
                if isinstance(node.op, ast.And) != bool(result):
                    return result
            return result
        if isinstance(node, ast.Compare):
            left = self.value(node.left)
            for op, comp in zip(node.ops, node.comparators):
                right = self.value(comp)
                if not _COMPARE_OPS[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return self.eval(node.body) if self.value(node.test) else self.eval(node.orelse)
        if isinstance(node, ast.JoinedStr):
            return "".join(self.eval(v) if isinstance(v, ast.Constant) else self.formatted(v) for v in node.values)
        if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
            return self.comprehension(node)
        raise _Skip(f"unsupported expression {type(node).__name__} at {self.where(node)}: {ast.unparse(node)[:80]}")

    def formatted(self, node: ast.FormattedValue) -> str:
        value = self.value(node.value)
        if node.conversion == ord("r"):
            value = repr(value)
        elif node.conversion in (ord("s"), ord("a")):
            value = str(value) if node.conversion == ord("s") else ascii(value)
        spec = self.value(node.format_spec) if node.format_spec is not None else ""
        if re.search(r"\d{4,}", spec):
            raise _Skip(f"f-string format {spec!r} too wide at {self.where(node)}")
        if not isinstance(value, str | int | float | bool | type(None)):
            raise _Skip(f"f-string of a {type(value).__name__} at {self.where(node)}")
        return format(value, spec)

    def call(self, node: ast.Call) -> Any:
        args: list[Any] = []
        for a in node.args:
            if isinstance(a, ast.Starred):
                args.extend(self.value(a.value))
            else:
                args.append(self.eval(a))
        kwargs: dict[str, Any] = {}
        for kw in node.keywords:
            if kw.arg is None:
                kwargs.update(self.value(kw.value))
            else:
                kwargs[kw.arg] = self.eval(kw.value)
        if isinstance(node.func, ast.Name) and not self._bound(node.func.id):
            fn = _FUNCTIONS.get(node.func.id)
            if fn is None:
                raise _Skip(f"call of {node.func.id}() at {self.where(node)}")
            if node.func.id != "dict":  # dict(key=value) only stores its values
                for a in [*args, *kwargs.values()]:
                    if isinstance(a, Unevaluated):
                        raise _Skip(f"depends on a value that was not evaluated: {a.why}")
            return self.sized(fn(*args, **kwargs))
        if isinstance(node.func, ast.Attribute):
            owner = self.value(node.func.value)
            allowed = _METHODS.get(type(owner), frozenset())
            if node.func.attr in allowed:
                return self.sized(getattr(owner, node.func.attr)(*args, **kwargs))
        raise _Skip(f"call of {ast.unparse(node.func)}() at {self.where(node)}")

    def _bound(self, name: str) -> bool:
        return any(name in s for s in self.scopes) or name in self.names or name in self.base

    def comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp) -> Any:
        results: list[Any] = []

        def loop(generators: list[ast.comprehension]) -> None:
            if not generators:
                if isinstance(node, ast.DictComp):
                    results.append((self.value(node.key), self.eval(node.value)))
                else:
                    results.append(self.eval(node.elt))
                self.budget -= 1
                if len(results) > _MAX_ITEMS or self.budget < 0:
                    raise _Skip(f"comprehension too large at {self.where(node)}")
                return
            gen, rest = generators[0], generators[1:]
            if gen.is_async:
                raise _Skip(f"async comprehension at {self.where(node)}")
            for item in self.value(gen.iter):
                scope: dict[str, Any] = {}
                _bind(gen.target, item, scope, self, node)
                self.scopes.append(scope)
                try:
                    if all(self.value(cond) for cond in gen.ifs):
                        loop(rest)
                finally:
                    self.scopes.pop()

        loop(list(node.generators))
        if isinstance(node, ast.DictComp):
            return dict(results)
        return set(results) if isinstance(node, ast.SetComp) else results


def _bind(target: ast.AST, value: Any, scope: dict[str, Any], ev: _Evaluator, node: ast.AST) -> None:
    """Assign ``value`` to a Name or a (nested) tuple/list of Names."""
    if isinstance(target, ast.Name):
        scope[target.id] = value
    elif isinstance(target, ast.Tuple | ast.List):
        values = list(value)
        if len(values) != len(target.elts):
            raise _Skip(f"cannot unpack {len(values)} values into {len(target.elts)} names at {ev.where(node)}")
        for t, v in zip(target.elts, values):
            _bind(t, v, scope, ev, node)
    else:
        raise _Skip(f"assignment target {ast.unparse(target)} at {ev.where(node)}")


def _plain(value: Any) -> Any:
    """A fresh copy of nested dicts/lists/tuples (no shared sub-objects, unlike ``copy.deepcopy``'s memo)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, set):
        return {_plain(v) for v in value}
    return value


_PREDEFINED = ("fileDirname", "fileBasename", "fileBasenameNoExtension", "fileExtname")


def _substitute(text: str, path: Path) -> str:
    """mmengine's text substitutions: ``{{ fileDirname }}``-style names, ``{{$ENV:default}}`` and
    ``{{_base_.a.b}}`` (rewritten as the expression ``_base_.a.b``, which the evaluator resolves)."""
    values = {"fileDirname": str(path.parent), "fileBasename": path.name,
              "fileBasenameNoExtension": path.stem, "fileExtname": path.suffix}
    for key in _PREDEFINED:
        text = re.sub(r"\{\{\s*" + key + r"\s*\}\}", values[key].replace("\\", "/"), text)

    def env(m: re.Match) -> str:
        value = os.environ.get(m.group(1), m.group(2))
        if not value:
            raise ConfigError(f"{path}: environment variable {m.group(1)!r} is not set and has no default")
        return value

    text = re.sub(r"\{\{['\"]?\s*\$(\w+)\s*:\s*(\S*?)\s*['\"]?\}\}", env, text)
    return re.sub(r"(['\"]?)\{\{\s*" + BASE_KEY + r"\.([\w.]+)\s*\}\}\1", BASE_KEY + r".\2", text)


def merge(child: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Merge ``child`` into a copy of ``base`` as mmengine does: dicts recursively unless the child's dict has
    ``_delete_=True`` (then it replaces the base's); any other value replaces the base's."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and key in out and not value.pop(DELETE_KEY, False):
            if not isinstance(out[key], dict):
                raise ConfigError(f"{key}={value} is a dict in the child config but a {type(out[key]).__name__} "
                                  f"in its base; set {DELETE_KEY}=True to replace it")
            out[key] = merge(value, out[key])
        else:
            out[key] = value
    return out


def _base_files(tree: ast.Module, path: Path) -> list[Path]:
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == BASE_KEY for t in stmt.targets):
            try:
                value = ast.literal_eval(stmt.value)
            except ValueError:
                raise ConfigError(f"{path}:{stmt.lineno}: {BASE_KEY} must be a string or a list of strings") from None
            files = value if isinstance(value, list | tuple) else [value]
            if not all(isinstance(f, str) for f in files):
                raise ConfigError(f"{path}:{stmt.lineno}: {BASE_KEY} must be a string or a list of strings")
            for f in files:
                if "::" in f:
                    raise ConfigError(f"{path}: base {f!r} is in another package (mmengine's 'scope::path'); "
                                      "copy that file next to the config and name it by a relative path")
            return [(path.parent / f).resolve() for f in files]
    return []


def _check_statement(stmt: ast.stmt, path: Path) -> None:
    if isinstance(stmt, ast.Import | ast.ImportFrom | ast.With):
        raise ConfigError(f"{path}:{stmt.lineno}: imports and 'with read_base()' (mmengine's new-style configs) "
                          "are not supported; use a classic config with _base_ = [...]")
    raise ConfigError(f"{path}:{stmt.lineno}: unsupported statement {type(stmt).__name__} "
                      f"({ast.unparse(stmt).splitlines()[0][:80]}); a config may only assign values")


def _run(tree: ast.Module, path: Path, base: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the file's top-level statements; returns its own variables (before merging)."""
    names: dict[str, Any] = {}
    ev = _Evaluator(str(path), names, base)
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if any(isinstance(t, ast.Name) and t.id == BASE_KEY for t in targets) or stmt.value is None:
                continue
            try:
                if isinstance(stmt, ast.AugAssign):
                    if type(stmt.op) not in _BIN_OPS or not isinstance(stmt.target, ast.Name):
                        raise _Skip(f"augmented assignment at {ev.where(stmt)}")
                    value = ev.sized(_BIN_OPS[type(stmt.op)](ev.lookup(stmt.target.id, stmt), ev.eval(stmt.value)))
                else:
                    value = ev.eval(stmt.value)
                for target in targets:
                    _bind(target, value, names, ev, stmt)
            except _Skip as e:
                for target in targets:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name):
                            names[name.id] = Unevaluated(str(e))
            except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError, AttributeError) as e:
                raise ConfigError(f"{ev.where(stmt)}: cannot evaluate {ast.unparse(stmt)[:80]!r}: "
                                  f"{type(e).__name__}: {e}") from None
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # a docstring or comment-like string
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and \
                isinstance(stmt.value.func, ast.Attribute) and stmt.value.func.attr == "update":
            try:
                ev.eval(stmt.value)  # dict.update in place, e.g. custom_keys.update({...})
            except _Skip as e:
                owner = stmt.value.func.value
                if isinstance(owner, ast.Name):
                    names[owner.id] = Unevaluated(str(e))
        else:
            _check_statement(stmt, path)
    return names


def _read(path: Path, chain: tuple[Path, ...], text: str | None = None) -> dict[str, Any]:
    if path in chain:
        raise ConfigError(f"circular _base_ inheritance: {' -> '.join(str(p) for p in (*chain, path))}")
    if text is None:
        if not path.is_file():
            where = f" (a base of {chain[-1]})" if chain else ""
            raise ConfigError(f"config file not found: {path}{where}")
        if path.suffix != ".py":
            raise ConfigError(f"{path}: only Python (.py) MMSeg configs are supported")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text: {e}") from None
    try:
        tree = ast.parse(_substitute(text, path), filename=str(path))
    except SyntaxError as e:
        raise ConfigError(f"{path}:{e.lineno}: not valid Python: {e.msg}") from None
    base: dict[str, Any] = {}
    for base_path in _base_files(tree, path):
        part = _read(base_path, (*chain, path))
        duplicate = sorted(base.keys() & part.keys())
        if duplicate:
            raise ConfigError(f"{path}: keys {duplicate} are defined by more than one base (mmengine forbids it)")
        base.update(part)
    own = _run(tree, path, base)
    own.pop("_deprecation_", None)
    merged = merge(_plain(own), base)
    return {k: v for k, v in merged.items() if not k.startswith("__")}


def read_config(path: str | Path) -> dict[str, Any]:
    """Read an MMSeg 1.x config file and its ``_base_`` files into one plain dict (what mmengine's
    ``Config.fromfile(path).to_dict()`` gives), evaluating only data (see the module docstring).

    Raises :class:`ConfigError` (a ``ValueError``) naming the file and line for a missing file, invalid Python,
    a statement other than an assignment, or a base/child merge conflict.
    """
    return _plain(_read(Path(path).expanduser().resolve(), ()))


def read_config_text(text: str, name: str = "<config>") -> dict[str, Any]:
    """:func:`read_config` of config source text, e.g. the dumped config an MMEngine checkpoint carries in
    ``meta["cfg"]`` (``_base_`` paths, if any, resolve against the current directory)."""
    if not isinstance(text, str):
        raise ConfigError(f"{name}: expected config text, got {type(text).__name__}")
    return _plain(_read(Path.cwd() / name, (), text=text))


def find_unevaluated(value: Any, prefix: str = "") -> list[tuple[str, Unevaluated]]:
    """(dotted key, marker) of every :class:`Unevaluated` value nested in ``value``."""
    found: list[tuple[str, Unevaluated]] = []
    items: Iterable[tuple[Any, Any]] = ()
    if isinstance(value, Unevaluated):
        return [(prefix, value)]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    for k, v in items:
        found += find_unevaluated(v, f"{prefix}.{k}" if prefix else str(k))
    return found


# ================================================================================ MMSeg model dict -> segrt model
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


# ------------------------------------------------------------------------------------------------------- backbones
def _backbone_checks(sec: _Section, spec: ModelSpec, part: Part, kwargs: dict[str, Any], attrs: tuple[str, ...],
                     ) -> None:
    for k in attrs:
        if k in kwargs:
            spec.check(sec.key(k), kwargs[k], lambda m, k=k: getattr(part(m), k, _NO_ATTR), optional=True)


def _resnet(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    depth = sec.get("depth")
    deep = True if sec.type == "ResNetV1c" else bool(sec.get("deep_stem", False))
    sec.expect("avg_down", sec.type == "ResNetV1d", (False,))
    sec.expect("num_stages", 4, (4,))
    sec.expect("style", "pytorch", ("pytorch",))
    for key in ("dcn", "plugins", "multi_grid", "conv_cfg"):
        sec.expect(key, None, (None,))
    sec.get("stage_with_dcn", None)  # only read with dcn
    kwargs = {
        "in_channels": sec.get("in_channels", 3), "stem_channels": sec.get("stem_channels", 64),
        "base_channels": sec.get("base_channels", 64), "strides": sec.get("strides", (1, 2, 2, 2)),
        "dilations": sec.get("dilations", (1, 1, 1, 1)), "out_indices": sec.get("out_indices", (0, 1, 2, 3)),
        "contract_dilation": sec.get("contract_dilation", False),
    }
    _norm(sec, spec, "norm_cfg", {"type": "BN"}, part)
    spec.check(sec.key("depth"), depth, lambda m: part(m).depth)
    spec.check(sec.key("deep_stem"), deep, lambda m: part(m).deep_stem)
    _backbone_checks(sec, spec, part, kwargs, ("in_channels", "strides", "dilations", "out_indices"))
    return f"resnet{depth}" + ("" if deep else "-v1b"), kwargs


def _mobilenetv2(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    kwargs = {
        "widen_factor": float(sec.get("widen_factor", 1.0)), "strides": sec.get("strides", (1, 2, 2, 2, 1, 2, 1)),
        "dilations": sec.get("dilations", (1,) * 7), "out_indices": sec.get("out_indices", (1, 2, 4, 6)),
    }
    sec.expect("conv_cfg", None, (None,))
    _norm(sec, spec, "norm_cfg", {"type": "BN"}, part)
    _act(sec, "act_cfg", "ReLU6", ("ReLU6",))
    _backbone_checks(sec, spec, part, kwargs, ("widen_factor", "strides", "dilations", "out_indices"))
    return "mobilenetv2", kwargs


def _mobilenetv3(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    arch = sec.expect("arch", "small", ("small", "large"))
    sec.expect("conv_cfg", None, (None,))
    kwargs: dict[str, Any] = {"out_indices": sec.get("out_indices", (0, 1, 12)),
                              "reduction_factor": sec.get("reduction_factor", 1)}
    kwargs["norm_eps"] = _norm(sec, spec, "norm_cfg", {"type": "BN"}, part)
    _backbone_checks(sec, spec, part, kwargs, ("out_indices", "reduction_factor"))
    return f"mobilenetv3-{arch}", kwargs


def _mit(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    from training.models.backbones.mit import MIT_ARCH

    sec.expect("num_stages", 4, (4,))
    kwargs: dict[str, Any] = {
        "in_channels": sec.get("in_channels", 3), "embed_dims": sec.get("embed_dims", 64),
        "num_layers": sec.get("num_layers", (3, 4, 6, 3)), "num_heads": sec.get("num_heads", (1, 2, 4, 8)),
        "patch_sizes": sec.get("patch_sizes", (7, 3, 3, 3)), "strides": sec.get("strides", (4, 2, 2, 2)),
        "sr_ratios": sec.get("sr_ratios", (8, 4, 2, 1)), "out_indices": sec.get("out_indices", (0, 1, 2, 3)),
        "mlp_ratio": sec.get("mlp_ratio", 4), "qkv_bias": sec.get("qkv_bias", True),
        "drop_rate": sec.get("drop_rate", 0.0), "attn_drop_rate": sec.get("attn_drop_rate", 0.0),
        "drop_path_rate": sec.get("drop_path_rate", 0.0),
    }
    _act(sec, "act_cfg", "GELU", ("GELU",))
    kwargs["norm_eps"] = _norm(sec, spec, "norm_cfg", {"type": "LN", "eps": 1e-6}, part, allowed=("LN",))
    _backbone_checks(sec, spec, part, kwargs, ("in_channels", "out_indices"))
    variant = next((v for v, (dims, layers) in MIT_ARCH.items()
                    if dims == kwargs["embed_dims"] and tuple(layers) == tuple(kwargs["num_layers"])), "b0")
    return f"mit-{variant}", kwargs


def _convnext(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    from training.models.backbones.convnext import ARCH

    arch = sec.get("arch", "tiny")
    kwargs: dict[str, Any] = {}
    if isinstance(arch, dict):  # mmpretrain also takes dict(depths=..., channels=...)
        kwargs.update(depths=tuple(arch["depths"]), channels=tuple(arch["channels"]))
        name = "convnext-tiny"
    elif arch in ARCH:
        name = f"convnext-{arch}"
        kwargs.update(depths=ARCH[arch][0], channels=ARCH[arch][1])
    else:
        sec.fail("arch", arch, f"segrt's ConvNeXt archs are {sorted(ARCH)} or dict(depths=..., channels=...)")
    out = sec.get("out_indices", -1)
    kwargs.update(
        in_channels=sec.get("in_channels", 3), stem_patch_size=sec.get("stem_patch_size", 4),
        drop_path_rate=sec.get("drop_path_rate", 0.0), layer_scale_init_value=sec.get("layer_scale_init_value", 1e-6),
        out_indices=tuple(i % 4 for i in ((out,) if isinstance(out, int) else out)),
    )
    sec.expect("gap_before_final_norm", True, (False,))
    sec.expect("linear_pw_conv", True, (True,))
    sec.expect("use_grn", False, (False,))
    _norm(sec, spec, "norm_cfg", {"type": "LN2d", "eps": 1e-6}, part, allowed=("LN2d",))
    _act(sec, "act_cfg", "GELU", ("GELU",))
    _backbone_checks(sec, spec, part, kwargs, ("out_indices", "in_channels"))
    spec.check(sec.key("arch") + " (depths)", kwargs["depths"], lambda m: part(m).depths)
    spec.check(sec.key("arch") + " (channels)", kwargs["channels"], lambda m: part(m).channels)
    return name, kwargs


def _unet(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    kwargs = {
        "in_channels": sec.get("in_channels", 3), "base_channels": sec.get("base_channels", 64),
        "num_stages": sec.get("num_stages", 5), "strides": sec.get("strides", (1, 1, 1, 1, 1)),
        "enc_num_convs": sec.get("enc_num_convs", (2, 2, 2, 2, 2)), "dec_num_convs": sec.get("dec_num_convs",
                                                                                              (2, 2, 2, 2)),
        "downsamples": sec.get("downsamples", (True, True, True, True)),
        "enc_dilations": sec.get("enc_dilations", (1, 1, 1, 1, 1)), "dec_dilations": sec.get("dec_dilations",
                                                                                              (1, 1, 1, 1)),
    }
    upsample = sec.get("upsample_cfg", {"type": "InterpConv"})
    if dict(upsample) != {"type": "InterpConv"}:
        sec.fail("upsample_cfg", upsample, "segrt's UNet upsamples with MMSeg's default InterpConv")
    for key in ("conv_cfg", "dcn", "plugins"):
        sec.expect(key, None, (None,))
    _norm(sec, spec, "norm_cfg", {"type": "BN"}, part)
    _act(sec, "act_cfg", "ReLU", ("ReLU",))
    _backbone_checks(sec, spec, part, kwargs, ("in_channels", "num_stages"))
    return "unet", kwargs


_VIT_DEFAULTS = {  # MMSeg VisionTransformer's settings that segrt's takes under the same names
    "img_size": 224, "patch_size": 16, "patch_pad": "corner", "in_channels": 3, "embed_dims": 768, "num_layers": 12,
    "num_heads": 12, "mlp_ratio": 4, "out_indices": -1, "qkv_bias": True, "drop_rate": 0.0, "attn_drop_rate": 0.0,
    "drop_path_rate": 0.0, "with_cls_token": True, "output_cls_token": False, "patch_norm": False,
    "patch_bias": False, "pre_norm": False, "final_norm": False, "interpolate_mode": "bicubic", "num_fcs": 2,
}


def _vit(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    try:
        from training.models.zoo.vit import VIT_VARIANTS
    except ImportError:  # the ViT family is not in this build
        VIT_VARIANTS = {}
    kwargs = {k: sec.get(k, d) for k, d in _VIT_DEFAULTS.items()}
    if isinstance(kwargs["img_size"], tuple) and len(set(kwargs["img_size"])) == 1:
        kwargs["img_size"] = kwargs["img_size"][0]
    sec.expect("out_origin", False, (False,))
    sec.get("frozen_exclude", None)  # training-only
    _act(sec, "act_cfg", "GELU", ("GELU",))
    kwargs["norm_eps"] = _norm(sec, spec, "norm_cfg", {"type": "LN"}, part, allowed=("LN",))
    dims = (kwargs["embed_dims"], kwargs["num_layers"], kwargs["num_heads"])
    variant = next((v for v, arch in VIT_VARIANTS.items() if tuple(arch) == dims), "base")
    _backbone_checks(sec, spec, part, kwargs, ("patch_size", "embed_dims", "num_layers", "num_heads",
                                                "interpolate_mode", "with_cls_token", "output_cls_token",
                                                "final_norm", "in_channels"))
    return f"vit-{variant}", kwargs


def _inner(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    """The backbone nested in a wrapper's ``backbone_cfg`` (BiSeNetV1's context path, STDC's STDCNet)."""
    inner = _Section(dict(sec.get("backbone_cfg")), sec.key("backbone_cfg"))
    mapper = BACKBONES.get(inner.type)
    if mapper is None or mapper in (_bisenetv1, _stdc_context):
        inner.fail("type", inner.type, f"unsupported backbone; segrt converts {sorted(BACKBONES)}")
    name, kwargs = mapper(inner, spec, part)
    inner.finish()
    return name, kwargs


def _bisenetv1(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    name, kwargs = _inner(sec, spec, lambda m: part(m).context_path.backbone)
    head = spec.model.head_kwargs
    head["spatial_channels"] = list(sec.get("spatial_channels", (64, 64, 64, 128)))
    head["fusion_channels"] = sec.get("out_channels", 256)
    context = sec.get("context_channels", (128, 256, 512))
    spec.check(sec.key("context_channels"), context, lambda m: (part(m).context_path.conv_head16.conv.out_channels,
                                                                *part(m).context_path.backbone.out_channels[2:]))
    spec.check(sec.key("in_channels"), sec.get("in_channels", 3), lambda m: part(m).in_channels)
    sec.expect("out_indices", (0, 1, 2), ((0, 1, 2),))
    sec.expect("align_corners", False, (False,))
    sec.expect("conv_cfg", None, (None,))
    _norm(sec, spec, "norm_cfg", {"type": "BN"}, part)
    _act(sec, "act_cfg", "ReLU", ("ReLU",))
    return name, kwargs


def _bisenetv2(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    kwargs = {
        "in_channels": sec.get("in_channels", 3), "detail_channels": sec.get("detail_channels", (64, 64, 128)),
        "semantic_channels": sec.get("semantic_channels", (16, 32, 64, 128)),
        "semantic_expansion_ratio": sec.get("semantic_expansion_ratio", 6),
        "bga_channels": sec.get("bga_channels", 128), "align_corners": sec.get("align_corners", False),
    }
    sec.expect("out_indices", (0, 1, 2, 3, 4), ((0, 1, 2, 3, 4),))
    sec.expect("conv_cfg", None, (None,))
    _norm(sec, spec, "norm_cfg", {"type": "BN"}, part)
    _act(sec, "act_cfg", "ReLU", ("ReLU",))
    return "bisenetv2", kwargs


def _stdcnet(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    variant = {"STDCNet1": "stdc1", "STDCNet2": "stdc2"}.get(sec.get("stdc_type"))
    if variant is None:
        sec.fail("stdc_type", sec.cfg.get("stdc_type"), "segrt supports 'STDCNet1' or 'STDCNet2'")
    kwargs = {"in_channels": sec.get("in_channels"), "channels": sec.get("channels"),
              "num_convs": sec.get("num_convs", 4)}
    sec.expect("bottleneck_type", None, ("cat",))
    sec.expect("with_final_conv", False, (False,))
    sec.expect("conv_cfg", None, (None,))
    _norm(sec, spec, "norm_cfg", _REQUIRED, part)
    _act(sec, "act_cfg", _REQUIRED, ("ReLU",))
    return variant, kwargs


def _stdc_context(sec: _Section, spec: ModelSpec, part: Part) -> tuple[str, dict[str, Any]]:
    name, kwargs = _inner(sec, spec, lambda m: part(m).backbone)
    head = spec.model.head_kwargs
    head["context_channels"] = sec.get("out_channels", 128)
    ffm = _Section(dict(sec.get("ffm_cfg", {"in_channels": 512, "out_channels": 256, "scale_factor": 4})),
                   sec.key("ffm_cfg"))
    head["fusion_channels"] = ffm.get("out_channels")
    spec.check(ffm.key("in_channels"), ffm.get("in_channels"),
               lambda m: part(m).out_channels[0] + part(m).out_channels[2])  # stage 2 + stride-8 context
    spec.check(ffm.key("scale_factor"), ffm.get("scale_factor", 4),  # squeeze ratio of the FFM's attention
               lambda m: part(m).ffm.conv0.conv.out_channels // part(m).ffm.attention[1].conv.out_channels)
    ffm.finish()
    last = sec.get("last_in_channels", (1024, 512))
    spec.check(sec.key("last_in_channels"), last, lambda m: tuple(part(m).backbone.out_channels[::-1][:2]))
    sec.expect("upsample_mode", "nearest", ("nearest",))
    sec.expect("align_corners", None, (None,))
    _norm(sec, spec, "norm_cfg", {"type": "BN"}, part)
    return name, kwargs


BackboneMapper = Callable[[_Section, ModelSpec, Part], tuple[str, dict[str, Any]]]
#: MMSeg backbone type -> mapper returning (segrt backbone name, backbone_kwargs).
BACKBONES: dict[str, BackboneMapper] = {
    "ResNet": _resnet, "ResNetV1c": _resnet, "ResNetV1d": _resnet, "MobileNetV2": _mobilenetv2,
    "MobileNetV3": _mobilenetv3, "MixVisionTransformer": _mit, "BiSeNetV1": _bisenetv1, "BiSeNetV2": _bisenetv2,
    "STDCNet": _stdcnet, "STDCContextPathNet": _stdc_context, "mmpretrain.ConvNeXt": _convnext, "ConvNeXt": _convnext,
    "UNet": _unet, "VisionTransformer": _vit,
}


# ----------------------------------------------------------------------------------------------------------- heads
@dataclass(frozen=True)
class HeadType:
    """An MMSeg decode-head type: its own settings with MMSeg's defaults (``_REQUIRED``: must be given), whether it
    reads several levels, the activation/norm types of segrt's version, and, as an auxiliary head, the builder
    keyword its settings map to (``aux_options``) and the builder flag that adds it (``aux_flag``)."""

    defaults: Mapping[str, Any] = field(default_factory=dict)
    multi: bool = False
    act: tuple[Any, ...] = ("ReLU",)
    norm: tuple[Any, ...] = _BN
    aux_options: Mapping[str, str] = field(default_factory=dict)
    aux_flag: str | None = None
    norm_default: Any = None  # the head's own default norm_cfg (BaseDecodeHead's is None)
    act_default: str = "ReLU"
    # Settings a mismatch of which shows in the weights (shapes, extra keys) or only matters in training: they
    # need no attribute on segrt's module.
    trusted: frozenset[str] = frozenset()
    norm_layer: bool = False  # has MMSeg's ``norm_layer`` (a LayerNorm on the input tokens)


_FCN = {"num_convs": 2, "kernel_size": 3, "concat_input": True, "dilation": 1}
HEADS: dict[str, HeadType] = {
    "FCNHead": HeadType(_FCN),
    "PSPHead": HeadType({"pool_scales": (1, 2, 3, 6)}),
    "ASPPHead": HeadType({"dilations": (1, 6, 12, 18)}),
    "DepthwiseSeparableASPPHead": HeadType(
        {"dilations": (1, 6, 12, 18), "c1_in_channels": _REQUIRED, "c1_channels": _REQUIRED}),
    "UPerHead": HeadType({"pool_scales": (1, 2, 3, 6)}, multi=True),
    "FPNHead": HeadType({"feature_strides": _REQUIRED}, multi=True),
    "CCHead": HeadType({"recurrence": 2, "kernel_size": 3, "concat_input": True, "dilation": 1}),
    "DAHead": HeadType({"pam_channels": _REQUIRED}),
    "OCRHead": HeadType({"ocr_channels": _REQUIRED, "scale": 1}),
    "LRASPPHead": HeadType({"branch_channels": (32, 64)}, multi=True),
    "SegformerHead": HeadType({"interpolate_mode": "bilinear"}, multi=True),
    "STDCHead": HeadType({**_FCN, "boundary_threshold": 0.1}, aux_options={"boundary_threshold": "boundary_threshold"},
                         aux_flag="boundary_head"),
    "SETRUPHead": HeadType({"num_convs": 1, "up_scale": 4, "kernel_size": 3}, norm_layer=True,
                           aux_options={"num_convs": "aux_num_convs", "up_scale": "aux_up_scale",
                                        "kernel_size": "aux_kernel_size"}),
    "SETRMLAHead": HeadType({"mla_channels": 128, "up_scale": 4}, multi=True),
    "SegmenterMaskTransformerHead": HeadType(
        {"num_layers": _REQUIRED, "num_heads": _REQUIRED, "embed_dims": _REQUIRED, "mlp_ratio": 4,
         "drop_path_rate": 0.1, "drop_rate": 0.0, "attn_drop_rate": 0.0, "num_fcs": 2, "qkv_bias": True},
        act=("GELU",), act_default="GELU", norm=("LN",), norm_default={"type": "LN"},
        trusted=frozenset({"mlp_ratio", "drop_path_rate", "drop_rate", "attn_drop_rate", "num_fcs", "qkv_bias"})),
}
# Values our head modules do not keep as attributes, read from their layers instead: (head type, key) -> getter.
HEAD_GETTERS: dict[tuple[str, str], Callable[[nn.Module], Any]] = {
    ("FCNHead", "dilation"): lambda h: h.convs[0].conv.dilation[0] if h.num_convs else 1,
    ("STDCHead", "dilation"): lambda h: h.convs[0].conv.dilation[0] if h.num_convs else 1,
    ("CCHead", "dilation"): lambda h: h.convs[0].conv.dilation[0],
    ("DepthwiseSeparableASPPHead", "c1_channels"): lambda h: h.c1_bottleneck.conv.out_channels
    if h.c1_bottleneck is not None else 0,
    ("SegformerHead", "interpolate_mode"): lambda h: "bilinear",  # segrt's SegformerHead resizes bilinearly
    ("SETRUPHead", "num_convs"): lambda h: len(h.up_convs),
    ("SETRUPHead", "up_scale"): lambda h: h.up_convs[0][1].scale,
    ("SETRUPHead", "kernel_size"): lambda h: h.up_convs[0][0].conv.kernel_size[0],
    ("SETRMLAHead", "up_scale"): lambda h: h.up_scale,
    ("SegmenterMaskTransformerHead", "num_layers"): lambda h: len(h.layers),
    ("SegmenterMaskTransformerHead", "embed_dims"): lambda h: h.dec_proj.out_features,
}


@dataclass(frozen=True)
class Rule:
    """Which segrt builder an MMSeg model maps to: its decode head type(s) (several: a cascade), neck type and,
    optionally, backbone types; ``stages`` renames settings per cascade stage (config key -> builder keyword;
    None: every setting the builder takes under the same name); ``fixed`` are builder options the rule implies;
    ``when`` narrows the rule by the decode head dicts."""

    model: str
    heads: tuple[str, ...]
    neck: str | None = None
    backbones: tuple[str, ...] = ()
    stages: tuple[Mapping[str, str] | None, ...] = ()
    fixed: Mapping[str, Any] = field(default_factory=dict)  # builder options the rule sets (U-Net's decoder)
    when: Callable[[list[dict[str, Any]]], bool] | None = None  # also tests the decode head dicts


#: First match wins, so backbone-specific rules come first.
RULES: list[Rule] = [
    Rule("unet", ("FCNHead",), backbones=("UNet",), fixed={"decoder": "fcn"}),
    Rule("unet", ("ASPPHead",), backbones=("UNet",), fixed={"decoder": "aspp"}),
    Rule("unet", ("PSPHead",), backbones=("UNet",), fixed={"decoder": "psp"}),
    Rule("bisenetv1", ("FCNHead",), backbones=("BiSeNetV1",)),
    Rule("bisenetv2", ("FCNHead",), backbones=("BiSeNetV2",)),
    Rule("stdc", ("FCNHead",), backbones=("STDCContextPathNet",)),
    Rule("segmenter_linear", ("FCNHead",), backbones=("VisionTransformer",)),
    Rule("fcn", ("FCNHead",)),
    Rule("pspnet", ("PSPHead",)),
    Rule("fastfcn_psp", ("PSPHead",), neck="JPU"),
    Rule("deeplabv3", ("ASPPHead",)),
    Rule("fastfcn_aspp", ("ASPPHead",), neck="JPU"),
    Rule("deeplabv3plus", ("DepthwiseSeparableASPPHead",)),
    Rule("upernet", ("UPerHead",)),
    Rule("fpn", ("FPNHead",), neck="FPN"),
    Rule("ccnet", ("CCHead",)),
    Rule("danet", ("DAHead",)),
    Rule("ocrnet", ("FCNHead", "OCRHead"), stages=({"channels": "fcn_channels"}, None)),
    Rule("lraspp", ("LRASPPHead",)),
    Rule("segformer", ("SegformerHead",)),
    Rule("segmenter_mask", ("SegmenterMaskTransformerHead",)),
    Rule("setr_naive", ("SETRUPHead",), when=lambda heads: heads[0].get("num_convs", 1) == 1),
    Rule("setr_pup", ("SETRUPHead",)),
    Rule("setr_mla", ("SETRMLAHead",), neck="MLANeck"),
]


def _head(sec: _Section, spec: ModelSpec, head: Part, options: Mapping[str, str], aux: bool = False) -> int:
    """Read one decode/auxiliary head dict: settings in ``options`` (config key -> builder keyword) go to the
    builder, every setting is checked against the built head ``head(model)``. Returns its num_classes."""
    kind = HEADS.get(sec.type)
    if kind is None:
        sec.fail("type", sec.type, f"unsupported head type; segrt converts {sorted(HEADS)}")
    num_classes = sec.get("num_classes")
    spec.check(sec.key("num_classes"), num_classes, lambda m: head(m).num_classes)
    out_channels = sec.get("out_channels", None)
    if out_channels not in (None, num_classes):
        sec.fail("out_channels", out_channels, f"only out_channels == num_classes ({num_classes}) is supported "
                                               "(no binary sigmoid output)")
    sec.get("threshold", None)
    sec.expect("input_transform", "multiple_select" if kind.multi else None,
               ("multiple_select",) if kind.multi else (None,))
    sec.expect("conv_cfg", None, (None,))
    _norm(sec, spec, "norm_cfg", kind.norm_default, head, kind.norm)
    _act(sec, "act_cfg", kind.act_default, kind.act)
    if kind.norm_layer:
        _norm(sec, spec, "norm_layer", {"type": "LN", "eps": 1e-6}, lambda m: head(m).norm, ("LN",))
    sec.get("init_std", None)  # training-only (initialisation)
    for key, default in {**_BASE_HEAD, **kind.defaults}.items():
        value = sec.get(key, default)
        if aux and key == "align_corners":
            continue  # an auxiliary head's align_corners only resizes its logits for its training loss
        getter = HEAD_GETTERS.get((sec.type, key), lambda h, key=key: getattr(h, key, _NO_ATTR))
        if key in options:
            spec.model.head_kwargs[options[key]] = list(value) if isinstance(value, tuple) else value
        spec.check(sec.key(key), value, lambda m, g=getter: g(head(m)), optional=key in options or key in kind.trusted)
    sec.finish()
    return num_classes


# BaseDecodeHead's settings and MMSeg's defaults (norm_cfg/act_cfg/conv_cfg/input_transform handled apart).
_BASE_HEAD = {"in_channels": _REQUIRED, "channels": _REQUIRED, "in_index": -1, "dropout_ratio": 0.1,
              "align_corners": False}


# ----------------------------------------------------------------------------------------------------------- necks
def _fpn_neck(sec: _Section, spec: ModelSpec) -> None:
    in_channels = sec.get("in_channels")
    spec.model.head_kwargs["neck_channels"] = sec.get("out_channels")
    spec.check(sec.key("in_channels"), in_channels, lambda m: m.neck.in_channels)
    spec.check(sec.key("out_channels"), spec.model.head_kwargs["neck_channels"], lambda m: m.neck.out_channels)
    sec.expect("num_outs", len(in_channels), (len(in_channels),))
    sec.expect("start_level", 0, (0,))
    sec.expect("end_level", -1, (-1, len(in_channels) - 1))
    for key in ("add_extra_convs", "extra_convs_on_inputs", "relu_before_extra_convs", "no_norm_on_lateral"):
        sec.expect(key, False, (False,))
    for key in ("conv_cfg", "norm_cfg", "act_cfg"):
        sec.expect(key, None, (None,))
    upsample = sec.get("upsample_cfg", {"mode": "nearest"})
    if dict(upsample) != {"mode": "nearest"}:
        sec.fail("upsample_cfg", upsample, "segrt's FPN upsamples with nearest interpolation to the next size")


def _jpu_neck(sec: _Section, spec: ModelSpec) -> None:
    in_channels = sec.get("in_channels", (512, 1024, 2048))
    spec.model.head_kwargs["neck_channels"] = sec.get("mid_channels", 512)
    spec.model.head_kwargs["jpu_dilations"] = list(sec.get("dilations", (1, 2, 4, 8)))
    end = sec.get("end_level", -1)
    spec.check(sec.key("in_channels"), in_channels, lambda m: m.neck.in_channels)
    spec.check(sec.key("start_level"), sec.get("start_level", 0), lambda m: m.neck.start_level)
    spec.check(sec.key("end_level"), len(in_channels) if end == -1 else end, lambda m: m.neck.end_level)
    spec.check(sec.key("align_corners"), sec.get("align_corners", False), lambda m: m.neck.align_corners)
    sec.expect("conv_cfg", None, (None,))
    _norm(sec, spec, "norm_cfg", {"type": "BN"}, lambda m: m.neck)
    _act(sec, "act_cfg", "ReLU", ("ReLU",))


def _mla_neck(sec: _Section, spec: ModelSpec) -> None:
    spec.check(sec.key("in_channels"), sec.get("in_channels", (1024, 1024, 1024, 1024)), lambda m: m.neck.in_channels)
    spec.model.head_kwargs["neck_channels"] = sec.get("out_channels", 256)
    spec.check(sec.key("out_channels"), spec.model.head_kwargs["neck_channels"], lambda m: m.neck.out_channels)
    _norm(sec, spec, "norm_layer", {"type": "LN", "eps": 1e-6}, lambda m: m.neck, ("LN",))
    _norm(sec, spec, "norm_cfg", None, lambda m: m.neck)
    _act(sec, "act_cfg", None, ("ReLU",))


#: MMSeg neck type -> reader (sets builder options and checks).
NECKS: dict[str, Callable[[_Section, ModelSpec], None]] = {"FPN": _fpn_neck, "JPU": _jpu_neck, "MLANeck": _mla_neck}


# ------------------------------------------------------------------------------------------------------ the model
def _auxiliary(value: Any, spec: ModelSpec, drop_aux: bool) -> None:
    options = _options(spec.model.name)
    flags = {k.aux_flag: t for t, k in HEADS.items() if k.aux_flag and k.aux_flag in options}
    heads = [] if value is None else list(value) if isinstance(value, list | tuple) else [value]
    for flag, kind in flags.items():
        spec.model.head_kwargs[flag] = any(isinstance(h, dict) and h.get("type") == kind for h in heads)
    if not heads or drop_aux:
        spec.model.aux = False
        if heads:
            spec.notes.append("auxiliary head(s) dropped (drop_aux=True)")
        return
    spec.model.aux = True
    widths = [h.get("channels") for h in heads if isinstance(h, dict)]
    aux_opts: dict[str, str] = {}
    if "aux_channels" in options:
        if _takes_sequence(spec.model.name, "aux_channels"):
            spec.model.head_kwargs["aux_channels"] = widths
        elif len(set(widths)) == 1:
            aux_opts["channels"] = "aux_channels"

    def count(m: nn.Module) -> int:
        a = m.auxiliary_head
        return 0 if a is None else len(a) if isinstance(a, nn.ModuleList) else 1

    spec.check("model.auxiliary_head (number of heads)", len(heads), count)
    for i, h in enumerate(heads):
        where = "model.auxiliary_head" + (f"[{i}]" if isinstance(value, list | tuple) else "")
        getter = (lambda m, i=i: m.auxiliary_head[i]) if len(heads) > 1 else (lambda m: m.auxiliary_head)
        kind = HEADS.get(h.get("type")) if isinstance(h, dict) else None
        extra = {k: v for k, v in (kind.aux_options if kind else {}).items() if v in options}
        try:
            _head(_Section(h, where), spec, getter, {**aux_opts, **extra}, aux=True)
        except ValueError as e:
            raise ValueError(f"{e} (pass drop_aux=True to convert without the training-only auxiliary head)") from None


def _rule(heads: tuple[str, ...], neck: str | None, backbone: str, cfgs: list[dict[str, Any]]) -> Rule:
    from training.models import list_models

    for rule in RULES:
        if rule.heads == heads and rule.neck == neck and (not rule.backbones or backbone in rule.backbones) and \
                (rule.when is None or rule.when(cfgs)):
            if rule.model not in list_models():
                raise ValueError(f"model.decode_head.type={heads[-1]!r}: maps to segrt model {rule.model!r}, which "
                                 "is not registered in this build")
            return rule
    unknown = [h for h in heads if h not in HEADS]
    if unknown:
        key = "model.decode_head.type" if len(heads) == 1 else "model.decode_head[*].type"
        raise ValueError(f"{key}={unknown[0]!r}: unsupported decode head; segrt converts "
                         f"{sorted({h for r in RULES for h in r.heads})}")
    raise ValueError(f"model.decode_head.type={heads if len(heads) > 1 else heads[0]!r} with model.neck.type="
                     f"{neck!r} on model.backbone.type={backbone!r}: no segrt model has this combination (segrt "
                     f"converts: {', '.join(_describe(r) for r in RULES)})")


def _describe(rule: Rule) -> str:
    heads = "+".join(rule.heads)
    return f"{heads}" + (f" with {rule.neck}" if rule.neck else "") + (
        f" on {'/'.join(rule.backbones)}" if rule.backbones else "")


def model_spec(model: Mapping[str, Any], *, drop_aux: bool = False) -> ModelSpec:
    """Map an MMSeg ``model`` dict (from :func:`read_config`) onto a segrt builder; ``ValueError`` names the
    config key of anything that cannot be built. ``spec.verify(built_model)`` completes the checks."""
    sec = _Section(dict(model), "model")
    head_cfg = sec.get("decode_head")
    cascade = isinstance(head_cfg, list | tuple)
    sec.expect("type", "EncoderDecoder", ("CascadeEncoderDecoder",) if cascade else ("EncoderDecoder",))
    if cascade:
        sec.expect("num_stages", _REQUIRED, (len(head_cfg),))
    heads = [_Section(dict(h) if isinstance(h, dict) else h,
                      f"model.decode_head[{i}]" if cascade else "model.decode_head")
             for i, h in enumerate(head_cfg if cascade else [head_cfg])]
    neck = sec.get("neck", None)
    if neck is not None and not isinstance(neck, dict):
        sec.fail("neck", neck, "a list of necks is not supported")
    bb = _Section(dict(sec.get("backbone")), "model.backbone")
    rule = _rule(tuple(h.type for h in heads), (neck or {}).get("type"), bb.type, [h.cfg for h in heads])
    spec = ModelSpec(ModelCfg(name=rule.model, backbone="", backbone_kwargs={}, head_kwargs=dict(rule.fixed),
                              aux=False), num_classes=int(heads[-1].cfg.get("num_classes", 0)))
    mapper = BACKBONES.get(bb.type)
    if mapper is None:
        bb.fail("type", bb.type, f"unsupported backbone; segrt converts {sorted(BACKBONES)}")
    spec.model.backbone, spec.model.backbone_kwargs = mapper(bb, spec, lambda m: m.backbone)
    bb.finish()
    if neck is not None:
        neck_sec = _Section(dict(neck), "model.neck")
        NECKS[neck_sec.type](neck_sec, spec)
        neck_sec.finish()
    options = _options(rule.model)
    for i, h in enumerate(heads):
        stage = rule.stages[i] if rule.stages else None
        kind = HEADS[h.type]
        names = stage if stage is not None else {k: k for k in (*_BASE_HEAD, *kind.defaults)}
        getter = (lambda m, i=i: m.decode_head[i]) if cascade else (lambda m: m.decode_head)
        _head(h, spec, getter, {k: v for k, v in names.items() if v in options})
    spec.ignore_index = int(heads[-1].cfg.get("ignore_index", 255))
    _auxiliary(sec.get("auxiliary_head", None), spec, drop_aux)
    sec.get("data_preprocessor", None)
    sec.get("train_cfg", None)
    test_cfg = sec.get("test_cfg", None) or {}
    if test_cfg.get("mode", "whole") != "whole":
        spec.notes.append(f"model.test_cfg={test_cfg}: MMSeg evaluated this model with sliding windows; segrt runs it "
                          "on the whole (resized) image")
    sec.finish()
    return spec
