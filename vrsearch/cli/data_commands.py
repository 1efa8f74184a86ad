"""``vrsearch data``: the built-in phantom and the real-file smoke-test dataset."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from vrsearch.cli.base import data_app, user_errors
from vrsearch.errors import VrsearchError


class PhantomLayout(str, Enum):
    """Folder layout of ``vrsearch data phantom``."""

    nnunet = "nnunet"
    flare22 = "flare22"


class PhantomPopulation(str, Enum):
    """Subject population of ``vrsearch data phantom``."""

    cohort = "cohort"
    classic = "classic"


@data_app.command("phantom")
def data_phantom(
    out: Annotated[Path, typer.Argument(help="Output directory (created).")],
    cases: Annotated[int, typer.Option(min=1, help="Labeled training cases.")] = 24,
    unlabeled: Annotated[int, typer.Option(min=0, help="Unlabeled cases.")] = 24,
    test: Annotated[int, typer.Option(min=0, help="Test cases (imagesTs/labelsTs, or Validation/ for flare22).")] = 0,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
    size: Annotated[tuple[int, int, int], typer.Option(help="Voxels along x y z.")] = (96, 96, 64),
    spacing: Annotated[tuple[float, float, float], typer.Option(help="mm per voxel along x y z.")] = (3.5, 3.5, 4.0),
    population: Annotated[
        PhantomPopulation,
        typer.Option(
            help="cohort: subjects and scans vary like a multi-centre cohort; "
            "classic: the original population (generator version 1)."
        ),
    ] = PhantomPopulation.cohort,
    layout: Annotated[
        PhantomLayout,
        typer.Option(
            help="nnunet: imagesTr/labelsTr/imagesUnlabeled + dataset.json (read as msd or nnunet); "
            "flare22: the FLARE22 release folders (read as flare22)."
        ),
    ] = PhantomLayout.nnunet,
) -> None:
    """Write the synthetic abdominal CT phantom (nnU-Net/MSD or FLARE22 layout)."""
    from vrsearch.data.phantom import PhantomConfig, write_phantom
    from vrsearch.data.phantom_flare import write_phantom_flare22

    with user_errors():
        if min(size) < 16 or min(spacing) <= 0:
            raise VrsearchError("--size must be ≥ 16 voxels per axis and --spacing > 0 mm")
        cfg = PhantomConfig(
            cases=cases,
            unlabeled=unlabeled,
            test=test,
            seed=seed,
            size=size,
            spacing=spacing,
            population=population.value,
        )
        try:
            writer = write_phantom_flare22 if layout is PhantomLayout.flare22 else write_phantom
            root = writer(out, cfg)
        except FileExistsError as exc:
            raise VrsearchError(str(exc)) from None
        typer.echo(
            f"phantom written to {root} ({layout.value} layout, {population.value} population; "
            f"{cases} labeled, {unlabeled} unlabeled, {test} test)"
        )


@data_app.command("realfiles")
def data_realfiles(
    out: Annotated[Path, typer.Argument(help="Output directory (created).")],
    mricron: Annotated[
        Path | None, typer.Option(help="Debian mricron-data's templates folder (default /usr/share/mricron/templates).")
    ] = None,
    itk: Annotated[
        Path | None,
        typer.Option(
            help="Debian insighttoolkit5-examples' Data folder (default "
            "/usr/share/doc/insighttoolkit5-examples/examples/Data)."
        ),
    ] = None,
) -> None:
    """Build the real-file smoke-test dataset (MSD layout, MRI): blocks of a real T1 with AAL lobes on
    grids of real headers, plus two real unlabeled T1s. A smoke test, not a benchmark."""
    from vrsearch.data.realfiles import Sources, write_realfiles

    with user_errors():
        try:
            where = {k: v for k, v in {"mricron": mricron, "itk": itk}.items() if v is not None}
            root = write_realfiles(out, Sources(**where))
        except FileExistsError as exc:
            raise VrsearchError(str(exc)) from None
        typer.echo(f"real-file smoke-test dataset written to {root} (msd layout, MRI; 6 labeled, 2 unlabeled)")
