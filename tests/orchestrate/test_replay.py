"""Replayed searches on synthetic curve tables whose answers are known: the fidelity
check, random search's cost to the best in expectation (Monte Carlo over searcher
seeds), ASHA that can only help when early ranks are the final ranks and can miss
when they are reversed, and the one-line errors of ``vrsearch replay``."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.conftest import tiny_study_dict
from vrsearch.cli import app
from vrsearch.orchestrate import replay as rp
from vrsearch.orchestrate.tabular import CurveTable, fidelity, load_curves, recommended_grace
from vrsearch.results import io
from vrsearch.study.load import build_study, study_to_yaml
from vrsearch.study.search import SearchDesign

RUNGS = np.array([10.0, 20.0, 40.0, 80.0])


def grid_study(tmp_path, n: int):
    space = {
        "method.params.loss": {"type": "categorical", "choices": ["dice_ce", "ce"]},
        "train.optimizer.lr": {"type": "categorical", "choices": [round(0.001 * (i + 1), 4) for i in range(n)]},
    }
    return build_study(
        tiny_study_dict(
            tmp_path,
            tmp_path / "run",
            search={"design": "grid", "space": space},
            train={"iterations": 80, "eval": {"every": 10}},
        )
    )


def table_of(tmp_path, finals: np.ndarray, early: np.ndarray | None = None) -> CurveTable:
    """One configuration per final value (lr choices 0.001 ... with loss dice_ce); curves
    rise linearly from ``early`` (default: final / 4, so every rung ranks as the end)."""
    n = len(finals)
    early = finals / 4 if early is None else early
    study = grid_study(tmp_path, n)
    params = [{"method.params.loss": "dice_ce", "train.optimizer.lr": round(0.001 * (i + 1), 4)} for i in range(n)]
    values = [np.interp(RUNGS, [RUNGS[0], RUNGS[-1]], [e, f]) for e, f in zip(early, finals)]
    return CurveTable(study, "val_dice", 0, params, [RUNGS.copy() for _ in range(n)], values)


def test_fidelity_is_one_when_early_ranks_are_final_ranks_and_minus_one_when_reversed(tmp_path):
    finals = np.linspace(0.2, 0.8, 7)
    fid = fidelity(table_of(tmp_path, finals), target=0.01)
    assert list(fid.rung) == [10, 20, 40]
    assert np.allclose(fid.spearman, 1.0) and np.allclose(fid.kendall, 1.0) and fid.top_kept.all()
    assert recommended_grace(fid) == 10
    reversed_early = fidelity(table_of(tmp_path, finals, early=finals[::-1] / 4), target=0.01)
    assert reversed_early.spearman.iloc[0] == pytest.approx(-1.0)
    assert reversed_early.regret.iloc[0] == pytest.approx(0.6)  # the rung's best is the worst at the end
    assert recommended_grace(reversed_early) != 10


def test_random_search_without_a_scheduler_needs_n_plus_1_over_2n_of_the_compute_in_expectation(tmp_path):
    """One configuration is the best by far; a random order finds it after (n + 1) / 2 of n
    equally costly configurations on average (concurrency 1): Monte Carlo over 200 seeds."""
    n, repeats = 8, 200
    finals = np.full(n, 0.3)
    finals[5] = 0.7
    table = table_of(tmp_path, finals)
    cfg = rp.check(rp.ReplayConfig(searcher="random", scheduler="none", concurrency=1), table)
    _, runs = rp.repeat(table, cfg, repeats, target=0.01)
    assert (runs.configurations == n).all() and np.isfinite(runs.fraction).all()
    expected, sd = (n + 1) / (2 * n), math.sqrt((n * n - 1) / 12) / n  # uniform position of the best
    assert abs(runs.fraction.mean() - expected) < 4 * sd / math.sqrt(repeats)
    positions = np.round(runs.fraction * n).astype(int)  # every position occurs (a uniform permutation)
    assert set(positions) == set(range(1, n + 1))


def test_asha_never_costs_more_than_no_scheduler_when_rungs_rank_as_the_end(tmp_path):
    """Same searcher seed, one at a time: the same proposals in the same order; ASHA can
    only stop configurations that are not the best (the best leads every rung)."""
    rng = np.random.default_rng(0)
    table = table_of(tmp_path, rng.uniform(0.1, 0.8, 12))
    none = rp.check(rp.ReplayConfig(searcher="random", scheduler="none", concurrency=1), table)
    asha = rp.check(rp.ReplayConfig(searcher="random", scheduler="asha", grace=10, concurrency=1), table)
    _, a = rp.repeat(table, asha, 10, target=0.0)
    _, b = rp.repeat(table, none, 10, target=0.0)
    assert np.isfinite(a.fraction).all()
    assert (a.compute_to_target <= b.compute_to_target).all()
    assert (a.compute_total < b.compute_total).all() and (a.stopped > 0).all()


def test_asha_misses_the_best_when_it_starts_slowest(tmp_path):
    """The best configuration is the worst until the end: ASHA (grace 10) stops it
    whenever another configuration already sits on the first rung."""
    finals = np.linspace(0.2, 0.6, 8)
    early = finals[::-1] / 4
    table = table_of(tmp_path, finals, early=early)
    asha = rp.check(rp.ReplayConfig(searcher="tpe", scheduler="asha", grace=10, n_startup_trials=4), table)
    _, runs = rp.repeat(table, asha, 10, target=0.01)
    assert not np.isfinite(runs.fraction).all()
    none = rp.check(rp.ReplayConfig(searcher="tpe", scheduler="none", n_startup_trials=4), table)
    _, runs = rp.repeat(table, none, 3, target=0.01)
    assert np.isfinite(runs.fraction).all()  # without a scheduler the whole table is run at worst


@pytest.mark.parametrize("scheduler", ["hyperband", "median"])
@pytest.mark.parametrize("searcher", ["tpe", "cmaes", "random"])
def test_every_searcher_and_scheduler_replays_the_table(tmp_path, searcher, scheduler):
    table = table_of(tmp_path, np.random.default_rng(1).uniform(0.1, 0.8, 10))
    cfg = rp.check(rp.ReplayConfig(searcher=searcher, scheduler=scheduler, n_startup_trials=3), table)
    traces, runs = rp.repeat(table, cfg, 2, target=0.01)
    assert (runs.configurations == 10).all()  # every proposal maps to a configuration not yet run
    for _, t in traces.groupby("searcher_seed"):
        assert t.compute.is_monotonic_increasing and t.best.is_monotonic_increasing
        assert t.compute.iloc[-1] <= table.cost().sum()


def test_quantiles_rank_never_above_every_fraction():
    f = np.array([0.2, 0.4, math.inf, math.inf])
    assert rp._quantile(f, 0.0) == 0.2 and rp._quantile(f, 1 / 3) == 0.4
    assert rp._quantile(f, 0.5) == math.inf and rp._quantile(np.array([0.2, 0.4]), 0.5) == pytest.approx(0.3)


def write_run(tmp_path, table: CurveTable, with_history: bool = True):
    """A run directory holding ``table`` as a finished grid study would."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "study.yaml").write_text(study_to_yaml(table.study))
    trials, hist = [], []
    for i, (p, its, vals) in enumerate(zip(table.params, table.iterations, table.values)):
        tid = f"t{i}"
        trials.append(
            {
                "trial_id": tid,
                "seed": 0,
                "status": "completed",
                "group_hash": f"g{i}",
                "cell": json.dumps(p),
                **{f"config.{k}": v for k, v in p.items()},
            }
        )
        hist += [{"trial_id": tid, "iteration": int(it), "val_dice": float(v)} for it, v in zip(its, vals)]
    io.write_frame(run / "trials.parquet", pd.DataFrame(trials))
    frame = pd.DataFrame(hist) if with_history else pd.DataFrame(hist).drop(columns="val_dice")
    io.write_frame(run / "history.parquet", frame)
    return run


def test_a_run_directory_round_trips_into_the_same_table(tmp_path):
    table = table_of(tmp_path, np.linspace(0.1, 0.5, 5))
    stopped = table_of(tmp_path, np.linspace(0.1, 0.9, 6))  # its last configuration ends at iteration 40
    stopped.iterations[-1], stopped.values[-1] = stopped.iterations[-1][:3], stopped.values[-1][:3]
    back = load_curves(write_run(tmp_path, stopped))
    assert back.left_out == 1 and len(back) == 5
    assert back.params == table.params[:5] and back.best() == pytest.approx(0.74)
    assert all(np.array_equal(a, b) for a, b in zip(back.values, stopped.values[:5]))


def test_cli_replays_and_writes_parquet(tmp_path):
    run = write_run(tmp_path, table_of(tmp_path, np.linspace(0.1, 0.5, 6)))
    res = CliRunner().invoke(app, ["replay", str(run), "--repeats", "3", "--searcher", "random"])
    assert res.exit_code == 0, res.output
    assert "recommended grace period: 10" in res.output and "median" in res.output
    summary = pd.read_parquet(run / "replay" / "summary.parquet")
    assert len(summary) == 1 and summary.repeats.iloc[0] == 3
    again = CliRunner().invoke(app, ["replay", str(run), "--repeats", "2", "--searcher", "random"])
    assert again.exit_code == 0
    assert pd.read_parquet(run / "replay" / "summary.parquet").repeats.tolist() == [2]  # same setting: replaced


@pytest.mark.parametrize(
    "case,args,message",
    [
        ("not a run", [], "not a vrsearch run directory"),
        ("no curves", [], "no recorded curves of 'val_dice'"),
        ("searcher", ["--searcher", "bohb"], "--searcher 'bohb': not one of tpe, random, cmaes"),
        ("scheduler", ["--scheduler", "pbt"], "--scheduler 'pbt'"),
        ("grace", ["--grace", "80"], "--grace 80: must be above 0 and below the budget (80 iterations)"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, case, args, message):
    table = table_of(tmp_path, np.linspace(0.1, 0.5, 4))
    if case == "not a run":
        run = tmp_path / "empty"
        run.mkdir()
    else:
        run = write_run(tmp_path, table, with_history=case != "no curves")
    res = CliRunner().invoke(app, ["replay", str(run), *args])
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and message in res.output, res.output
    assert not (run / "replay").exists()


def test_a_search_designs_tpe_settings_reach_the_sampler_the_runner_builds(tmp_path):
    from vrsearch.orchestrate.searchers import searcher
    from vrsearch.results.rundir import RunDir

    space = {"train.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}
    for knobs in ({"n_startup_trials": 3, "multivariate": False, "constant_liar": False}, {}):
        study = build_study(
            tiny_study_dict(tmp_path, tmp_path / "run", search={"design": "search", "space": space, **knobs})
        )
        (tmp_path / "run").mkdir(exist_ok=True)
        sampler = searcher(study, RunDir(tmp_path / "run"), [], 2).searcher.inner._sampler
        defaults = SearchDesign.model_fields
        want = {k: defaults[k].default for k in ("n_startup_trials", "multivariate", "constant_liar")} | knobs
        got = {
            "n_startup_trials": sampler._n_startup_trials,
            "multivariate": sampler._multivariate,
            "constant_liar": sampler._constant_liar,
        }
        assert got == want
        (tmp_path / "run" / "optuna.db").unlink(missing_ok=True)
    with pytest.raises(Exception, match="n_startup_trials"):
        build_study(
            tiny_study_dict(
                tmp_path,
                tmp_path / "run",
                search={
                    "design": "grid",
                    "n_startup_trials": 3,
                    "space": {"method.params.loss": {"type": "categorical", "choices": ["ce", "dice"]}},
                },
            )
        )


def test_the_report_shows_the_replayed_searches(tmp_path):
    from vrsearch.report.html import build_report

    run = write_run(tmp_path, table_of(tmp_path, np.linspace(0.1, 0.5, 6)))
    assert "Replayed searches" not in build_report(run)
    assert CliRunner().invoke(app, ["replay", str(run), "--repeats", "2"]).exit_code == 0
    page = build_report(run)
    assert "Replayed searches" in page and "Could not render" not in page and "rung 10" in page


def test_the_shipped_tabular_benchmark_replays(tmp_path):
    """benchmarks/tabular/dvcl_table: a finished random design whose every configuration has a full curve."""
    import shutil
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[2] / "benchmarks" / "tabular" / "dvcl_table"
    run = tmp_path / "table"
    shutil.copytree(shipped, run)
    table = load_curves(run)
    assert len(table) == 48 and table.left_out == 0 and len(load_curves(run, seed=1)) == 48
    assert all(it[-1] == table.study.train.iterations for it in table.iterations)
    res = CliRunner().invoke(app, ["replay", str(run), "--repeats", "2", "--searcher", "random"])
    assert res.exit_code == 0, res.output
    runs = pd.read_parquet(run / "replay" / "runs.parquet")
    assert (runs.best <= table.best() + 1e-12).all() and (runs.compute_total <= table.cost().sum()).all()


def test_replay_defaults_are_the_search_designs_defaults():
    """``vrsearch replay`` with no options replays what a default ``search`` design would run."""
    import inspect

    from vrsearch.cli.replay_command import replay as replay_command

    fields, cfg = SearchDesign.model_fields, rp.ReplayConfig()
    cli_defaults = {k: p.default for k, p in inspect.signature(replay_command).parameters.items()}
    for key in ("n_startup_trials", "multivariate", "constant_liar", "reduction_factor"):
        assert getattr(cfg, key) == fields[key].default == cli_defaults[key], key
    assert cfg.searcher == fields["searcher"].default == cli_defaults["searcher"]


def test_a_conditional_key_that_does_not_apply_is_not_part_of_a_configuration(tmp_path):
    space = {
        "method.params.loss": {"type": "categorical", "choices": ["ce", "dice_ce"]},
        "train.optimizer.lr": {"type": "categorical", "choices": [0.001, 0.01], "when": {"method.params.loss": "ce"}},
    }
    study = build_study(
        tiny_study_dict(
            tmp_path,
            tmp_path / "run",
            search={"design": "grid", "space": space},
            train={"iterations": 80, "eval": {"every": 10}},
        )
    )
    params = [
        {"method.params.loss": "ce", "train.optimizer.lr": 0.001},
        {"method.params.loss": "ce", "train.optimizer.lr": 0.01},
        {"method.params.loss": "dice_ce", "train.optimizer.lr": 0.01},
    ]  # the last: lr is the study's base value
    table = CurveTable(
        study,
        "val_dice",
        0,
        params,
        [RUNGS.copy() for _ in params],
        [RUNGS / 100 * (i + 1) for i in range(len(params))],
    )
    back = load_curves(write_run(tmp_path, table))
    assert back.params[2] == {"method.params.loss": "dice_ce"}
    assert back.nearest({"method.params.loss": "dice_ce"}) == 2
    assert back.nearest({"method.params.loss": "ce", "train.optimizer.lr": 0.01}, exclude={1}) == 0
