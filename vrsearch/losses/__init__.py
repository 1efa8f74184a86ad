"""Pure loss functions and modules, shape-checked, each citing its paper."""

from vrsearch.losses.supervised import SupervisedLoss

__all__ = ["SupervisedLoss"]
