"""Commands that check and run a study: validate, train, run, resume."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vrsearch.cli.base import SetOption, StudyArg, app, fail, user_errors
from vrsearch.errors import VrsearchError


@app.command()
def validate(
    study: StudyArg,
    set_: SetOption = None,
    check_data: Annotated[bool, typer.Option("--check-data", help="Also read and check every data file.")] = False,
    address: Annotated[
        str | None,
        typer.Option(help="The cluster 'vrsearch run' will join: its resources, not this machine's, are checked."),
    ] = None,
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
            typer.echo(
                f"# data ok: {len(sp.labeled)} labeled, {len(sp.unlabeled)} unlabeled, "
                f"{len(sp.val)} val, {len(sp.test)} test; {data.num_classes} classes; {modality}, "
                f"intensity {describe(data.dataset.intensity)}",
                err=True,
            )
        typer.echo(study_to_yaml(s), nl=False)


@app.command()
def train(
    study: StudyArg,
    set_: SetOption = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Discard this run's checkpoint and results first.")] = False,
) -> None:
    """Train one trial of a study without Ray (debugging, quick checks).

    Results go to the study's output.dir (default runs/<name>; not one that holds
    a study run by 'vrsearch run': pass --set output.dir=DIR); an interrupted
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
    address: Annotated[str | None, typer.Option(help="Join an existing Ray cluster (auto, ray://host:port).")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Discard an earlier run of this study in output.dir.")] = False,
) -> None:
    """Run a study on Ray Tune (Optuna/ASHA or a fixed design), results in output.dir."""
    from vrsearch.orchestrate.runner import run_study

    with user_errors():
        run_study(study, set_ or [], address=address, fresh=fresh, echo=_console_echo())


@app.command()
def resume(
    run_dir: Annotated[
        str,
        typer.Argument(help="Run directory of an interrupted study, or its storage URI (s3://bucket/prefix/NAME?...)."),
    ],
    address: Annotated[str | None, typer.Option(help="Join an existing Ray cluster.")] = None,
    into: Annotated[
        Path | None,
        typer.Option("--into", help="With a URI: the local run directory (default: the stored study's output.dir)."),
    ] = None,
) -> None:
    """Continue an interrupted study: finished trials are kept, unfinished ones resume.

    Given a storage URI, the run is first pulled (only what changed) into a local dir."""
    from vrsearch.orchestrate.runner import resume_study
    from vrsearch.results.storage import is_uri

    with user_errors():
        if into is not None and not is_uri(run_dir):
            raise VrsearchError("--into applies to a storage URI only")
        resume_study(run_dir if is_uri(run_dir) else Path(run_dir), address=address, echo=_console_echo(), into=into)
