"""ARCO: the spec (knobs with the paper's defaults, data needs, logged terms, builder)
of ``vrsearch/methods/arco.py``, where the method and its equations are. No torch here:
a study's driver validates with it (:mod:`vrsearch.methods.specs`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vrsearch.methods.specs.anatomical import ContrastiveParams
from vrsearch.registry import register_method, unlabeled


class ARCOParams(ContrastiveParams):
    """ARCO App. C / N defaults; the knobs of Tables 2-3, 7 and Fig. 5, 20."""

    sampler: Literal["ns", "sg", "sag"] = Field(
        "sg",
        description="voxel sampler of L_contrast's queries and keys: naive, stratified-group, "
        "stratified-antithetic (Sec. 3.3); SG is the paper's better one",
    )
    grid: Literal[9, 16, 25] = Field(16, description="M: groups of the SG/SAG grid per image (Table 7)")
    stage1_fraction: float = Field(
        0.4, gt=0, lt=1, description="share of the iterations in stage 1 (100 of 300 epochs at batch 6 vs 8, App. C)"
    )

    def as_mona(self) -> dict:
        """The MONA configuration that is ARCO: no L_eqv, weak views only."""
        return {
            **self.model_dump(),
            "lambda_eqv": 0.0,
            "consistency": False,
            "student_augmentation": "weak",
            "teacher_augmentation": "weak",
        }


_SUMMARY = (
    "MONA without equivariance/heavy augmentation; L_contrast queries and keys drawn by NS, "
    "stratified-group (SG) or stratified-antithetic (SAG) sampling"
)


_TERMS = {
    "loss": "stage 1: L_sup + L_inst^global + L_inst^local; stage 2: L_sup + λ1·L_contrast + λ2·L_unsup + λ3·L_nn",
    "stage": "training stage: 1 = relational pre-training, 2 = contrastive fine-tuning",
    "sup": "L_sup: supervised loss of the student on the labeled views",
    "inst_global": "L_inst^global: KL(teacher ‖ student) of global-embedding similarities to mined views",
    "inst_local": "L_inst^local: the same KL on local crop embeddings",
    "contrast": "L_contrast: hard-voxel queries and keys drawn by the sampler (NS / SG / SAG, Sec. 3.3)",
    "contrast_spread": "(a − b)²/2 of L_contrast under two independent draws: its sampling variance (Fig. 5), "
    "drawn on the last iteration of each log window",
    "reflect_outside": "SAG: antithetic partners outside their group, replaced by a uniform draw (sampler check)",
    "hard_fraction": "fraction of voxels whose teacher probability of their (pseudo-)label is ≤ δ (queries' pool)",
    "unsup": "L_unsup: student CE to the teacher's pseudo-labels on unlabeled images",
    "nn": "L_nn: student class means pulled to their k nearest teacher class means in a memory bank",
}


_CITATION = (
    "You et al., Rethinking semi-supervised medical image segmentation: a variance-reduction perspective, NeurIPS 2023"
)


register_method(
    "arco",
    params=ARCOParams,
    citation=_CITATION,
    summary=_SUMMARY,
    needs=unlabeled,
    terms=_TERMS,
    builder="vrsearch.methods.arco:build_arco",
)
