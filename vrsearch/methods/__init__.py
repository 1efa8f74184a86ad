"""Methods: one file per paper or baseline (the implementation, with torch), each with
its spec in :mod:`vrsearch.methods.specs` (its knobs, data needs, terms and builder,
registered with :func:`vrsearch.registry.register_method`). Every spec module is
imported when this package is — adding a method is adding its file, its spec and its
tests (the contract test runs every registered method) — and methods are looked up
here. Nothing here imports torch: the implementation is imported when a method is
built (:meth:`vrsearch.registry.MethodSpec.build`)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from vrsearch.methods import specs
from vrsearch.registry import MethodSpec, lookup, registered

for _module in sorted(m.name for m in pkgutil.iter_modules(specs.__path__)):
    importlib.import_module(f"{specs.__name__}.{_module}")

#: re-exported from :mod:`vrsearch.methods.base` on first use (it imports torch)
_BASE = ("Batch", "BuildContext", "Method", "StepOutput")


def __getattr__(name: str) -> Any:
    if name in _BASE:
        from vrsearch.methods import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_method(name: str) -> MethodSpec:
    """The registered method ``name``; unknown names raise with a suggestion."""
    return lookup(name)


def all_methods() -> list[MethodSpec]:
    """Every registered method, by name."""
    return registered()


__all__ = ["all_methods", "get_method"]  # and Batch, BuildContext, Method, StepOutput on first use
