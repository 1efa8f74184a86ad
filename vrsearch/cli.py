"""``vrsearch`` command line (typer).

Every user error (study file, data, option value) prints one line
``error: …`` on stderr and exits with code 2 — no traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
import types
from enum import Enum
from typing import Annotated, Literal, Optional, Union, get_args, get_origin

import typer

from vrsearch.errors import VrsearchError

app = typer.Typer(
    help="Hyperparameter searches and ablations of semi-supervised segmentation methods.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)
data_app = typer.Typer(help="Datasets: generate the built-in phantom (nnU-Net or FLARE22 layout) or build the "
                       "real-file smoke-test dataset.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(data_app, name="data")

SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a study field, e.g. --set train.iterations=100 (repeatable)."),
]
StudyArg = Annotated[Path, typer.Argument(help="Study file (YAML).")]


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn user-facing errors into one line on stderr and exit code 2."""
    try:
        yield
    except VrsearchError as exc:
        fail(str(exc).replace("\n", " "))
    except KeyboardInterrupt:
        fail("interrupted", 130)


@app.command()
def validate(
    study: StudyArg,
    set_: SetOption = None,
    check_data: Annotated[bool, typer.Option("--check-data", help="Also read and check every data file.")] = False,
    address: Annotated[Optional[str], typer.Option(
        help="The cluster 'vrsearch run' will join: its resources, not this machine's, are checked.")] = None,
) -> None:
    """Check a study file as 'vrsearch run' would and print the resolved study (all defaults filled)."""
    from vrsearch.orchestrate.checks import check_study
    from vrsearch.study import load_study, study_to_yaml

    with user_errors():
        s = load_study(study, set_ or [])
        data = check_study(s, address, data=check_data, warn=lambda line: typer.echo(f"warning: {line}", err=True))
        if data is not None:
            from vrsearch.data.intensity import describe

            sp = data.split
            modality = data.index.modality or "modality not declared"
            typer.echo(f"# data ok: {len(sp.labeled)} labeled, {len(sp.unlabeled)} unlabeled, "
                       f"{len(sp.val)} val, {len(sp.test)} test; {data.num_classes} classes; {modality}, "
                       f"intensity {describe(data.dataset.intensity)}", err=True)
        typer.echo(study_to_yaml(s), nl=False)


@app.command()
def train(
    study: StudyArg,
    set_: SetOption = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Discard this run's checkpoint and results first.")] = False,
) -> None:
    """Train one trial of a study without Ray (debugging, quick checks).

    Results go to the study's output.dir (default runs/<name>); an interrupted
    run continues from its last checkpoint when started again."""
    from vrsearch.engine.single import train_single

    with user_errors():
        out = train_single(study, set_ or [], fresh=fresh, echo=typer.echo)
        if out.trial["status"] != "completed":
            fail(f"trial failed: {out.trial['error']}", 1)


class _ConsoleEcho:
    """Progress lines through rich (numbers highlighted on a terminal, plain otherwise).
    Picklable (Tune saves its callbacks): the console is made on first use."""

    _console = None

    def __call__(self, line: str) -> None:
        if self._console is None:
            from rich.console import Console

            self._console = Console(highlight=True, soft_wrap=True)
        self._console.print(line, markup=False)

    def __getstate__(self) -> dict:
        return {}


def _console_echo() -> _ConsoleEcho:
    return _ConsoleEcho()


@app.command()
def run(
    study: StudyArg,
    set_: SetOption = None,
    address: Annotated[Optional[str], typer.Option(help="Join an existing Ray cluster (auto, ray://host:port).")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Discard an earlier run of this study in output.dir.")] = False,
) -> None:
    """Run a study on Ray Tune (Optuna/ASHA or a fixed design), results in output.dir."""
    from vrsearch.orchestrate.runner import run_study

    with user_errors():
        run_study(study, set_ or [], address=address, fresh=fresh, echo=_console_echo())


@app.command()
def resume(
    run_dir: Annotated[str, typer.Argument(
        help="Run directory of an interrupted study, or its storage URI (s3://bucket/prefix/NAME?...).")],
    address: Annotated[Optional[str], typer.Option(help="Join an existing Ray cluster.")] = None,
    into: Annotated[Optional[Path], typer.Option(
        "--into", help="With a URI: the local run directory (default: the stored study's output.dir).")] = None,
) -> None:
    """Continue an interrupted study: finished trials are kept, unfinished ones resume.

    Given a storage URI, the run is first pulled (only what changed) into a local dir."""
    from vrsearch.orchestrate.runner import resume_study
    from vrsearch.results.storage import is_uri

    with user_errors():
        if into is not None and not is_uri(run_dir):
            raise VrsearchError("--into applies to a storage URI only")
        resume_study(run_dir if is_uri(run_dir) else Path(run_dir), address=address, echo=_console_echo(),
                     into=into)


@app.command()
def methods() -> None:
    """List registered methods with their knobs and defaults."""
    from vrsearch.methods import all_methods

    for spec in all_methods():
        flag = "  [needs unlabeled data]" if spec.data_needs().unlabeled else ""
        typer.echo(f"{spec.name}{flag}")
        if spec.summary:
            typer.echo(f"    {spec.summary}")
        if spec.citation:
            typer.echo(f"    cite: {spec.citation}")
        for knob, default in spec.knobs().items():
            field = spec.params.model_fields[knob]
            typer.echo(f"    {knob} = {default!r}  ({_type_name(field.annotation)})")


def _type_name(annotation) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + "|".join(str(a) for a in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in get_args(annotation))
    if origin is Annotated:
        return _type_name(get_args(annotation)[0])
    if origin is list:
        return f"list of {_type_name(get_args(annotation)[0])}" if get_args(annotation) else "list"
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "")


class Split(str, Enum):
    """Which evaluation split ``vrsearch table`` reports."""

    test = "test"
    val = "val"


BaselineRunOption = Annotated[Optional[str], typer.Option(
    "--baseline-run", help="Another run directory (one configuration, e.g. the labeled-only UNet) whose trials "
    "are the baseline, under --baseline NAME (default: its study's name).")]


@app.command()
def table(
    run_dir: Annotated[str, typer.Argument(
        help="Run directory of a study (finished or still running), or its storage URI.")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Write the table files here (default: RUN_DIR; for a URI the current directory).")] = None,
    baseline: Annotated[Optional[str], typer.Option(
        help="Group the others are compared with (default: 'baseline' if present, else the first group).")] = None,
    split: Annotated[Split, typer.Option(help="Evaluation split to report.")] = Split.test,
    classes: Annotated[bool, typer.Option(
        "--classes", help="Also print per-class Dice and empty-mask counts (split to fit the terminal).")] = False,
    baseline_run: BaselineRunOption = None,
) -> None:
    """Ablation table: the headline test of each arm vs the baseline over seeds (Dice ± CI, Δ ± CI,
    Holm p, minimal detectable difference, budget), then the case-level view on these trained models.

    The terminal shows per-class columns only when they fit (or with --classes); the files
    table.md, table.tex (booktabs) and table.csv (raw numbers) keep everything."""
    from rich.console import Console

    from vrsearch.results import storage
    from vrsearch.results.table import load_tables

    with user_errors():
        remote = storage.is_uri(run_dir)
        if baseline_run is not None:
            from vrsearch.results.table import ablation_table
            from vrsearch.results.verdict import load_with_baseline

            results, name = load_with_baseline(run_dir, baseline_run, baseline)
            tables = [ablation_table(results, baseline=name, split=split.value, name=run_dir)]
        else:
            tables = load_tables(run_dir if remote else Path(run_dir), baseline=baseline, split=split.value)
        default = Path.cwd() if remote else Path(run_dir)
        paths = [p for t in tables for p in t.write(out if out is not None else default)]
        if remote:  # the stored run gets the table files too
            for path in paths:
                storage.put(path, run_dir, path.name)
    console = Console()
    if not console.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        console = Console(width=max(console.width, 200))  # a pipe or a log: wide unless COLUMNS says otherwise
    for t in tables:
        for part in t.to_rich(console.width, classes):
            console.print(part)
    for path in paths:
        typer.echo(f"written {path}")


@app.command()
def summary(
    run_dir: Annotated[str, typer.Argument(help="Run directory of a study, or its storage URI.")],
    baseline_run: BaselineRunOption = None,
    baseline: Annotated[Optional[str], typer.Option(
        help="Name of the baseline group (default: 'baseline'; with --baseline-run, that run's study name).")] = None,
) -> None:
    """In plain words: what ran, the best configuration (chosen on validation Dice), its
    validation and test Dice against the baseline with the headline test's CI and p
    (with one seed: no significance can be claimed), and where the report is."""
    from vrsearch.results.verdict import verdict

    with user_errors():
        lines = verdict(run_dir, baseline_run, baseline)
    for line in lines:
        typer.echo(line)


@app.command()
def report(
    run_dir: Annotated[str, typer.Argument(
        help="Run directory of a study (finished or still running), or its storage URI.")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Write the report here (default: RUN_DIR/report.html; for a URI ./report.html).")] = None,
) -> None:
    """Self-contained HTML report: search figures, learning curves, ablation table.

    One offline file (plotly.js embedded, no network requests). From a storage URI the
    report is built from the stored results, written locally and stored back as report.html."""
    from vrsearch.report.html import REPORT_FILE, write_report
    from vrsearch.results import storage
    from vrsearch.results.io import require_run_dir

    with user_errors():
        if not storage.is_uri(run_dir):
            require_run_dir(Path(run_dir))  # before anything is written
            path = write_report(Path(run_dir), out)
        else:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="vrsearch-report-") as tmp:
                storage.pull(run_dir, tmp, names=storage.SMALL_FILES)
                require_run_dir(Path(tmp), name=run_dir)
                path = write_report(tmp, out if out is not None else Path.cwd(), label=run_dir)
            storage.put(path, run_dir, REPORT_FILE)
    typer.echo(f"written {path}")


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
    population: Annotated[PhantomPopulation, typer.Option(
        help="cohort: subjects and scans vary like a multi-centre cohort; "
             "classic: the original population (generator version 1).")] = PhantomPopulation.cohort,
    layout: Annotated[PhantomLayout, typer.Option(
        help="nnunet: imagesTr/labelsTr/imagesUnlabeled + dataset.json (read as msd or nnunet); "
             "flare22: the FLARE22 release folders (read as flare22).")] = PhantomLayout.nnunet,
) -> None:
    """Write the synthetic abdominal CT phantom (nnU-Net/MSD or FLARE22 layout)."""
    from vrsearch.data.phantom import PhantomConfig, write_phantom
    from vrsearch.data.phantom_flare import write_phantom_flare22

    with user_errors():
        if min(size) < 16 or min(spacing) <= 0:
            raise VrsearchError("--size must be ≥ 16 voxels per axis and --spacing > 0 mm")
        cfg = PhantomConfig(cases=cases, unlabeled=unlabeled, test=test, seed=seed, size=size, spacing=spacing,
                            population=population.value)
        try:
            writer = write_phantom_flare22 if layout is PhantomLayout.flare22 else write_phantom
            root = writer(out, cfg)
        except FileExistsError as exc:
            raise VrsearchError(str(exc)) from None
        typer.echo(f"phantom written to {root} ({layout.value} layout, {population.value} population; "
                   f"{cases} labeled, {unlabeled} unlabeled, {test} test)")


@data_app.command("realfiles")
def data_realfiles(
    out: Annotated[Path, typer.Argument(help="Output directory (created).")],
    mricron: Annotated[Optional[Path], typer.Option(
        help="Debian mricron-data's templates folder (default /usr/share/mricron/templates).")] = None,
    itk: Annotated[Optional[Path], typer.Option(
        help="Debian insighttoolkit5-examples' Data folder (default "
             "/usr/share/doc/insighttoolkit5-examples/examples/Data).")] = None,
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


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
