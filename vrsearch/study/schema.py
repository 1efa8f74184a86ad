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
from typing import Annotated

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from vrsearch.core.config import (  # noqa: F401  (the sections, re-exported: a Study is made of them)
    AugmentConfig,
    BatchConfig,
    DatasetConfig,
    EvalConfig,
    IntensityConfig,
    MethodConfig,
    ModelConfig,
    NonNegInt,
    OptimizerConfig,
    PhantomOptions,
    PosFloat,
    PosInt,
    ResourcesConfig,
    ScheduleConfig,
    StrictModel,
    TrainConfig,
)
from vrsearch.study.dimensions import AblationArm, Dimension  # noqa: F401  (re-exported)
from vrsearch.study.search import (  # noqa: F401  (re-exported)
    AblationDesign,
    GridDesign,
    NoneDesign,
    RandomDesign,
    SearchConfig,
    SearchDesign,
)


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
    search: SearchConfig = NoneDesign()
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
