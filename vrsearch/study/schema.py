"""The study file: one pydantic v2 model, strict about unknown keys.

Every section rejects keys it does not know with a did-you-mean hint, so a
typo never silently falls back to a default. The sections every layer reads
(dataset, model, train, method, resources) are in :mod:`vrsearch.core.config`;
here are the search design, the output and the :class:`Study` that holds them.
``method.params`` is checked against the registered method's ``Params`` by
:func:`vrsearch.study.load`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from vrsearch.core.config import (  # noqa: F401  (the sections, re-exported: a Study is made of them)
    AugmentConfig, BatchConfig, DatasetConfig, EvalConfig, IntensityConfig, MethodConfig, ModelConfig, NonNegInt,
    OptimizerConfig, PhantomOptions, PosFloat, PosInt, ResourcesConfig, ScheduleConfig, StrictModel, TrainConfig,
)


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


class AblationArm(StrictModel):
    name: Annotated[str, Field(min_length=1)]
    set: dict[str, Any] = {}


class SearchConfig(StrictModel):
    """How trials are designed. ``none`` = the study's config once per seed."""

    design: Literal["none", "search", "grid", "random", "ablation"] = "none"
    searcher: Literal["tpe", "random", "cmaes"] = "tpe"
    scheduler: Literal["asha", "median", "none"] = "asha"
    metric: str = "val_dice"
    mode: Literal["max", "min"] = "max"
    num_samples: PosInt = 8
    seeds: list[int] = [0]
    space: dict[str, Dimension] = {}
    arms: list[AblationArm] = []
    grace_period: PosInt | None = None
    reduction_factor: Annotated[int, Field(ge=2)] = 2
    storage: str | None = None
    #: dataset axes crossed with every cell of a fixed design (e.g. method × ratio × seed):
    #: ``{"dataset.labeled_ratio": [0.1, 0.2], "dataset.split_seed": [0, 1]}``
    axes: dict[str, list[Any]] = {}
    #: ``search`` design with several seeds: what the searcher is told once every seed of
    #: a configuration has finished — the mean, or ``lcb``: the mean one standard error
    #: on the pessimistic side (mean − s/√k for ``mode: max``, mean + s/√k for ``min``)
    aggregate: Literal["mean", "lcb"] = "mean"
    #: ``search`` design: the first trial runs the study's own value of every searched
    #: key (e.g. a paper's defaults), enqueued in Optuna before the sampler proposes
    start_from_defaults: bool = False

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:  # errors named search.seeds
        if not seeds:
            raise ValueError("seeds must not be empty")
        twice = sorted({s for s in seeds if seeds.count(s) > 1})
        if twice:
            raise ValueError(f"seeds must be distinct; {', '.join(map(str, twice))} repeated")
        return seeds

    #: keys that only some designs (or schedulers) read: set under another, they would be
    #: silently ignored, so they are errors
    _USED_BY: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {
        "arms": ("design", ("ablation",)),
        "space": ("design", ("search", "grid", "random")),
        "num_samples": ("design", ("search", "random")),
        "searcher": ("design", ("search",)),
        "storage": ("design", ("search",)),
        "aggregate": ("design", ("search",)),
        "start_from_defaults": ("design", ("search",)),
        "grace_period": ("scheduler", ("asha", "median")),
        "reduction_factor": ("scheduler", ("asha",)),
    }

    def _ignored_keys(self) -> None:
        for key, (by, users) in self._USED_BY.items():
            # a default value (as a resolved study.yaml spells out every key) has nothing to ignore
            value_set = getattr(self, key)
            given = key in self.model_fields_set and value_set != type(self).model_fields[key].default
            value = getattr(self, by)
            if given and value not in users:
                raise PydanticCustomError(
                    "ignored_key", "{key} {by} {value} ignores it (it applies to {by} {users} only); remove it",
                    {"key": key, "by": by, "value": repr(value), "users": " or ".join(map(repr, users))})

    @model_validator(mode="after")
    def _check(self) -> SearchConfig:
        self._ignored_keys()
        if self.design in ("search", "grid", "random") and not self.space:
            raise ValueError(f"design {self.design!r} needs a non-empty 'space'")
        if self.design == "grid":
            for key, dim in self.space.items():
                if dim.type != "categorical":
                    raise ValueError(f"grid design needs categorical dimensions; {key!r} is {dim.type}")
        if self.design == "ablation" and not self.arms:
            raise ValueError("design 'ablation' needs 'arms'")
        names = [a.name for a in self.arms]
        if "baseline" in names or len(set(names)) != len(names):
            raise ValueError("arm names must be distinct and not 'baseline' (the study itself is the baseline)")
        for key, values in self.axes.items():
            if not key.startswith("dataset."):
                raise ValueError(f"axes.{key}: axes vary the data (dataset.*); put other knobs in arms or the space")
            if not values or len({repr(v) for v in values}) != len(values):
                raise ValueError(f"axes.{key}: needs a non-empty list of distinct values")
        if self.design == "search":
            for key, dim in self.space.items():
                if dim.type == "categorical" and not all(isinstance(c, (str, int, float, bool, type(None)))
                                                         for c in dim.choices):
                    raise ValueError(f"{key!r}: a search design's choices must be numbers, strings, booleans or "
                                     "null (Optuna stores them); put list-valued choices in a grid or ablation")
        if self.axes and self.design == "search":
            raise ValueError("axes cross the cells of a fixed design (none/grid/random/ablation); "
                             "run one search per dataset setting")
        for key, dim in self.space.items():
            for parent, values in dim.when.items():
                if parent not in self.space or self.space[parent].type != "categorical":
                    raise ValueError(f"{key!r} is conditional on {parent!r}, which is not a categorical in 'space'")
                wanted = values if isinstance(values, list) else [values]
                missing = [v for v in wanted if v not in (self.space[parent].choices or [])]
                if missing:
                    raise ValueError(f"{key!r}: 'when' value(s) {missing} are not choices of {parent!r}")
        return self


class OutputConfig(StrictModel):
    dir: Path | None = None
    #: where the run is also kept (``<storage>/<study name>``): ``s3://bucket/prefix``,
    #: ``gs://bucket/prefix``, ``file:///shared/path`` or a path; credentials from the environment
    storage: str | None = None

    @model_validator(mode="after")
    def _storage(self) -> OutputConfig:
        if self.storage is not None:
            from vrsearch.errors import VrsearchError
            from vrsearch.results.storage import check_uri

            if not self.storage.strip():
                raise ValueError("storage: must be a URI or a path (or left out)")
            try:
                check_uri(self.storage)
            except VrsearchError as exc:
                raise ValueError(f"storage: {exc}") from None
        return self


class Study(StrictModel):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
    description: str = ""
    method: MethodConfig = MethodConfig()
    dataset: DatasetConfig = DatasetConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    search: SearchConfig = SearchConfig()
    resources: ResourcesConfig = ResourcesConfig()
    output: OutputConfig = OutputConfig()

    @model_validator(mode="after")
    def _cross(self) -> Study:
        patch = self.dataset.patch_size
        if self.model.spatial_dims == 2 and patch[2] != 1:
            raise PydanticCustomError("cross", "dataset.patch_size: a 2D model needs patch_size [x, y, 1]", {})
        depth = len(self.model.channels) - 1 if self.model.arch == "unet" else 4
        axes = patch[:2] if self.model.spatial_dims == 2 else patch
        bad = [n for n in axes if n % (2**depth)]
        if bad:
            raise PydanticCustomError(
                "cross",
                "dataset.patch_size: every size must be divisible by {f} for {d} down-samplings (got {p})",
                {"f": 2**depth, "d": depth, "p": list(patch)},
            )
        return self

    @property
    def run_dir(self) -> Path:
        return self.output.dir if self.output.dir is not None else Path("runs") / self.name
