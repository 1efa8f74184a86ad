"""Mean Teacher: the spec (knobs with the paper's defaults, data needs, logged terms, builder)
of ``vrsearch/methods/mean_teacher.py``, where the method and its equations are. No torch here:
a study's driver validates with it (:mod:`vrsearch.methods.specs`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vrsearch.core.knobs import SupervisedLossKnob
from vrsearch.registry import MethodParams, register_method, unlabeled


class MeanTeacherParams(MethodParams):
    loss: SupervisedLossKnob = "dice_ce"
    ema_decay: float = Field(0.999, ge=0.0, le=1.0, description="α: EMA decay of the teacher, ξ ← α·ξ + (1−α)·θ")
    ema_warmup: bool = Field(True, description="α_t = min(1 − 1/(t+1), α): the reference EMA warm-up")
    lambda_u: float = Field(0.1, ge=0.0, description="λ_u: weight of L_cons in L = L_sup + λ_u·r(t)·L_cons")
    rampup_fraction: float = Field(
        0.4,
        ge=0.0,
        le=1.0,
        description="ramp-up length of r(t) = exp(−5(1−t)²), as a fraction of train.iterations (0 = none)",
    )
    noise_std: float = Field(0.1, ge=0.0, description="std of the Gaussian input noise ε_s, ε_t of student and teacher")
    consistency_on: Literal["unlabeled", "all"] = Field(
        "unlabeled", description="patches L_cons is averaged over: the unlabeled ones or labeled ∪ unlabeled"
    )
    evaluate: Literal["teacher", "student"] = Field(
        "teacher", description="network evaluated on val/test: the EMA teacher ξ or the student θ"
    )


_SUMMARY = "student + EMA teacher; MSE consistency of softmax outputs under input noise, sigmoid ramp-up"


_TERMS = {
    "loss": "L = L_sup + λ_u·r(t)·L_cons",
    "sup": "L_sup: supervised loss of the student on the labeled patches (with input noise ε_s)",
    "cons": "L_cons: MSE between student and EMA-teacher softmax under independent input noise",
    "rampup": "r(t) = exp(−5(1−t)²): sigmoid ramp-up of the consistency weight",
}


register_method(
    "mean_teacher",
    params=MeanTeacherParams,
    citation="Tarvainen & Valpola, Mean teachers are better role models, NeurIPS 2017",
    summary=_SUMMARY,
    needs=unlabeled,
    terms=_TERMS,
    builder="vrsearch.methods.mean_teacher:build_mean_teacher",
)
