"""Labeled-only and fully-supervised baselines: the spec (knobs with their defaults, data
needs, logged terms, builder) of ``vrsearch/methods/supervised.py``, where the methods are.
No torch here: a study's driver validates with it (:mod:`vrsearch.methods.specs`)."""

from __future__ import annotations

from pydantic import Field

from vrsearch.core.knobs import SupervisedLossKnob
from vrsearch.registry import DataNeeds, MethodParams, register_method


class SupervisedParams(MethodParams):
    loss: SupervisedLossKnob = "dice_ce"
    all_labels: bool = Field(
        False, description="train on every training label (L = L_sup on all cases): the fully-supervised upper bound"
    )


_SUMMARY = "labeled-only UNet trained with L_sup; all_labels=true is the fully-supervised upper bound"


_TERMS = {
    "loss": "L = L_sup (labeled patches only)",
    "sup": "L_sup: supervised loss (method.params.loss: ½(Dice + CE), Dice or CE) on the labeled patches",
}


def supervised_needs(params: SupervisedParams) -> DataNeeds:
    """Labeled patches only; every training case labeled with ``all_labels``."""
    return DataNeeds(all_labels=params.all_labels)


register_method(
    "supervised",
    params=SupervisedParams,
    citation="baseline",
    summary=_SUMMARY,
    terms=_TERMS,
    needs=supervised_needs,
    builder="vrsearch.methods.supervised:build_supervised",
)

register_method(
    "fully_supervised",
    params=SupervisedParams,
    citation="baseline (upper bound)",
    summary="supervised with every training label (all_labels=true)",
    defaults={"all_labels": True},
    terms=_TERMS,
    needs=supervised_needs,
    builder="vrsearch.methods.supervised:build_supervised",
)
