"""LCL: the spec (knobs with the paper's defaults, data needs, logged terms, builder)
of ``vrsearch/methods/lcl.py``, where the method and its equations are. No torch here:
a study's driver validates with it (:mod:`vrsearch.methods.specs`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vrsearch.core.knobs import SupervisedLossKnob
from vrsearch.registry import MethodParams, register_method, unlabeled


class LCLParams(MethodParams):
    """Paper defaults (Sec. IV-D/E); search space of Tables IV-VII in METHODS.md."""

    loss: SupervisedLossKnob = "dice"
    lambda_cont: float = Field(0.1, ge=0, description="λ_cont: weight of L_cont in L = L_sup + λ_cont·L_cont (Eq. 2)")
    tau: float = Field(0.1, gt=0, description="τ: temperature of sim(z_i, z̄_c)/τ in L_cont (Eq. 3)")
    samples_per_class: int = Field(3, ge=1, description="|S̃_c(x)|: anchors sampled per class per image (Eq. 3)")
    matching: Literal["intra", "inter", "partner"] = Field(
        "intra",
        description=(
            "x' of L_cont((x,y),(x',y')) (Eq. 2-3): intra (x' = x), inter (class means pooled over both images of a "
            "random pair, the paper) or partner (the partner image's means only)"
        ),
    )
    warmup_fraction: float = Field(
        0.25,
        ge=0,
        lt=1,
        description=("T0, the L_sup-only warm-up of Eq. 1, as a fraction of train.iterations (paper: 5000 of 20000)"),
    )
    warmup_iterations: int | None = Field(
        None, ge=0, description="T0 of Eq. 1 in iterations; overrides warmup_fraction when set"
    )
    refreshes: int = Field(3, ge=1, description="S: pseudo-labelling steps, at T0 + s·P (Sec. IV-D; paper: 3)")
    gate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Dice threshold of the two-transform pseudo-label quality gate (Table VII); 0 = off",
    )
    sampler: Literal["ns", "sg", "sag"] = Field(
        "ns",
        description=(
            "how S̃_c(x) is drawn (Sec. III): ns (naive), sg (stratified groups) or sag (stratified antithetic groups)"
        ),
    )
    grid: Literal[9, 16, 25] = Field(16, description="V: number of groups (cells) of the sg/sag samplers")
    rounding: Literal["auto", "largest", "random"] = Field(
        "auto",
        description=(
            "sg/sag per-group quota rounding (vrsearch.components.samplers): auto (unbiased: largest remainder "
            "where every group gets a draw, systematic random rounding elsewhere), largest (biased for small groups) "
            "or random"
        ),
    )
    include_background: bool = Field(
        False, description="also anchor the background class in L_cont (the paper: foreground classes only)"
    )


_SUMMARY = (
    "warm-up on L_sup, then L_sup + λ·local contrastive loss on labels and frozen-snapshot "
    "pseudo-labels, refreshed S times"
)


_TERMS = {
    "loss": "warm-up: L_sup (Eq. 1); then L = L_sup + λ_cont·L_cont (Eq. 2)",
    "sup": "L_sup: supervised loss (Dice by default) on the labeled images",
    "cont": "L_cont: local contrastive loss (Eq. 3-4) over sampled anchors S̃_c of labels and pseudo-labels",
    "n_classes": "classes with anchors per image, averaged (the classes Eq. 4 averages over)",
    "gate_kept": "fraction of unlabeled patches whose pseudo-labels pass the quality gate (Table VII)",
    "reflect_outside": "SAG: antithetic partners outside their group, replaced by a uniform draw (sampler check)",
}


_CITATION = (
    "Chaitanya et al., Local contrastive loss with pseudo-label based self-training for "
    "semi-supervised medical image segmentation, Medical Image Analysis 87, 2023"
)


register_method(
    "lcl",
    params=LCLParams,
    citation=_CITATION,
    summary=_SUMMARY,
    needs=unlabeled,
    terms=_TERMS,
    builder="vrsearch.methods.lcl:build_lcl",
)
