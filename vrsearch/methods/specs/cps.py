"""CPS: the spec (knobs with the paper's defaults, data needs, logged terms, builder)
of ``vrsearch/methods/cps.py``, where the method and its equations are. No torch here:
a study's driver validates with it (:mod:`vrsearch.methods.specs`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vrsearch.core.knobs import SupervisedLossKnob
from vrsearch.registry import MethodParams, register_method, unlabeled


class CPSParams(MethodParams):
    loss: SupervisedLossKnob = "dice_ce"
    lambda_cps: float = Field(
        0.1,
        ge=0.0,
        description="λ_cps: weight of the cross term CE(p_A, ŷ_B) + CE(p_B, ŷ_A) (CPS paper: 1.5; DVCL's ECPS: 0.1)",
    )
    rampup_fraction: float = Field(
        0.4,
        ge=0.0,
        le=1.0,
        description="ramp-up length of r(t) = exp(−5(1−t)²) "
        "on λ_cps, as a fraction of train.iterations (0 = none, the CPS paper)",
    )
    cps_on: Literal["all", "unlabeled"] = Field(
        "all", description="patches of the cross term: labeled ∪ unlabeled (the paper) or unlabeled only"
    )
    evaluate: Literal["a", "b", "mean"] = Field(
        "a", description="network evaluated on val/test: A, B, or the mean of their softmaxes"
    )


_SUMMARY = "twin networks (different inits) supervising each other with hard pseudo-labels"


_TERMS = {
    "loss": "L = L_sup^A + L_sup^B + λ_cps·r(t)·[CE(p_A, ŷ_B) + CE(p_B, ŷ_A)]",
    "sup_a": "L_sup^A: supervised loss of network A on the labeled patches",
    "sup_b": "L_sup^B: supervised loss of network B on the labeled patches",
    "cps": "cross pseudo supervision CE(p_A, ŷ_B) + CE(p_B, ŷ_A), ŷ = the other network's argmax",
    "rampup": "r(t) = exp(−5(1−t)²): sigmoid ramp-up of λ_cps",
}


register_method(
    "cps",
    params=CPSParams,
    citation="Chen et al., Semi-supervised semantic segmentation with cross pseudo supervision, CVPR 2021",
    summary=_SUMMARY,
    needs=unlabeled,
    terms=_TERMS,
    builder="vrsearch.methods.cps:build_cps",
)
