"""Methods: one file per paper or baseline; importing this package registers them."""

from vrsearch.methods import cps, lcl, mean_teacher, self_training, supervised  # noqa: F401
from vrsearch.methods.base import Batch, BuildContext, Method, StepOutput

__all__ = ["Batch", "BuildContext", "Method", "StepOutput"]
