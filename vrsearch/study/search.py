"""The ``search`` section: how a study's trials are designed, one model per design.

``design`` picks the model (a discriminated union): ``none`` (the study once per
seed), ``grid`` (the full factorial of categorical dimensions), ``random``
(``num_samples`` seeded draws), ``ablation`` (the study as ``baseline`` plus one
cell per arm) and ``search`` (Optuna proposes ``num_samples`` configurations). Each
has the keys it reads and no others: a key of another design is an error that
says so; reading one (``study.search.arms`` of a grid, say) gives its default.
Every design shares the scheduler that stops trials, the metric and the seeds.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator
from pydantic_core import PydanticCustomError

from vrsearch.core.config import PosInt, StrictModel
from vrsearch.study.dimensions import AblationArm, Dimension, check_axes, check_space


class _Design(StrictModel):
    """What every design has: the scheduler that stops trials, the search metric, the seeds."""

    design: str = "none"
    scheduler: Literal["asha", "median", "none"] = "asha"
    metric: str = "val_dice"
    mode: Literal["max", "min"] = "max"
    #: one seed per configuration (tabular benchmark, benchmarks/RESULTS.md (e): seed noise sd 0.013,
    #: as large as the configurations' true spread; at equal compute, 48 configurations x 1 seed kept
    #: one within 1 Dice point of the best in 78-88 % of simulated searches, 24 x 2 seeds in 77-90 %,
    #: by the model of the true values: no reliable gain; benchmarks/seed_policy.py checks a pilot)
    seeds: list[int] = [0]
    #: ASHA's first rung / the median rule's grace, in iterations; None: ``train.eval.every``, the
    #: first evaluation (tabular benchmark, 48 configurations, median % of the exhaustive compute
    #: to come within the target, three replays: first eval 4.9 / 13.5 / 8.1, second 5.1 / 12.2 /
    #: 8.6, fourth 7.0 / 14.3 / 11.3, no scheduler 5.6 / 16.4 / 13.8)
    grace_period: PosInt | None = None
    #: ASHA's reduction factor (tabular benchmark: 2 reached the target in 97-100 % of replayed
    #: searches; 3 took 4.7 / 14.3 / 12.6 % against 4.9 / 13.5 / 8.1 %, missing it in up to 10 % with
    #: TPE and 20 % with CMA-ES)
    reduction_factor: Annotated[int, Field(ge=2)] = 2

    #: the keys only some designs have, with their defaults: what reading one gives where absent
    OTHER_KEYS: ClassVar[dict[str, Any]] = {
        "space": {},
        "arms": [],
        "axes": {},
        "num_samples": 8,
        "searcher": "tpe",
        "storage": None,
        "aggregate": "mean",
        "start_from_defaults": False,
        "n_startup_trials": 10,
        "multivariate": True,
        "constant_liar": True,
    }
    #: scheduler keys and the schedulers that read them
    SCHEDULER_KEYS: ClassVar[dict[str, tuple[str, ...]]] = {
        "grace_period": ("asha", "median"),
        "reduction_factor": ("asha",),
    }

    def __getattr__(self, name: str) -> Any:
        if name in _Design.OTHER_KEYS and name not in type(self).model_fields:
            return copy.deepcopy(_Design.OTHER_KEYS[name])
        return super().__getattr__(name)  # type: ignore[misc]  # pydantic defines it only when not TYPE_CHECKING

    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        """Unknown keys are errors with a hint; a key of another design is an error naming
        the designs that read it (at its default — as an older resolved study.yaml spells
        every key out — it is dropped)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key in [k for k in data if k in _Design.OTHER_KEYS and k not in cls.model_fields]:
            if data[key] == _Design.OTHER_KEYS[key]:
                del data[key]
                continue
            users = [d for d, c in DESIGNS.items() if key in c.model_fields]
            raise PydanticCustomError(
                "ignored_key",
                "{key} design {value} ignores it (it applies to design {users} only); remove it",
                {"key": key, "value": repr(cls.model_fields["design"].default), "users": " or ".join(map(repr, users))},
            )
        return super()._known_keys_only(data)

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:  # errors named search.seeds
        if not seeds:
            raise ValueError("seeds must not be empty")
        twice = sorted({s for s in seeds if seeds.count(s) > 1})
        if twice:
            raise ValueError(f"seeds must be distinct; {', '.join(map(str, twice))} repeated")
        return seeds

    @model_validator(mode="after")
    def _scheduler_keys(self) -> _Design:
        for key, users in self.SCHEDULER_KEYS.items():
            value = getattr(self, key)
            if (
                key in self.model_fields_set
                and value != type(self).model_fields[key].default
                and self.scheduler not in users
            ):
                raise PydanticCustomError(
                    "ignored_key",
                    "{key} scheduler {value} ignores it (it applies to scheduler {users} only); remove it",
                    {"key": key, "value": repr(self.scheduler), "users": " or ".join(map(repr, users))},
                )
        return self


class _FixedDesign(_Design):
    """What the fixed designs (every one but ``search``) have: the dataset ``axes``."""

    #: dataset settings crossed with every cell (e.g. ``{"dataset.labeled_ratio": [0.1, 0.2]}``)
    axes: dict[str, list[Any]] = {}

    @model_validator(mode="after")
    def _check(self) -> _FixedDesign:
        check_axes(self.axes)
        return self


class NoneDesign(_FixedDesign):
    """The study itself, once per seed (crossed with the dataset ``axes``)."""

    design: Literal["none"] = "none"


class GridDesign(_FixedDesign):
    """The full factorial of categorical dimensions (a conditional one only where its parents match)."""

    design: Literal["grid"] = "grid"
    space: dict[str, Dimension]

    @model_validator(mode="after")
    def _grid(self) -> GridDesign:
        if not self.space:
            raise ValueError("design 'grid' needs a non-empty 'space'")
        for key, dim in self.space.items():
            if dim.type != "categorical":
                raise ValueError(f"grid design needs categorical dimensions; {key!r} is {dim.type}")
        check_space(self.space)
        return self


class RandomDesign(_FixedDesign):
    """``num_samples`` distinct cells drawn from the space with a seeded generator (no Optuna)."""

    design: Literal["random"] = "random"
    space: dict[str, Dimension]
    num_samples: PosInt = 8

    @model_validator(mode="after")
    def _random(self) -> RandomDesign:
        if not self.space:
            raise ValueError("design 'random' needs a non-empty 'space'")
        check_space(self.space)
        return self


class AblationDesign(_FixedDesign):
    """The study as ``baseline`` plus one cell per arm (an arm sets one or more knobs)."""

    design: Literal["ablation"] = "ablation"
    arms: list[AblationArm]

    @model_validator(mode="after")
    def _arms(self) -> AblationDesign:
        if not self.arms:
            raise ValueError("design 'ablation' needs 'arms'")
        names = [a.name for a in self.arms]
        if "baseline" in names or len(set(names)) != len(names):
            raise ValueError("arm names must be distinct and not 'baseline' (the study itself is the baseline)")
        return self


class SearchDesign(_Design):
    """Optuna proposes ``num_samples`` configurations (each run once per seed)."""

    design: Literal["search"] = "search"
    searcher: Literal["tpe", "random", "cmaes"] = "tpe"
    space: dict[str, Dimension]
    num_samples: PosInt = 8
    #: Optuna's storage (any SQLAlchemy URL); default: SQLite in the run directory
    storage: str | None = None
    #: with several seeds, what Optuna is told once every seed of a configuration has
    #: finished — the mean, or ``lcb``: the mean one standard error on the pessimistic side
    #: (mean − s/√k for ``mode: max``, mean + s/√k for ``min``); the mean by default (tabular
    #: benchmark, 24 configurations x 2 seeds simulated: the mean kept one within 1 Dice point of the
    #: best in 77-90 % of searches, lcb in 74-87 %, worse under every model: s of 2 seeds is noise)
    aggregate: Literal["mean", "lcb"] = "mean"
    #: the first trial runs the study's own value of every searched key (e.g. a paper's
    #: defaults), enqueued in Optuna before the sampler proposes
    start_from_defaults: bool = False
    #: TPE and CMA-ES: proposals drawn at random before the sampler's model is used (Optuna's
    #: default, kept: the tabular benchmark ties 5, 10 and 20 — with ASHA at its second rung 5.1 %
    #: of the exhaustive compute each, 11.2 / 12.2 / 12.2 % at a 0.3-point target — as its targets
    #: fall inside the start-up trials, benchmarks/RESULTS.md (e))
    n_startup_trials: PosInt = 10
    #: TPE: model the searched keys jointly (multivariate TPE) rather than one by one (tabular
    #: benchmark with ASHA: multivariate 4.9 / 13.5 / 8.1 %, independent 4.9 / 14.3 / 8.1 %, within
    #: noise; kept as Optuna recommends for correlated knobs)
    multivariate: bool = True
    #: TPE: while trials run, count their proposals as bad results, so concurrent proposals spread
    #: out (tabular benchmark, 2 at a time: a tie, 5.1 % with or without; Optuna's default, kept)
    constant_liar: bool = True

    @model_validator(mode="before")
    @classmethod
    def _no_axes(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("axes"):
            raise ValueError(
                "axes cross the cells of a fixed design (none/grid/random/ablation); run one search per dataset setting"
            )
        return data

    @model_validator(mode="after")
    def _search(self) -> SearchDesign:
        if not self.space:
            raise ValueError("design 'search' needs a non-empty 'space'")
        for key, dim in self.space.items():
            if dim.type == "categorical" and not all(
                isinstance(c, (str, int, float, bool, type(None))) for c in dim.options()
            ):
                raise ValueError(
                    f"{key!r}: a search design's choices must be numbers, strings, booleans or "
                    "null (Optuna stores them); put list-valued choices in a grid or ablation"
                )
        check_space(self.space)
        return self


DESIGNS: dict[str, type[_Design]] = {
    "none": NoneDesign,
    "grid": GridDesign,
    "random": RandomDesign,
    "ablation": AblationDesign,
    "search": SearchDesign,
}


def _design_of(value: Any) -> str:
    """The union's tag: ``design`` (``none`` when left out)."""
    if isinstance(value, dict):
        return str(value.get("design", "none"))
    return getattr(value, "design", "none")


#: the section's type: a union discriminated on ``design`` (``none`` when left out)
SearchConfig = Annotated[
    Annotated[NoneDesign, Tag("none")]
    | Annotated[GridDesign, Tag("grid")]
    | Annotated[RandomDesign, Tag("random")]
    | Annotated[AblationDesign, Tag("ablation")]
    | Annotated[SearchDesign, Tag("search")],
    Field(
        discriminator=Discriminator(
            _design_of,
            custom_error_type="design",
            custom_error_message=f"design must be one of {', '.join(map(repr, DESIGNS))}",
        )
    ),
]
