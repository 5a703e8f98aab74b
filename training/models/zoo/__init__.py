"""Segmentor builders, one module per family; importing this package registers every module's models."""

import importlib
import pkgutil

for _mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _mod.name != "common":
        importlib.import_module(f"{__name__}.{_mod.name}")
