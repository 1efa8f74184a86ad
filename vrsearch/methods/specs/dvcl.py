"""DVCL: the spec (knobs with the paper's defaults, data needs, logged terms, builder)
of ``vrsearch/methods/dvcl.py``, where the method and its equations are. No torch here:
a study's driver validates with it (:mod:`vrsearch.methods.specs`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from vrsearch.core.knobs import DVCL_FORMS, ROUNDING_HELP, NonNeg, PosFloat, PosInt, SupervisedKind
from vrsearch.registry import MethodParams, register_method, unlabeled


class DVCLParams(MethodParams):
    """Paper defaults (Sec. 3, App. D/I, Tables 2-3, Fig. 8)."""

    loss: SupervisedKind = Field("dice_ce", description="L_sup of each network on the labeled patches")
    lambda_u: NonNeg = Field(0.1, description="λ_u: weight of L_ecps (Eq. 19)")
    rampup_fraction: float = Field(
        0.4, ge=0.0, le=1.0, description="r(it): sigmoid ramp of λ_u over this share of the iterations"
    )
    lambda_c: NonNeg = Field(0.1, description="λ_c: weight of L_hqc + β·L_dvcl (Eq. 20)")
    beta: NonNeg = Field(0.3, description="β: weight of L_dvcl inside the contrastive term (Eq. 20)")
    alpha: float = Field(0.5, ge=-3.0, le=3.0, description="α: entropy threshold τ_e = mean + α·std (Eq. 3)")
    w_max: PosFloat = Field(1.0, description="w_max: largest entropy-based weight of L_ecps (Eq. 4-5)")
    ebl: bool = Field(True, description="ablation switch: entropy-based weights of L_ecps (Table 2)")
    hqc: bool = Field(True, description="ablation switch: L_hqc (Table 2)")
    dvcl: bool = Field(True, description="ablation switch: L_dvcl (Table 2)")
    tau: PosFloat = Field(1.0, description="τ: temperature of L_hqc (Eq. 11)")
    anchors: PosInt = Field(256, description="M: anchors per class of L_hqc (Eq. 6-11)")
    negatives: PosInt = Field(50, description="N: negatives per anchor of L_hqc (Eq. 10)")
    bank_size: PosInt = Field(1024, description="class-aware anchor bank per class; its mean is P_c (Eq. 9)")
    k: PosInt = Field(10, description="K: nearest queue entries of each L_dvcl query (Eq. 12-17)")
    k_prime: PosInt = Field(15, description="K': furthest queue entries of each L_dvcl query (Eq. 12-17)")
    queries: PosInt = Field(1024, description="unreliable voxels per step that query the queue (Eq. 12-17)")
    queue_size: PosInt = Field(8192, description="L: FIFO queue of earlier unreliable voxels (log L in Eq. 16)")
    form: Literal[DVCL_FORMS] = Field(  # type: ignore[valid-type]
        "loglik", description="the form of L_dvcl (Eq. 12-17; losses/dvcl.py FORMS)"
    )
    kl_weight: NonNeg = Field(1.0, description="weight of the KL part of form kl")
    feature_dim: PosInt | None = Field(None, description="V: feature-head channels (None: the model's)")
    sampler: Literal["ns", "sg", "sag"] = Field(
        "ns", description="voxel sampler of the HqC anchors: naive, stratified-group, stratified-antithetic"
    )
    grid: Literal[9, 16, 25] = Field(16, description="groups of the SG/SAG grid per image")
    rounding: Literal["auto", "largest", "random"] = Field("auto", description=ROUNDING_HELP)
    evaluate: Literal["a", "b", "mean"] = Field("a", description="network evaluated: A, B or their ensemble")

    @model_validator(mode="after")
    def _queue_holds_neighbours(self):
        if self.queue_size < max(self.k, self.k_prime):
            raise ValueError(
                f"queue_size {self.queue_size} is smaller than max(k, k_prime) = "
                f"{max(self.k, self.k_prime)}: the queue must hold K neighbours and K' outsiders"
            )
        return self


_TERMS = {
    "loss": "L = L_sup^A + L_sup^B + λ_u·r(t)·L_ecps + λ_c·(L_hqc + β·L_dvcl)  (Eq. 19-20)",
    "sup_a": "L_sup^A: supervised loss of network A on the labeled patches",
    "sup_b": "L_sup^B: supervised loss of network B on the labeled patches",
    "ecps": "L_ecps (Eq. 4-5): cross pseudo supervision weighted by entropy (w = 1 with ebl off)",
    "hqc": "L_hqc (Eq. 6-11): high-quality anchors vs class centre P_c and misclassified negatives",
    "dvcl": "L_dvcl (Eq. 12-17): unreliable voxels vs their K nearest and K' furthest queue entries",
    "dvcl_const": "(K − K')(log L + 1): the constant of Eq. 16 left out of the optimised term",
    "dvcl_psi_bar": "ψ̄ = L_dvcl + constant: the bound of Eq. 16",
    "dvcl_psi": "ψ: the exact term that ψ̄ bounds (Eq. 16)",
    "tau_e_a": "τ_e of network A: entropy threshold mean + α·std over its unlabeled voxels (Eq. 3)",
    "tau_e_b": "τ_e of network B (Eq. 3)",
    "reliable_a": "fraction of network A's unlabeled voxels with entropy < τ_e (reliable, Eq. 2)",
    "reliable_b": "fraction of network B's unlabeled voxels with entropy < τ_e",
    "anchors": "HqC anchors drawn this step (M per class, pooled over both networks)",
    "queries": "unreliable voxels used as DVCL queries this step",
    "reflect_outside": "SAG: antithetic partners outside their group, replaced by a uniform draw (sampler check)",
    "rampup": "r(t) = exp(−5(1−t)²): sigmoid ramp-up of λ_u",
}


_SUMMARY = (
    "CPS twins with entropy-selected reliable voxels (ECPS), high-quality anchor contrast (HqC) and "
    "distance-aware neighbour/outsider contrast on unreliable voxels"
)


register_method(
    "dvcl",
    params=DVCLParams,
    citation="Distance-aware voxel-wise contrastive learning for semi-supervised medical image segmentation "
    "(papers/dvcl_distance_aware_vcl.txt)",
    summary=_SUMMARY,
    needs=unlabeled,
    terms=_TERMS,
    builder="vrsearch.methods.dvcl:build_dvcl",
)
