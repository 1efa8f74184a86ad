"""Method registry: every method is registered once as a :class:`MethodSpec`.

A method is data, not a subclass tree: its name, citation, a pydantic
``Params`` model whose fields are every knob the paper searches or ablates
(with the paper's defaults), the data it needs (a function of its Params) and a
builder. Ablation arms are *values* of those fields in a study file.

The builder is named, ``"module:function"``, and imported when a method is built:
a spec module (:mod:`vrsearch.methods.specs`) imports neither torch nor the
method's implementation, so a study's driver validates studies without either.

This module only holds the specs; :mod:`vrsearch.methods` discovers and imports
every spec module and is where they are looked up (``get_method``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from vrsearch.core.names import did_you_mean
from vrsearch.core.step import DataNeeds  # core.step imports torch for annotations only
from vrsearch.errors import VrsearchError


class MethodParams(BaseModel):
    """Base class of every method's ``Params``: unknown knobs are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


@dataclass(frozen=True)
class MethodSpec:
    """A registered method.

    ``build(params, ctx)`` imports the function ``builder`` names (``"module:function"``)
    and returns what it returns, a :class:`vrsearch.methods.base.Method`.
    ``needs(params)`` says what data the step reads (:class:`~vrsearch.core.step.DataNeeds`).
    ``defaults`` overrides the Params defaults (used for variants such as
    ``fully_supervised``, which is ``supervised`` with ``all_labels=True``).
    ``terms`` maps every logged term (``loss`` and the names of ``StepOutput.terms``,
    logged as ``term_<name>``) to a one-line description with the paper's symbol
    or equation; the report labels each loss-term panel with it.
    """

    name: str
    params: type[MethodParams]
    builder: str
    citation: str = ""
    summary: str = ""
    needs: Callable[[Any], DataNeeds] = lambda params: DataNeeds()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    terms: Mapping[str, str] = field(default_factory=dict)

    def build(self, params: MethodParams, ctx: Any) -> Any:
        """The method's module, built by its builder (imported here, with torch)."""
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module), function)(params, ctx)

    def knobs(self) -> dict[str, Any]:
        """Every knob with its default (after this spec's overrides)."""
        values = {k: f.get_default(call_default_factory=True) for k, f in self.params.model_fields.items()}
        values.update(self.defaults)
        return values

    def description(self, knob: str) -> str:
        """The knob's ``Field(description=...)`` (paper symbol and equation); ``""`` for none."""
        field = self.params.model_fields.get(knob)
        return (field.description or "") if field is not None else ""

    def validate(self, raw: Mapping[str, Any] | None) -> MethodParams:
        """Validate user params; raises pydantic ValidationError (see study.errors)."""
        merged = {**self.defaults, **dict(raw or {})}
        return self.params.model_validate(merged)

    def data_needs(self, params: MethodParams | Mapping[str, Any] | None = None) -> DataNeeds:
        """The data the step reads with these params (the defaults when None)."""
        if not isinstance(params, MethodParams):
            params = self.validate(params)
        return self.needs(params)


def unlabeled(params: Any = None) -> DataNeeds:
    """The needs of a semi-supervised step: unlabeled images besides the labeled ones."""
    return DataNeeds(unlabeled=True)


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(
    name: str,
    *,
    params: type[MethodParams],
    builder: str,
    citation: str = "",
    summary: str = "",
    needs: Callable[[Any], DataNeeds] | None = None,
    defaults: Mapping[str, Any] | None = None,
    terms: Mapping[str, str] | None = None,
) -> MethodSpec:
    """Register ``name``, built by ``builder`` = ``"module:function"`` taking ``(params, ctx)``
    (imported only when a method is built; ``terms``: see :class:`MethodSpec`)."""
    if name in _REGISTRY:
        raise ValueError(f"method {name!r} registered twice")
    bad = set(defaults or {}) - set(params.model_fields)
    if bad:
        raise ValueError(f"method {name!r}: defaults name unknown knobs {sorted(bad)}")
    module, _, function = builder.partition(":")
    if not (module.startswith("vrsearch.methods.") and function.isidentifier()):
        raise ValueError(f"method {name!r}: builder {builder!r} is not 'vrsearch.methods.<module>:<function>'")
    _REGISTRY[name] = spec = MethodSpec(
        name=name,
        params=params,
        builder=builder,
        citation=citation,
        summary=summary,
        needs=needs or (lambda params: DataNeeds()),
        defaults=dict(defaults or {}),
        terms=dict(terms or {}),
    )
    return spec


def lookup(name: str) -> MethodSpec:
    """The spec registered under ``name``; unknown names raise with a suggestion. The
    methods must have been imported (:func:`vrsearch.methods.get_method` does that)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        hint = did_you_mean(name, _REGISTRY)
        raise VrsearchError(f"unknown method {name!r}{hint} (registered: {', '.join(sorted(_REGISTRY))})") from None


def registered() -> list[MethodSpec]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


__all__ = [
    "DataNeeds",
    "MethodParams",
    "MethodSpec",
    "ValidationError",
    "lookup",
    "register_method",
    "registered",
    "unlabeled",
]
