"""The sections of a study file that every layer reads: one pydantic model each,
strict about unknown keys (with a did-you-mean hint), plus the constrained types
they share. The whole study (with its ``search`` design and ``output``) is
:class:`vrsearch.study.schema.Study`; this module is a leaf so that data, models,
methods and engine can take their section without depending on the study layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from vrsearch.core.names import did_you_mean

PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
#: a probability or weight in [0, 1]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
#: a share of cases held out (val/test), in [0, 1)
SplitFraction = Annotated[float, Field(ge=0.0, lt=1.0)]
#: where a command's progress and warning lines go (``print``, a rich console)
Echo = Callable[[str], None]
#: resources Ray defines itself (not custom_per_worker names)
RAY_BUILTIN_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")


class StrictModel(BaseModel):
    """Base of every section: unknown keys are errors that suggest a fix."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _unknown_keys(cls, data: Any) -> Any:
        return cls._known_keys_only(data)

    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        """``data`` itself; an error naming the first key that is not a field (with a hint)."""
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
    val_fraction: SplitFraction = 0.2
    test_fraction: SplitFraction = 0.2
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
                raise ValueError(
                    f"{name!r} is not a custom resource name (CPUs and GPUs have their own "
                    "settings; memory, object_store_memory and node:<ip> are Ray's own)"
                )
            if not math.isfinite(amount) or round(amount, 4) != amount:
                raise ValueError(f"{name}: {amount!r} must be finite with at most 4 decimals (Ray's precision)")
        return value
