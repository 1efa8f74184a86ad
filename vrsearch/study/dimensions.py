"""What a design varies: the dimensions of a search space (ranges or choices,
optionally conditional on categorical parents), the arms of an ablation, and
the cross-checks of a space and of the dataset axes. The designs that hold
them are :mod:`vrsearch.study.search`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from vrsearch.core.config import PosFloat, StrictModel


class Dimension(StrictModel):
    """One searched knob: float/int ranges (optionally log), or categorical
    choices; ``when`` makes it conditional on categorical parents."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: PosFloat | None = None
    choices: list[Any] | None = None
    when: dict[str, list[Any] | Any] = {}

    @model_validator(mode="after")
    def _check(self) -> Dimension:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty 'choices' list")
            if len({repr(c) for c in self.choices}) != len(self.choices):
                raise ValueError("categorical choices must be distinct")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs 'low' and 'high'")
        if not self.low < self.high:
            raise ValueError(f"empty range: low {self.low} must be < high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("log range needs low > 0")
        if self.log and self.step is not None and not (self.type == "int" and self.step == 1):
            raise ValueError("a log range cannot have a step (Optuna samples it continuously in log space)")
        if self.type == "int" and not all(float(v).is_integer() for v in (self.low, self.high, self.step or 1)):
            raise ValueError("an int range needs whole-number low, high and step")
        return self

    def options(self) -> list[Any]:
        """A categorical's choices (the validator made them a non-empty list)."""
        if self.choices is None:
            raise TypeError(f"a {self.type} dimension has no choices")
        return self.choices

    def bounds(self) -> tuple[float, float]:
        """A float/int range's ``(low, high)`` (the validator made both present)."""
        if self.low is None or self.high is None:
            raise TypeError(f"a {self.type} dimension has no range")
        return self.low, self.high

    def named_values(self) -> list[Any]:
        """The values the study file names: the choices, or the range's two ends."""
        return list(self.options()) if self.type == "categorical" else list(self.bounds())


class AblationArm(StrictModel):
    """One arm of an ablation: its name and the knobs it sets on the baseline."""

    name: Annotated[str, Field(min_length=1)]
    set: dict[str, Any] = {}


def check_space(space: dict[str, Dimension]) -> None:
    """Every ``when`` names a categorical of the space and values among its choices."""
    for key, dim in space.items():
        for parent, values in dim.when.items():
            if parent not in space or space[parent].type != "categorical":
                raise ValueError(f"{key!r} is conditional on {parent!r}, which is not a categorical in 'space'")
            wanted = values if isinstance(values, list) else [values]
            missing = [v for v in wanted if v not in space[parent].options()]
            if missing:
                raise ValueError(f"{key!r}: 'when' value(s) {missing} are not choices of {parent!r}")


def check_axes(axes: dict[str, list[Any]]) -> None:
    """Axes vary ``dataset.*`` keys only, each over a non-empty list of distinct values."""
    for key, values in axes.items():
        if not key.startswith("dataset."):
            raise ValueError(f"axes.{key}: axes vary the data (dataset.*); put other knobs in arms or the space")
        if not values or len({repr(v) for v in values}) != len(values):
            raise ValueError(f"axes.{key}: needs a non-empty list of distinct values")
