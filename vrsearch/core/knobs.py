"""The vocabulary of knobs several methods share, without torch: a study's driver
validates every method's Params (:mod:`vrsearch.methods.specs`) and imports neither
torch nor a method's implementation to do so. The modules that implement these
knobs (:mod:`vrsearch.losses.supervised`, :mod:`vrsearch.components.samplers`,
:mod:`vrsearch.losses.dvcl`) read their names from here."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

#: L_sup on the labeled patches (METHODS.md, "Supervised loss")
SupervisedKind = Literal["dice_ce", "dice", "ce"]

#: the ``loss`` knob every method shares: its L_sup on the labeled patches
SupervisedLossKnob = Annotated[
    SupervisedKind,
    Field(description="L_sup: supervised loss on the labeled patches: dice_ce = ½(Dice + CE), dice or ce"),
]

#: voxel samplers (components/samplers.py): naive, stratified-group, stratified-antithetic
SAMPLERS = ("ns", "sg", "sag")
#: groups per image of the SG/SAG grid
GRIDS = (9, 16, 25)
ROUNDINGS = ("auto", "largest", "random")
#: the ``rounding`` knob's description, for every method that exposes the sampler
ROUNDING_HELP = (
    "SG/SAG draws per group: largest remainder, random (systematic), or auto (largest remainder "
    "where every non-empty group gets a draw, else random); unbiased except 'largest'"
)

#: SPCL's self-paced weights w_ij (losses/spcl.py, Eq. 6)
SPCLWeighting = Literal["hard", "linear"]

#: the forms of DVCL's L_dvcl (losses/dvcl.py, Eq. 12-17)
DVCL_FORMS = ("loglik", "infonce", "simclr", "kl")

PosInt = Annotated[int, Field(ge=1)]
NonNeg = Annotated[float, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
