"""Small builders shared by the method tests."""

from __future__ import annotations

import torch

from vrsearch.methods import get_method
from vrsearch.methods.base import Batch, BuildContext
from vrsearch.study.schema import ModelConfig

C = 3
MODEL = ModelConfig(channels=(4, 8), feature_dim=4, num_res_units=0)


def build_method(name: str, iterations: int = 10, **params):
    """A semi-supervised method on a tiny UNet, in train mode, with a fixed init."""
    spec = get_method(name)
    torch.manual_seed(0)
    method = spec.build(spec.validate(params), BuildContext(MODEL, C, iterations, seed=0))
    assert spec.data_needs(params).unlabeled
    return method.train()


def make_batch(seed: int = 0, labeled: int = 2, unlabeled: int = 2) -> Batch:
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(labeled, 1, 8, 8, 8, generator=g)
    label = torch.randint(0, C, (labeled, 1, 8, 8, 8), generator=g)
    unl = torch.randn(unlabeled, 1, 8, 8, 8, generator=g) if unlabeled else None
    return Batch(image, label, unl)
