"""Commands that read a run: table, summary and report (a run directory or its storage URI)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from vrsearch.cli.base import app, console, user_errors


class Split(str, Enum):
    """Which evaluation split ``vrsearch table`` reports."""

    test = "test"
    val = "val"


BaselineRunOption = Annotated[
    str | None,
    typer.Option(
        "--baseline-run",
        help="Another run directory (one configuration, e.g. the labeled-only UNet) whose trials "
        "are the baseline, under --baseline NAME (default: its study's name).",
    ),
]


@app.command()
def table(
    run_dir: Annotated[
        str, typer.Argument(help="Run directory of a study (finished or still running), or its storage URI.")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the table files here (default: RUN_DIR; for a URI the current directory)."),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(help="Group the others are compared with (default: 'baseline' if present, else the first group)."),
    ] = None,
    split: Annotated[Split, typer.Option(help="Evaluation split to report.")] = Split.test,
    classes: Annotated[
        bool,
        typer.Option("--classes", help="Also print per-class Dice and empty-mask counts (split to fit the terminal)."),
    ] = False,
    baseline_run: BaselineRunOption = None,
) -> None:
    """Ablation table: the headline test of each arm vs the baseline over seeds (Dice ± CI, Δ ± CI,
    Holm p, minimal detectable difference, budget), then the case-level view on these trained models.

    The terminal shows per-class columns only when they fit (or with --classes); the files
    table.md, table.tex (booktabs) and table.csv (raw numbers) keep everything."""
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
    out_console = console()
    for t in tables:
        for part in t.to_rich(out_console.width, classes):
            out_console.print(part)
    for path in paths:
        typer.echo(f"written {path}")


@app.command()
def summary(
    run_dir: Annotated[str, typer.Argument(help="Run directory of a study, or its storage URI.")],
    baseline_run: BaselineRunOption = None,
    baseline: Annotated[
        str | None,
        typer.Option(
            help="Name of the baseline group (default: 'baseline'; with --baseline-run, that run's study name)."
        ),
    ] = None,
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
    run_dir: Annotated[
        str, typer.Argument(help="Run directory of a study (finished or still running), or its storage URI.")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the report here (default: RUN_DIR/report.html; for a URI ./report.html)."),
    ] = None,
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
