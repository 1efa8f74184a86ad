"""Methods: one file per paper or baseline; importing this package registers them."""

from vrsearch.methods import supervised  # noqa: F401
from vrsearch.methods import spcl  # noqa: F401
from vrsearch.methods import cps, mean_teacher, self_training  # noqa: F401
from vrsearch.methods import arco, dvcl, lcl, mona  # noqa: F401
from vrsearch.methods.base import Batch, BuildContext, Method, StepOutput

__all__ = ["Batch", "BuildContext", "Method", "StepOutput"]
