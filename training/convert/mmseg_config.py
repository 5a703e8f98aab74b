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
"""

from __future__ import annotations

import ast
import operator
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

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
