"""Labeled-only baseline and its fully-supervised upper bound.

``supervised`` trains the segmentation network on the labeled split only
with ``L_sup`` (METHODS.md, "Baselines"); ``fully_supervised`` is the same
method with ``all_labels=True``: the split keeps every training label, which
gives the upper bound a semi-supervised method is measured against.
"""

from __future__ import annotations

from vrsearch.losses import SupervisedLoss
from vrsearch.methods.base import Batch, BuildContext, Method, StepOutput
from vrsearch.methods.specs.supervised import SupervisedParams
from vrsearch.models import build_segnet


class Supervised(Method):
    def __init__(self, params: SupervisedParams, ctx: BuildContext):
        super().__init__()
        self.params = params
        self.net = build_segnet(ctx.model, ctx.num_classes)
        self.sup = SupervisedLoss(params.loss)

    def forward(self, batch: Batch, iteration: int) -> StepOutput:
        loss = self.sup(self.net(batch.image), batch.label)
        return StepOutput(loss, {"sup": loss.detach()})

    def predictor(self):
        return self.net


def build_supervised(params: SupervisedParams, ctx: BuildContext) -> Supervised:
    return Supervised(params, ctx)
