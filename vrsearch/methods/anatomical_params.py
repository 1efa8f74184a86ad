"""The knobs MONA and ARCO share (You et al.; METHODS.md "MONA", "ARCO"), with MONA's
defaults: :class:`~vrsearch.methods.mona.MONAParams` and
:class:`~vrsearch.methods.arco.ARCOParams` subclass it. No method lives here:
ARCO is trained by MONA's module, configured by ``ARCOParams.as_mona``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from vrsearch.losses.supervised import SupervisedKind
from vrsearch.registry import MethodParams

PosInt = Annotated[int, Field(ge=1)]
NonNeg = Annotated[float, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
Augmentation = Literal["weak", "strong"]


class ContrastiveParams(MethodParams):
    """Knobs shared by MONA and ARCO (paper defaults: MONA App. A, ARCO App. C)."""

    loss: SupervisedKind = "dice_ce"
    #: 1 = relational pre-training only, 2 = anatomical contrastive fine-tuning only,
    #: both = the first ``stage1_fraction`` of the iterations stage 1, the rest stage 2
    stage: Literal[1, 2, "both"] = "both"
    stage1_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.25
    #: a stage-1 trial's checkpoint (``.../checkpoints/<config_hash>/last.pt``); the trial then runs no stage 1
    stage1_checkpoint: str | None = None
    # stage 1: relational instance discrimination (global + local)
    tau_s: PosFloat = 0.1
    tau_t: PosFloat = 0.01
    bank_size: PosInt = 36
    local_crops: PosInt = 36
    local_crop_size: PosInt = 64
    inst_global: bool = True
    inst_local: bool = True
    # stage 2: anatomical contrastive reconstruction
    lambda_contrast: NonNeg = 0.01
    lambda_unsup: NonNeg = 1.0
    lambda_nn: NonNeg = 1.0
    delta: Annotated[float, Field(ge=0, le=1)] = 0.97
    queries: PosInt = 256
    keys: PosInt = 512
    negative_bank_size: PosInt = 512
    tau: PosFloat = 0.5
    embedding_dim: PosInt = 512
    nn_k: PosInt = 5
    nn_bank_size: PosInt = 36
    tailness: bool = True
    diversity: bool = True
    unsup: bool = True
    #: in-plane flips / 90° rotations in the views (and in L_eqv's T); turn off for lateralised anatomy
    geometric: bool = True
    ema_decay: Annotated[float, Field(ge=0, le=1)] = 0.99
    sampler: Literal["ns", "sg", "sag"] = "ns"
    grid: Literal[9, 16, 25] = 16
    rounding: Literal["auto", "largest", "random"] = "auto"
    evaluate: Literal["student", "teacher"] = "student"

    @model_validator(mode="after")
    def _checkpoint_needs_stage_two(self):
        if self.stage1_checkpoint is not None and self.stage == 1:
            raise ValueError("stage1_checkpoint names the checkpoint a stage-2 trial starts from; "
                             "it cannot be combined with stage: 1")
        return self
