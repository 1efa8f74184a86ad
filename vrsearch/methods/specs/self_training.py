"""Self-training: the spec (knobs with the paper's defaults, data needs, logged terms, builder)
of ``vrsearch/methods/self_training.py``, where the method and its equations are. No torch here:
a study's driver validates with it (:mod:`vrsearch.methods.specs`)."""

from __future__ import annotations

from pydantic import Field

from vrsearch.core.knobs import SupervisedLossKnob
from vrsearch.registry import MethodParams, register_method, unlabeled


class SelfTrainingParams(MethodParams):
    loss: SupervisedLossKnob = "dice_ce"
    lambda_pseudo: float = Field(
        1.0, ge=0.0, description="λ_pseudo: weight of CE_masked(student(x_u), ŷ) in L = L_sup + λ_pseudo·CE_masked"
    )
    refresh_fraction: float = Field(
        0.2,
        gt=0.0,
        le=1.0,
        description="P/iterations: the snapshot giving ŷ is "
        "refreshed every P = round(refresh_fraction·iterations) steps (also the warm-up)",
    )
    threshold: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="confidence mask of CE_masked: voxels with snapshot max p below it are ignored (0 = keep all)",
    )


_SUMMARY = "student trained on hard pseudo-labels of a frozen snapshot refreshed every refresh_fraction of training"


_TERMS = {
    "loss": "L = L_sup + λ_pseudo·CE_masked(student(x_u), ŷ)",
    "sup": "L_sup: supervised loss of the student on the labeled patches",
    "pseudo": "CE_masked: student CE to the frozen snapshot's argmax ŷ on unlabeled voxels with max p ≥ threshold",
    "pseudo_fraction": "fraction of unlabeled voxels kept (confidence ≥ threshold); 0 before the first refresh",
}


register_method(
    "self_training",
    params=SelfTrainingParams,
    citation="baseline: self-training with pseudo-labels (Lee 2013; Bai et al., MICCAI 2017)",
    summary=_SUMMARY,
    needs=unlabeled,
    terms=_TERMS,
    builder="vrsearch.methods.self_training:build_self_training",
)
