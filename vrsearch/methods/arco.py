"""ARCO: variance-reduced voxel sampling for contrastive segmentation (You et al.,
"Rethinking semi-supervised medical image segmentation: a variance-reduction
perspective", NeurIPS 2023). METHODS.md "ARCO".

ARCO is MONA (:mod:`vrsearch.methods.mona`) without the equivariance branch
and without heavy augmentation (App. E: "a simplification of MONA ... without
using any additional complicated augmentation strategies"): the same module
class, :class:`~vrsearch.methods.mona.MONA` (found through the registry), built
from ``ARCOParams`` (``specs/arco.py``) with ``consistency`` off and weak views for
student and teacher. Stage 2 is::

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

Ablations (Tables 2-3) are values of its fields: ``tailness: false``
(w/o L_contrast), ``diversity: false`` (w/o L_nn), ``unsup: false``,
``inst_global: false``, ``inst_local: false``.
"""

from __future__ import annotations

from vrsearch.methods.base import BuildContext, Method
from vrsearch.methods.specs.arco import ARCOParams
from vrsearch.registry import lookup


def build_arco(params: ARCOParams, ctx: BuildContext) -> Method:
    """MONA's module (looked up in the registry, not imported: one paper per file)."""
    mona = lookup("mona")
    return mona.build(mona.validate(params.as_mona()), ctx)
