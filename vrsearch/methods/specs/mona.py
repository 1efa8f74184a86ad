"""MONA: the spec (knobs with the paper's defaults, data needs, logged terms, builder)
of ``vrsearch/methods/mona.py``, where the method and its equations are. No torch here:
a study's driver validates with it (:mod:`vrsearch.methods.specs`)."""

from __future__ import annotations

from pydantic import Field

from vrsearch.core.knobs import NonNeg
from vrsearch.methods.specs.anatomical import Augmentation, ContrastiveParams
from vrsearch.registry import register_method, unlabeled


class MONAParams(ContrastiveParams):
    """MONA App. A defaults; search space of App. D (METHODS.md "MONA")."""

    lambda_eqv: NonNeg = Field(1.0, description="λ2: weight of L_eqv (Sec. 3.2)")
    consistency: bool = Field(True, description="ablation switch: L_eqv (Table 2)")
    student_augmentation: Augmentation = Field(
        "weak", description="student views: weak = flips/turns, strong = + intensity jitter (Table 3)"
    )
    teacher_augmentation: Augmentation = Field("strong", description="teacher and mined views (Table 3)")


_SUMMARY = (
    "two stages: relational (ISD) pre-training with global/local KL over mined views, then L_sup + "
    "anatomical contrast (hard queries, class-aware bank) + equivariance + pseudo-label CE + kNN"
)


_TERMS = {
    "loss": "stage 1: L_sup + L_inst^global + L_inst^local; stage 2: L_sup + λ1·L_contrast + λ2·L_eqv "
    "+ λ3·L_unsup + λ4·L_nn",
    "stage": "training stage: 1 = relational pre-training (Sec. 3.1), 2 = anatomical contrast (Sec. 3.2)",
    "sup": "L_sup: supervised loss of the student on the labeled views",
    "inst_global": "L_inst^global: KL(teacher ‖ student) of global-embedding similarities to mined views (ISD)",
    "inst_local": "L_inst^local: the same KL on local crop embeddings of the last decoder features",
    "contrast": "L_contrast (Eq. 4-5): hard-voxel queries vs class-mean teacher keys and class-aware negatives",
    "contrast_spread": "(a − b)²/2 of L_contrast under two independent draws: its sampling variance, drawn on "
    "the last iteration of each log window",
    "reflect_outside": "SAG: antithetic partners outside their group, replaced by a uniform draw (sampler check)",
    "hard_fraction": "fraction of voxels whose teacher probability of their (pseudo-)label is ≤ δ (queries' pool)",
    "eqv": "L_eqv: KL between F(T(x)) and T(F(x)) for a random flip/rotation + intensity jitter T",
    "unsup": "L_unsup: student CE to the teacher's pseudo-labels on unlabeled images",
    "nn": "L_nn: student class means pulled to their k nearest teacher class means in a memory bank",
}


_CITATION = (
    "You et al., Mine your own anatomy: revisiting medical image segmentation with extremely "
    "limited labels, arXiv 2209.13476 (2022)"
)


register_method(
    "mona",
    params=MONAParams,
    citation=_CITATION,
    summary=_SUMMARY,
    needs=unlabeled,
    terms=_TERMS,
    builder="vrsearch.methods.mona:build_mona",
)
