"""``vrsearch replay``: searches replayed on a finished study's recorded learning curves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vrsearch.cli.base import app, user_errors
from vrsearch.errors import VrsearchError


@app.command()
def replay(
    run_dir: Annotated[Path, typer.Argument(help="Run directory of a finished grid, random or search study.")],
    searcher: Annotated[str, typer.Option(help="Optuna sampler: tpe, random or cmaes.")] = "tpe",
    scheduler: Annotated[
        str, typer.Option(help="Ray Tune scheduler: asha, hyperband (Tune's asynchronous Hyperband), median or none.")
    ] = "asha",
    grace: Annotated[
        int | None,
        typer.Option(
            help="First rung (asha/hyperband) or grace period (median), in iterations; default: the first report."
        ),
    ] = None,
    reduction_factor: Annotated[int, typer.Option(help="ASHA/Hyperband reduction factor.")] = 2,
    brackets: Annotated[int, typer.Option(help="Hyperband brackets.")] = 3,
    n_startup_trials: Annotated[int, typer.Option(help="TPE/CMA-ES random proposals before the model.")] = 10,
    multivariate: Annotated[bool, typer.Option("--multivariate/--independent", help="TPE: joint or per-key.")] = True,
    constant_liar: Annotated[bool, typer.Option(help="TPE: running trials count as bad results.")] = True,
    concurrency: Annotated[
        int | None, typer.Option(help="Trials at once (default: the study's resources.concurrent_trials).")
    ] = None,
    samples: Annotated[
        int | None, typer.Option(help="Proposals per search (default: every configuration of the table).")
    ] = None,
    repeats: Annotated[int, typer.Option(help="Searches, with searcher seeds 0 .. N-1.")] = 20,
    target: Annotated[float, typer.Option(help="Within this much of the table's best counts as found.")] = 0.01,
    seed: Annotated[int | None, typer.Option(help="Whose curves (trial seed; default: the lowest).")] = None,
    min_rho: Annotated[float, typer.Option(help="Spearman a rung needs to be a trustworthy grace period.")] = 0.8,
) -> None:
    """Replay searches on a finished study's recorded learning curves (a tabular benchmark): real
    Optuna samplers and Ray Tune schedulers, no training, seconds. Prints and writes RUN_DIR/replay/:
    compute vs best found, the fraction of the exhaustive compute needed to come within --target of
    the table's best (median and spread over --repeats), and per rung the rank correlation with the
    final metric (Spearman, Kendall) with a recommended grace period.
    \f
    Over 60 lines only by its signature: one typer option per ReplayConfig field (after the
    form feed: not shown by --help)."""
    from vrsearch.orchestrate import replay as rp
    from vrsearch.orchestrate.tabular import load_curves
    from vrsearch.results.io import require_run_dir

    with user_errors():
        require_run_dir(run_dir)
        table = load_curves(run_dir, seed=seed)
        if repeats < 1 or target < 0:
            raise VrsearchError("--repeats must be at least 1 and --target at least 0")
        cfg = rp.ReplayConfig(
            searcher=searcher,
            scheduler=scheduler,
            grace=grace,
            reduction_factor=reduction_factor,
            brackets=brackets,
            n_startup_trials=n_startup_trials,
            multivariate=multivariate,
            constant_liar=constant_liar,
            samples=samples,
            concurrency=(table.study.resources.concurrent_trials if concurrency is None else concurrency),
        )
        try:
            result = rp.replay(table, cfg, repeats, target, min_rho)
        except ValueError as exc:
            raise VrsearchError(str(exc)) from None
        paths = rp.write(result, run_dir)
    from vrsearch.report.replay_view import print_replay

    print_replay(result)
    for path in paths:
        typer.echo(f"written {path}")
