"""ARCO: variance-reduced voxel sampling for contrastive segmentation (You et al.,
"Rethinking semi-supervised medical image segmentation: a variance-reduction
perspective", NeurIPS 2023). METHODS.md "ARCO".

ARCO is MONA (:mod:`vrsearch.methods.mona`) without the equivariance branch
and without heavy augmentation (App. E: "a simplification of MONA ... without
using any additional complicated augmentation strategies"): the same module
class, :class:`~vrsearch.methods.mona.MONA` (found through the registry), built from these Params with
``consistency`` off and weak views for student and teacher. Stage 2 is::

    L = L_sup + λ1·L_contrast + λ2·L_unsup + λ3·L_nn     (λ = 0.01, 1, 1)

named ``lambda_contrast``, ``lambda_unsup``, ``lambda_nn`` here. The point
of the method is the sampler of ``L_contrast``'s queries and keys (Sec. 3.3):
``sampler: ns|sg|sag`` and ``grid: 9|16|25``
(:func:`vrsearch.components.samplers.sample_voxels`); ``contrast_spread``
logs the per-step sampling variance of ``L_contrast`` (Fig. 5), drawn once per
log window (``train.log_every``).

Defaults: τ_t 0.01, τ_s 0.1, τ 0.5, bank 36, 2D UNet, EMA 0.99 (App. C).
``sampler: sg`` — ARCO-SG is the better of the paper's two samplers in every
medical table (Tables 1, 2, 5, 6, 8, 9) and in Fig. 5; ``grid: 16`` — the
medical experiments do not state the grid; 16 is the middle of the grids the
paper compares (Table 7, where 16 and 25 are best). ``stage1_fraction: 0.4``
— pre-training 100 epochs at batch 6, fine-tuning 200 epochs at batch 8
(App. C), i.e. (100/6) / (100/6 + 200/8) of the iterations.

Ablations (Tables 2-3) are values of these fields: ``tailness: false``
(w/o L_contrast), ``diversity: false`` (w/o L_nn), ``unsup: false``,
``inst_global: false``, ``inst_local: false``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vrsearch.methods.anatomical_params import ContrastiveParams
from vrsearch.methods.base import BuildContext, Method
from vrsearch.registry import lookup, register_method, unlabeled


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


@register_method("arco", params=ARCOParams, citation=_CITATION, summary=_SUMMARY, needs=unlabeled, terms=_TERMS)
def build_arco(params: ARCOParams, ctx: BuildContext) -> Method:
    """MONA's module (looked up in the registry, not imported: one paper per file)."""
    mona = lookup("mona")
    return mona.build(mona.validate(params.as_mona()), ctx)
