"""Methods: one file per paper or baseline, each registering itself
(:func:`vrsearch.registry.register_method`). Every module of this package is
imported when the package is — adding a method is adding its file (and its
tests; the contract test runs every registered method) — and methods are
looked up here."""

from __future__ import annotations

import importlib
import pkgutil

from vrsearch.methods.base import Batch, BuildContext, Method, StepOutput
from vrsearch.registry import MethodSpec, lookup, registered

_INFRASTRUCTURE = {"base"}
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in _INFRASTRUCTURE:
        importlib.import_module(f"{__name__}.{_module}")


def get_method(name: str) -> MethodSpec:
    """The registered method ``name``; unknown names raise with a suggestion."""
    return lookup(name)


def all_methods() -> list[MethodSpec]:
    """Every registered method, by name."""
    return registered()


__all__ = ["Batch", "BuildContext", "Method", "StepOutput", "all_methods", "get_method"]
