"""SPCL: the spec (knobs with the paper's defaults, data needs, logged terms, builder)
of ``vrsearch/methods/spcl.py``, where the method and its equations are. No torch here:
a study's driver validates with it (:mod:`vrsearch.methods.specs`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from vrsearch.core.knobs import NonNeg, SPCLWeighting, SupervisedKind
from vrsearch.registry import DataNeeds, MethodParams, register_method

MetaLabel = Literal["position", "patient", "phase"]


class SPCLParams(MethodParams):
    mode: Literal["joint", "pretrain"] = Field(
        "joint", description="joint = Eq. 15 with Mean Teacher; pretrain = Eq. 14, then fine-tuning"
    )
    tau: float = Field(0.07, gt=0, description="τ: temperature of L_sp (Eq. 3)")
    gamma_start: float = Field(2.0, gt=0, description="γ at the first contrastive iteration (Eq. 16)")
    gamma_end: float = Field(50.0, gt=0, description="γ at the last contrastive iteration (Eq. 16)")
    weighting: SPCLWeighting = Field("linear", description="self-paced weights w_ij: linear or hard (Eq. 6)")
    meta_labels: list[MetaLabel] = Field(["position", "patient"], description="k: the meta-labels of Σ_k λ_k L_sp^k")
    position_partitions: int = Field(
        5, ge=1, description="S: slice-position partitions (paper: 3 ACDC/hippocampus, 5 prostate/spleen, 7 MMWHS)"
    )
    lambda_position: NonNeg = Field(1.0, description="λ_position: weight of L_sp^position (Eq. 14)")
    lambda_patient: NonNeg = Field(1e-3, description="λ_patient: weight of L_sp^patient (Eq. 14)")
    lambda_phase: NonNeg = Field(1e-2, description="λ_phase: weight of L_sp^phase (Eq. 14)")
    lambda_reg: NonNeg = Field(0.1, description="λ_reg: weight of L_MT (Eq. 15)")
    lambda_sp: NonNeg = Field(5e-3, description="λ_sp: weight of Σ_k λ_k L_sp^k (Eq. 15)")
    pretrain_fraction: float = Field(
        0.5, gt=0, lt=1, description="share of the iterations pre-training (mode: pretrain)"
    )
    loss: SupervisedKind = Field("ce", description="L_sup on the labeled images")
    embedding_dim: int = Field(256, ge=1, description="output size of the global projector")
    ema_decay: float = Field(0.99, ge=0, le=1, description="EMA decay of the L_MT teacher")

    @field_validator("meta_labels")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one meta-label is needed")
        if len(set(v)) != len(v):
            raise ValueError(f"meta-labels must be distinct, got {v}")
        return v


_TERMS = {
    "loss": "joint: L = L_sup + λ_reg·L_MT + λ_sp·Σ_k λ_k L_sp^k (Eq. 15); pretrain: Σ_k λ_k L_sp^k then L_sup",
    "sup": "L_sup: supervised loss on the labeled images",
    "mt": "L_MT: squared softmax difference, student on x^T vs EMA teacher on x (supplement Eq. 3)",
    "sp": "Σ_k λ_k L_sp^k: self-paced contrastive loss over the meta-labels (Eq. 14)",
    "sp_position": "L_sp^position: self-paced contrastive loss with slice-position partitions as positives (Eq. 3)",
    "sp_patient": "L_sp^patient: self-paced contrastive loss with same-patient images as positives (Eq. 3)",
    "sp_phase": "L_sp^phase: self-paced contrastive loss with same cardiac phase as positives (Eq. 3)",
    "gamma": "γ: self-paced threshold of the weights (Eq. 6), linear from gamma_start to gamma_end (Eq. 16)",
    "mean_weight": "mean self-paced weight w_ij (Eq. 6) over the positive pairs (1 = every pair in full)",
}


_SUMMARY = (
    "self-paced supervised-contrastive loss on global encoder embeddings with slice-position / patient "
    "meta-labels; joint (with Mean Teacher) or pretrain-then-fine-tune"
)


def spcl_needs(params: SPCLParams) -> DataNeeds:
    """Unlabeled images (the contrastive term sees them), and ``phase`` meta on every
    training case when the cardiac phase is a meta-label."""
    return DataNeeds(unlabeled=True, meta=("phase",) if "phase" in params.meta_labels else ())


register_method(
    "spcl",
    params=SPCLParams,
    citation="Peng et al., Self-paced contrastive learning for semi-supervised medical image "
    "segmentation with meta-labels, NeurIPS 2021",
    summary=_SUMMARY,
    needs=spcl_needs,
    terms=_TERMS,
    builder="vrsearch.methods.spcl:build_spcl",
)
