"""Cross pseudo supervision baseline (Chen et al., "Semi-supervised semantic
segmentation with cross pseudo supervision", CVPR 2021; METHODS.md, "Baselines").

Twin SegNets A and B, same architecture, different deterministic inits
(seeds ``trial seed`` and ``trial seed + 1``)::

    L = L_sup(p_A, y) + L_sup(p_B, y) + λ_cps · r(it) · [CE(p_A, ŷ_B) + CE(p_B, ŷ_A)]

with ``ŷ = argmax p`` (hard, detached: the pseudo-label path carries no
gradient, so ``CE(p_A, ŷ_B)`` trains only A and ``CE(p_B, ŷ_A)`` only B).
The cross term covers labeled and unlabeled patches (``cps_on: all``, as in
the CPS paper and its code) or the unlabeled ones only. Each CE is a mean
over voxels of the concatenated batch.

Weight: the CPS paper uses λ = 1.5 (Cityscapes) without ramp-up; this
baseline is the one the DVCL paper compares against, so its defaults follow
DVCL's ECPS (METHODS.md): ``lambda_cps = 0.1`` with a sigmoid ramp-up
``r`` over the first ``rampup_fraction`` of training (0 = off). Set
``lambda_cps: 1.5, rampup_fraction: 0`` for the original.

``evaluate``: network ``a`` (default), ``b``, or ``mean`` (the average of
both softmaxes, returned as log-probabilities so that argmax/softmax of the
predictor's output are those of the ensemble).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vrsearch.components.pseudo import class_argmax
from vrsearch.components.schedules import fraction_of, sigmoid_rampup
from vrsearch.components.teachers import twin_networks, twin_predictor
from vrsearch.losses import SupervisedLoss
from vrsearch.methods.base import Batch, BuildContext, Method, StepOutput
from vrsearch.methods.specs.cps import CPSParams
from vrsearch.models import build_segnet


class CPS(Method):
    def __init__(self, params: CPSParams, ctx: BuildContext):
        super().__init__()
        self.params = params
        self.net_a, self.net_b = twin_networks(lambda: build_segnet(ctx.model, ctx.num_classes), ctx.seed)
        self.sup = SupervisedLoss(params.loss)
        self.rampup = fraction_of(params.rampup_fraction, ctx.iterations)

    def terms(self, batch: Batch, iteration: int) -> dict[str, torch.Tensor]:
        """Live terms ``sup_a``, ``sup_b``, ``cps_a = CE(p_A, ŷ_B)``, ``cps_b = CE(p_B, ŷ_A)``,
        ``cps = cps_a + cps_b`` and the ramp ``rampup``."""
        n_l = batch.image.shape[0]
        x = batch.image if batch.unlabeled is None else torch.cat([batch.image, batch.unlabeled])
        logits_a, logits_b = self.net_a(x), self.net_b(x)
        t = {"sup_a": self.sup(logits_a[:n_l], batch.label), "sup_b": self.sup(logits_b[:n_l], batch.label)}
        first = 0 if self.params.cps_on == "all" else n_l
        if x.shape[0] > first:
            la, lb = logits_a[first:], logits_b[first:]
            y_a, y_b = class_argmax(la.detach()), class_argmax(lb.detach())
            t["cps_a"], t["cps_b"] = F.cross_entropy(la, y_b), F.cross_entropy(lb, y_a)
        else:  # cps_on=unlabeled and no unlabeled patches this step
            t["cps_a"] = t["cps_b"] = logits_a.new_zeros(())
        t["cps"] = t["cps_a"] + t["cps_b"]
        t["rampup"] = torch.tensor(sigmoid_rampup(iteration, self.rampup), dtype=torch.float64)
        return t

    def forward(self, batch: Batch, iteration: int) -> StepOutput:
        t = self.terms(batch, iteration)
        loss = t["sup_a"] + t["sup_b"] + self.params.lambda_cps * float(t["rampup"]) * t["cps"]
        logged = ("sup_a", "sup_b", "cps", "rampup")
        return StepOutput(loss, {k: t[k].detach() for k in logged})

    def predictor(self) -> nn.Module:
        return twin_predictor(self.params.evaluate, self.net_a, self.net_b)


def build_cps(params: CPSParams, ctx: BuildContext) -> CPS:
    return CPS(params, ctx)
