"""The typer applications and the one-line error contract every command keeps."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from vrsearch.errors import VrsearchError

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(
    help="Hyperparameter searches and ablations of semi-supervised segmentation methods.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)
data_app = typer.Typer(
    help="Datasets: generate the built-in phantom (nnU-Net or FLARE22 layout) or build the "
    "real-file smoke-test dataset.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(data_app, name="data")

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a study field, e.g. --set train.iterations=100 (repeatable)."),
]
StudyArg = Annotated[Path, typer.Argument(help="Study file (YAML).")]


def fail(message: str, code: int = 2) -> NoReturn:
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


def console() -> Console:
    """A rich console for tables: the terminal's width, or wide (200 columns) in a pipe or a log
    unless ``COLUMNS`` says otherwise."""
    from rich.console import Console

    out = Console()
    if not out.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        out = Console(width=max(out.width, 200))
    return out
