"""Labeled-only baseline and its fully-supervised upper bound.

``supervised`` trains the segmentation network on the labeled split only
with ``L_sup`` (METHODS.md, "Baselines"); ``fully_supervised`` is the same
method with ``all_labels=True``: the split keeps every training label, which
gives the upper bound a semi-supervised method is measured against.
"""

from __future__ import annotations

from pydantic import Field

from vrsearch.losses import SupervisedLoss
from vrsearch.methods.base import Batch, BuildContext, Method, StepOutput, SupervisedLossKnob
from vrsearch.models import build_segnet
from vrsearch.registry import DataNeeds, MethodParams, register_method


class SupervisedParams(MethodParams):
    loss: SupervisedLossKnob = "dice_ce"
    all_labels: bool = Field(
        False, description="train on every training label (L = L_sup on all cases): the fully-supervised upper bound"
    )


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


_SUMMARY = "labeled-only UNet trained with L_sup; all_labels=true is the fully-supervised upper bound"
_TERMS = {
    "loss": "L = L_sup (labeled patches only)",
    "sup": "L_sup: supervised loss (method.params.loss: ½(Dice + CE), Dice or CE) on the labeled patches",
}


def supervised_needs(params: SupervisedParams) -> DataNeeds:
    """Labeled patches only; every training case labeled with ``all_labels``."""
    return DataNeeds(all_labels=params.all_labels)


@register_method(
    "supervised", params=SupervisedParams, citation="baseline", summary=_SUMMARY, terms=_TERMS, needs=supervised_needs
)
def build_supervised(params: SupervisedParams, ctx: BuildContext) -> Supervised:
    return Supervised(params, ctx)


register_method(
    "fully_supervised",
    params=SupervisedParams,
    citation="baseline (upper bound)",
    summary="supervised with every training label (all_labels=true)",
    defaults={"all_labels": True},
    terms=_TERMS,
    needs=supervised_needs,
)(build_supervised)
