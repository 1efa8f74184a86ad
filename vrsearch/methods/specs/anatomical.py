"""The knobs MONA and ARCO share (You et al.; METHODS.md "MONA", "ARCO"), with MONA's
defaults: :class:`~vrsearch.methods.specs.mona.MONAParams` and
:class:`~vrsearch.methods.specs.arco.ARCOParams` subclass it. No method lives here:
ARCO is trained by MONA's module, configured by ``ARCOParams.as_mona``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from vrsearch.core.knobs import ROUNDING_HELP, NonNeg, PosFloat, PosInt, SupervisedKind
from vrsearch.registry import MethodParams

Augmentation = Literal["weak", "strong"]


class ContrastiveParams(MethodParams):
    """Knobs shared by MONA and ARCO (paper defaults: MONA App. A, ARCO App. C)."""

    loss: SupervisedKind = Field("dice_ce", description="L_sup: supervised loss on the labeled views")
    stage: Literal[1, 2, "both"] = Field(
        "both",
        description="1 = relational pre-training only (Sec. 3.1), 2 = anatomical contrastive fine-tuning "
        "only (Sec. 3.2), both = the first stage1_fraction of the iterations stage 1",
    )
    stage1_fraction: float = Field(0.25, gt=0, lt=1, description="share of the iterations in stage 1 (stage: both)")
    stage1_checkpoint: str | None = Field(
        None, description="a stage-1 trial's checkpoints/<config_hash>/last.pt; the trial then runs stage 2 only"
    )
    tau_s: PosFloat = Field(0.1, description="τ_θ: student temperature of L_inst (Sec. 3.1)")
    tau_t: PosFloat = Field(0.01, description="τ_ξ: teacher temperature of L_inst (Sec. 3.1)")
    bank_size: PosInt = Field(36, description="size of the FIFO bank of mined views of L_inst (Sec. 3.1)")
    local_crops: PosInt = Field(36, description="local instances per image of L_inst^local (Sec. 3.1)")
    local_crop_size: PosInt = Field(64, description="edge of a local crop in voxels (paper 64×64)")
    inst_global: bool = Field(True, description="ablation switch: L_inst^global (Table 2 / ARCO Table 3)")
    inst_local: bool = Field(True, description="ablation switch: L_inst^local (Table 2 / ARCO Table 3)")
    lambda_contrast: NonNeg = Field(0.01, description="λ1: weight of L_contrast (Sec. 3.2)")
    lambda_unsup: NonNeg = Field(1.0, description="weight of L_unsup (MONA λ3, ARCO λ2)")
    lambda_nn: NonNeg = Field(1.0, description="weight of L_nn (MONA λ4, ARCO λ3)")
    delta: float = Field(
        0.97,
        ge=0,
        le=1,
        description="δ: a query is hard when the teacher's probability of its (pseudo-)label is ≤ δ (Eq. 5)",
    )
    queries: PosInt = Field(256, description="queries per class of L_contrast")
    keys: PosInt = Field(512, description="keys per class pushed to the bank, and negatives per query")
    negative_bank_size: PosInt = Field(512, description="class-aware negative bank entries per class")
    tau: PosFloat = Field(0.5, description="τ: temperature of L_contrast (Eq. 4)")
    embedding_dim: PosInt = Field(512, description="channels of the representation head's embedding")
    nn_k: PosInt = Field(5, description="K: nearest neighbours of L_nn")
    nn_bank_size: PosInt = Field(36, description="FIFO bank of teacher class means searched by L_nn")
    tailness: bool = Field(True, description="ablation switch: L_contrast (Table 2)")
    diversity: bool = Field(True, description="ablation switch: L_nn (Table 2)")
    unsup: bool = Field(True, description="ablation switch: L_unsup")
    geometric: bool = Field(
        True, description="in-plane flips / 90° turns in the views and in L_eqv's T; turn off for lateralised anatomy"
    )
    ema_decay: float = Field(0.99, ge=0, le=1, description="t: EMA teacher ξ ← tξ + (1−t)θ")
    sampler: Literal["ns", "sg", "sag"] = Field(
        "ns",
        description="voxel sampler of L_contrast's queries and keys: naive, stratified-group, "
        "stratified-antithetic (ARCO Sec. 3.3)",
    )
    grid: Literal[9, 16, 25] = Field(16, description="M: groups of the SG/SAG grid per image (ARCO Table 7)")
    rounding: Literal["auto", "largest", "random"] = Field("auto", description=ROUNDING_HELP)
    evaluate: Literal["student", "teacher"] = Field("student", description="network evaluated and checkpointed")

    @model_validator(mode="after")
    def _checkpoint_needs_stage_two(self):
        if self.stage1_checkpoint is not None and self.stage == 1:
            raise ValueError(
                "stage1_checkpoint names the checkpoint a stage-2 trial starts from; "
                "it cannot be combined with stage: 1"
            )
        return self
