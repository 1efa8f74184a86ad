"""The vocabulary of knobs that method specs share with the code implementing them,
without torch: a study's driver validates every method's Params
(:mod:`vrsearch.methods.specs`) and imports neither torch nor a method's
implementation to do so. The implementing modules (:mod:`vrsearch.losses.supervised`,
:mod:`vrsearch.components.samplers`, :mod:`vrsearch.losses.dvcl`,
:mod:`vrsearch.losses.spcl`) read these names from here."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from vrsearch.core.config import NonNegFloat, PosFloat, PosInt

#: L_sup on the labeled patches (losses/supervised.py)
SupervisedKind = Literal["dice_ce", "dice", "ce"]

#: the ``loss`` knob every method shares: its L_sup on the labeled patches
SupervisedLossKnob = Annotated[
    SupervisedKind,
    Field(description="L_sup: supervised loss on the labeled patches: dice_ce = ½(Dice + CE), dice or ce"),
]

#: the ``rounding`` knob's description, for every method that exposes the sampler
ROUNDING_HELP = (
    "SG/SAG draws per group: largest remainder, random (systematic), or auto (largest remainder "
    "where every non-empty group gets a draw, else random); unbiased except 'largest'"
)

#: SPCL's self-paced weights w_ij (losses/spcl.py, Eq. 6)
SPCLWeighting = Literal["hard", "linear"]

#: the forms of DVCL's L_dvcl (losses/dvcl.py, Eq. 12-17)
DVCL_FORMS = ("loglik", "infonce", "simclr", "kl")

#: the typed knobs specs use (one definition, :mod:`vrsearch.core.config`)
NonNeg = NonNegFloat
__all__ = [
    "DVCL_FORMS",
    "ROUNDING_HELP",
    "NonNeg",
    "PosFloat",
    "PosInt",
    "SPCLWeighting",
    "SupervisedKind",
    "SupervisedLossKnob",
]
