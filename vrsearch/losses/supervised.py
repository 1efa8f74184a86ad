"""Supervised segmentation losses (METHODS.md, "Supervised loss").

``L_sup = ½(Dice + CE)`` on labeled voxels by default; LCL uses Dice only and
SPCL CE only, so the kind is a knob of every method. Built on MONAI's
``DiceCELoss``/``DiceLoss`` (softmax Dice over all classes, background
included, batch-wise) and torch's cross-entropy.
"""

from __future__ import annotations

import torch
from torch import nn

from vrsearch.core.knobs import SupervisedKind


class SupervisedLoss(nn.Module):
    """``kind='dice_ce'``: ½(Dice + CE); ``'dice'``: Dice; ``'ce'``: CE.

    logits: ``[B, C, *spatial]``; target: ``[B, 1, *spatial]`` or ``[B, *spatial]``
    integer labels in ``[0, C)``."""

    def __init__(self, kind: SupervisedKind = "dice_ce"):
        super().__init__()
        self.kind = kind
        self.loss: nn.Module
        from monai.losses import DiceCELoss, DiceLoss  # here: a study's driver imports this module, not MONAI

        if kind == "dice_ce":
            self.loss = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=0.5, lambda_ce=0.5, batch=True)
        elif kind == "dice":
            self.loss = DiceLoss(to_onehot_y=True, softmax=True, batch=True)
        elif kind == "ce":
            self.loss = nn.CrossEntropyLoss()
        else:
            raise ValueError(f"unknown supervised loss {kind!r}")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.dim() == logits.dim() - 1:
            target = target.unsqueeze(1)
        if target.shape[1] != 1 or target.shape[2:] != logits.shape[2:] or target.shape[0] != logits.shape[0]:
            raise ValueError(f"target {tuple(target.shape)} does not match logits {tuple(logits.shape)}")
        if self.kind == "ce":
            return self.loss(logits, target[:, 0].long())
        return self.loss(logits, target)
