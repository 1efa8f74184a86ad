"""The study file: one pydantic v2 model, strict about unknown keys.

Every section rejects keys it does not know with a did-you-mean hint, so a
typo never silently falls back to a default. ``method.params`` is checked
against the registered method's ``Params`` by :func:`vrsearch.study.load`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from vrsearch.registry import did_you_mean

PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
#: resources Ray defines itself (not custom_per_worker names)
RAY_BUILTIN_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")


class StrictModel(BaseModel):
    """Base of every section: unknown keys are errors that suggest a fix."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
            for key in data:
                if key not in known:
                    raise PydanticCustomError(
                        "unknown_key",
                        "unknown key {key}{hint}",
                        {"key": str(key), "hint": did_you_mean(key, known)},
                    )
        return data


class PhantomOptions(StrictModel):
    """Options of the built-in synthetic CT (``vrsearch.data.phantom``).

    ``population: cohort`` varies anatomy and scans like a multi-centre cohort
    (``vrsearch.data.phantom_cohort``); ``classic`` is the original population
    (generator version 1: one reference body, one scanner, portal-venous
    phase), kept so earlier studies can be reproduced."""

    cases: PosInt = 24
    unlabeled: NonNegInt = 24
    test: NonNegInt = 0
    seed: NonNegInt = 0
    size: tuple[Annotated[int, Field(ge=8)], Annotated[int, Field(ge=8)], Annotated[int, Field(ge=8)]] = (96, 96, 64)
    spacing: tuple[PosFloat, PosFloat, PosFloat] = (3.5, 3.5, 4.0)
    population: Literal["cohort", "classic"] = "cohort"


class IntensityConfig(StrictModel):
    """Intensity normalisation, chosen for the dataset's modality by default.

    ``auto`` (default): a CT dataset (FLARE22, the phantom, or ``dataset.json``
    declaring ``CT``) gets ``window`` over ``clip`` (default the abdominal
    soft-tissue window [-325, 325] HU); any other modality (MR, unknown) gets
    ``percentile`` with no clip. ``window`` clips to ``clip`` and scales to
    [0, 1]; ``percentile`` maps the (low, high) percentiles of each volume to
    [0, 1], after clipping to ``clip`` if one is given; ``zscore`` normalises by
    each volume's mean/std (after the clip, if any); ``none`` leaves values.
    ``vrsearch validate --check-data`` warns when the clip saturates a large
    share of the voxels (a CT window on MR, say)."""

    scale: Literal["auto", "window", "percentile", "zscore", "none"] = "auto"
    #: (low, high) in the image's units; none by default (the CT window comes from ``auto``)
    clip: tuple[float, float] | None = None
    percentiles: tuple[float, float] = (0.5, 99.5)

    @model_validator(mode="after")
    def _check(self) -> IntensityConfig:
        if self.clip is not None and self.clip[0] >= self.clip[1]:
            raise ValueError("clip must be (low, high) with low < high")
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError("percentiles must satisfy 0 <= low < high <= 100")
        return self


class AugmentConfig(StrictModel):
    """Random augmentation of training patches (labeled and unlabeled).

    No flips by default: left/right organs are different classes in
    abdominal CT, so a left-right flip would corrupt the labels."""

    flip_axes: list[Annotated[int, Field(ge=0, le=2)]] = []
    flip_prob: Annotated[float, Field(ge=0, le=1)] = 0.5
    intensity_shift: Annotated[float, Field(ge=0)] = 0.0
    intensity_scale: Annotated[float, Field(ge=0)] = 0.0


class DatasetConfig(StrictModel):
    layout: Literal["phantom", "msd", "nnunet", "flare22", "acdc"] = "phantom"
    root: Path = Path("data/phantom")
    phantom: PhantomOptions = PhantomOptions()
    labeled_ratio: Annotated[float, Field(gt=0.0, le=1.0)] = 0.25
    split_seed: int = 0
    val_fraction: Fraction = 0.2
    test_fraction: Fraction = 0.2
    use_dataset_test: bool = False
    #: how many images of the dataset's own unlabeled pool (e.g. FLARE22's unlabeled
    #: folder) join training, chosen by a seeded shuffle of split_seed so that smaller
    #: pools are subsets of larger ones (FLARE22 paper: 42 or 378); None = all of them
    unlabeled_pool: NonNegInt | None = None
    patch_size: tuple[PosInt, PosInt, PosInt] = (64, 64, 48)
    spacing: tuple[PosFloat, PosFloat, PosFloat] | None = None
    orientation: Annotated[str, Field(pattern=r"^[LRAPSI]{3}$")] = "RAS"
    intensity: IntensityConfig = IntensityConfig()
    augment: AugmentConfig = AugmentConfig()
    cache: Literal["memory", "none"] = "memory"
    num_workers: NonNegInt = 0

    @model_validator(mode="after")
    def _check(self) -> DatasetConfig:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("val_fraction + test_fraction must be < 1")
        axes = {c.replace("L", "R").replace("P", "A").replace("I", "S") for c in self.orientation}
        if len(axes) != 3:
            raise ValueError(f"orientation {self.orientation!r} must name each axis once")
        return self


class ModelConfig(StrictModel):
    """Backbone (MONAI ``UNet``/``BasicUNet``) plus segmentation and feature heads.

    ``spatial_dims: 2`` trains a 2D network on axial slices: the patch's last
    dimension must then be 1."""

    arch: Literal["unet", "basic_unet"] = "unet"
    spatial_dims: Literal[2, 3] = 3
    channels: tuple[PosInt, ...] = (16, 32, 64, 128)
    num_res_units: NonNegInt = 1
    norm: Literal["instance", "batch"] = "instance"
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    feature_dim: PosInt = 16

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.arch == "basic_unet" and len(self.channels) != 6:
            raise ValueError("basic_unet needs exactly 6 channels (MONAI BasicUNet features)")
        if self.arch == "unet" and len(self.channels) < 2:
            raise ValueError("unet needs at least 2 channel levels")
        return self


class OptimizerConfig(StrictModel):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: PosFloat = 1e-3
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    nesterov: bool = False


class ScheduleConfig(StrictModel):
    """LR schedule: ``poly`` (1 − it/max)^power, ``step`` decay by gamma every
    step_size, ``cosine`` annealing; all after ``warmup`` linear iterations."""

    name: Literal["poly", "step", "cosine", "constant"] = "poly"
    power: PosFloat = 0.9
    step_size: PosInt = 1000
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.1
    warmup: NonNegInt = 0
    min_lr: Annotated[float, Field(ge=0)] = 0.0


class BatchConfig(StrictModel):
    labeled: PosInt = 2
    unlabeled: NonNegInt = 2


class EvalConfig(StrictModel):
    every: PosInt = 50
    overlap: Annotated[float, Field(ge=0, lt=1)] = 0.25
    sw_batch_size: PosInt = 2
    roi_size: tuple[PosInt, PosInt, PosInt] | None = None
    hd_percentile: Annotated[float, Field(gt=0, le=100)] = 95.0
    at_start: bool = True
    #: a class empty in truth and prediction: ``nan`` (Metrics Reloaded) = NaN for every
    #: metric, left out of every mean and of validation selection; ``one`` = Dice and
    #: Jaccard 1 (distances NaN), the convention of much SSL code
    both_empty: Literal["nan", "one"] = "nan"


class TrainConfig(StrictModel):
    iterations: PosInt = 300
    batch: BatchConfig = BatchConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    eval: EvalConfig = EvalConfig()
    seed: int = 0
    log_every: PosInt = 10
    checkpoint_every: PosInt | None = None
    threads: PosInt | None = None
    #: seeded, reproducible kernels; false also lets cuDNN benchmark its convolutions on CUDA
    deterministic: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: autocast dtype of the training forward (and of evaluation's network calls; metrics
    #: stay fp32): ``auto`` = bf16 on a CUDA GPU that supports it, else fp16 with loss
    #: scaling (``GradScaler``) on CUDA, and fp32 on CPU (bit-deterministic CPU runs);
    #: ``bf16``/``fp16`` also work on CPU (fp16 always with a ``GradScaler``)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    #: convolution weights and input batches in channels-last memory format
    #: (``channels_last_3d`` for 3D models, ``channels_last`` for 2D); faster with
    #: tensor cores (bf16/fp16 on recent GPUs)
    channels_last: bool = False
    #: ``torch.compile`` the method's networks (its SegNets) in place; a toolchain that
    #: cannot compile is reported as a one-line error before training starts
    compile: bool = False


class MethodConfig(StrictModel):
    name: str = "supervised"
    params: dict[str, Any] = {}


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


class ResourcesConfig(StrictModel):
    concurrent_trials: PosInt = 1
    workers_per_trial: PosInt = 1
    cpus_per_worker: PosFloat = 1.0
    gpus_per_worker: Annotated[float, Field(ge=0)] = 0.0
    max_failures: NonNegInt = 1
    #: custom Ray resources each training worker asks for besides its CPUs/GPUs, e.g.
    #: ``{trial_slot: 1}``: a trial then runs only on nodes that advertise them (a cluster's
    #: worker node types), never on a head that does not; a local Ray advertises them itself
    custom_per_worker: dict[str, PosFloat] = {}
    #: temp dir of a local Ray (sessions, sockets, logs); default: RUN_DIR/ray when short enough
    ray_temp_dir: Path | None = None

    @field_validator("custom_per_worker")
    @classmethod
    def _custom(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if name in RAY_BUILTIN_RESOURCES or not name.strip() or name.startswith("node:"):
                raise ValueError(f"{name!r} is not a custom resource name (CPUs and GPUs have their own "
                                 "settings; memory, object_store_memory and node:<ip> are Ray's own)")
            if not math.isfinite(amount) or round(amount, 4) != amount:
                raise ValueError(f"{name}: {amount!r} must be finite with at most 4 decimals (Ray's precision)")
        return value


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
