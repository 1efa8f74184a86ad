"""vrsearch.report.figures on a small synthetic run: traces, axis titles, counts, "no data"."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pandas as pd
import pytest

from vrsearch.methods import get_method
from vrsearch.report import figures as F
from vrsearch.report import importance as I
from vrsearch.report import studies as S
from vrsearch.results import io
from vrsearch.results.names import trial_names
from vrsearch.results.table import ablation_table

CLASSES = ["liver", "right_kidney", "spleen"]
#: three configurations × two seeds = six trials
CONFIGS = [
    {"k": 5, "lr": 0.001, "sampler": "ns"},
    {"k": 10, "lr": 0.01, "sampler": "sg"},
    {"k": 15, "lr": 0.1, "sampler": "sag"},
]
SEEDS = [0, 1]
STOPPED = "t2-s1"  # the early-stopped trial (no test rows, history ends at iteration 50)
KNOBS = ["method.params.k", "train.optimizer.lr", "method.params.sampler"]


def synthetic(n_cases: int = 4, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(trials, history, cases) of a 3-config × 2-seed search with one early-stopped trial."""
    rng = np.random.default_rng(seed)
    trials, history, cases = [], [], []
    for i, cfg in enumerate(CONFIGS):
        cell = json.dumps(
            {"method.params.k": cfg["k"], "method.params.sampler": cfg["sampler"], "train.optimizer.lr": cfg["lr"]},
            sort_keys=True,
        )
        for s in SEEDS:
            tid = f"t{i + 1}-s{s}"
            stopped = tid == STOPPED
            last = 50 if stopped else 100
            for it in range(0, last + 1, 10):
                row = {
                    "trial_id": tid,
                    "iteration": it,
                    "loss": 2.0 - it / 100 + rng.normal(0, 0.05),
                    "term_sup": 1.5 - it / 200,
                    "term_contrast": 0.5 * (i + 1) + 0.1 * s - it / 1000,
                    "term_contrast_spread": 0.05 * (i + 1),
                    "time_s": 1.5 * it,
                    "val_dice": np.nan,
                }
                if it % 50 == 0:
                    row["val_dice"] = 0.2 + 0.1 * i + 0.003 * it + 0.01 * s
                history.append(row)
            val = 0.2 + 0.1 * i + 0.003 * last + 0.01 * s
            test = []
            if not stopped:
                for split in ("val", "test"):
                    for c in range(n_cases):
                        for k, name in enumerate(CLASSES):
                            dice = float(np.clip(0.8 - 0.2 * k + 0.03 * i + rng.normal(0, 0.03), 0, 1))
                            row = dict(
                                trial_id=tid,
                                split=split,
                                iteration=100,
                                case_id=f"case{c}",
                                class_index=k + 1,
                                class_name=name,
                                dice=dice,
                                jaccard=dice / (2 - dice),
                                hd95_mm=float(rng.uniform(2, 20)),
                                assd_mm=1.0,
                                label_empty=False,
                                pred_empty=False,
                            )
                            cases.append(row)
                            test += [dice] if split == "test" else []
            trials.append(
                {
                    "trial_id": tid,
                    "study": "syn",
                    "method": "arco",
                    "seed": s,
                    "error": "",
                    "status": "stopped_early" if stopped else "completed",
                    "iterations": last,
                    "best_iteration": last,
                    "best_val_dice": val,
                    "final_val_dice": val,
                    "test_dice": float(np.mean(test)) if test else np.nan,
                    "wall_time_s": 360.0,
                    "device_hours": 0.1,
                    "arm": "",
                    "group": cell,
                    "cell": cell,
                    "config.method.params.k": cfg["k"],
                    "config.train.optimizer.lr": cfg["lr"],
                    "config.method.params.sampler": cfg["sampler"],
                }
            )
    return pd.DataFrame(trials), pd.DataFrame(history), pd.DataFrame(cases)


@pytest.fixture(scope="module")
def run():
    return synthetic()


def _no_data(fig) -> bool:
    return len(fig.data) == 0 and any(str(a.text).startswith("no data") for a in fig.layout.annotations)


def _study(trials, knobs=KNOBS):
    return S.trials_study(trials, knobs, "best_val_dice", "max", {"train.optimizer.lr": {"log": True}})


def test_trials_study_one_trial_per_scored_trial(run):
    trials, _, _ = run
    study = _study(trials)
    done = study.get_trials()
    assert [t.user_attrs["trial_id"] for t in done] == list(trials.trial_id)
    assert [t.value for t in done] == list(trials.best_val_dice)
    assert done[3].user_attrs["status"] == "stopped_early" and set(done[0].params) == {
        "k",
        "train.optimizer.lr",
        "sampler",
    }
    assert done[0].distributions["train.optimizer.lr"].log and isinstance(
        done[0].distributions["sampler"], optuna.distributions.CategoricalDistribution
    )
    with pytest.raises(ValueError, match="validation"):
        S.trials_study(trials, KNOBS, "test_dice")


def test_optimisation_history_best_so_far(run):
    trials, _, _ = run
    fig = F.optimisation_history(_study(trials), "best_val_dice")
    best = [t for t in fig.data if t.mode == "lines"]
    assert len(best) == 1 and len(best[0].y) == len(trials)
    assert list(best[0].y) == list(trials["best_val_dice"].cummax())
    points = fig.data[0]
    assert list(points.y) == list(trials["best_val_dice"])
    assert list(points.hovertext) == [t if t != STOPPED else f"{t} (stopped early)" for t in trials.trial_id]
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text == "best_val_dice"
    mins = F.optimisation_history(S.trials_study(trials, KNOBS, mode="min"), "best_val_dice")
    assert list([t for t in mins.data if t.mode == "lines"][0].y) == list(trials["best_val_dice"].cummin())
    assert _no_data(F.optimisation_history(None)) and _no_data(F.optimisation_history(_study(trials.iloc[0:0])))


def test_parallel_coordinates_axes(run):
    trials, _, _ = run
    fig = F.parallel_coordinates(_study(trials), "best_val_dice")
    assert list(fig.layout.xaxis.ticktext) == [
        "best_val_dice",
        "k",
        "sampler",
        "train.optimizer.lr",
    ]  # Optuna sorts the parameters
    lines = [t for t in fig.data if t.mode == "lines"]
    assert len(lines) == len(trials)
    shown = sorted(float(t.customdata[0][1]) for t in lines)
    np.testing.assert_allclose(shown, sorted(trials["best_val_dice"]), atol=5e-4)  # hover: 3 significant digits
    assert "best_val_dice" in fig.layout.title.text
    assert _no_data(F.parallel_coordinates(_study(trials, [])))


def test_contour_of_two_varying_knobs(run):
    trials, _, _ = run
    study = _study(trials)
    fig = F.contour(study, "k", "train.optimizer.lr", "best_val_dice")
    assert [t.type for t in fig.data][:2] == ["contour", "scatter"] and len(fig.data[1].x) == len(trials)
    assert fig.layout.xaxis.title.text == "k" and fig.layout.yaxis.title.text == "train.optimizer.lr"
    assert fig.layout.yaxis.type == "log"
    z = np.asarray(fig.data[0].z, dtype=float)
    assert np.nanmax(z) == trials.best_val_dice.max() and np.nanmin(z) >= trials.best_val_dice.min()
    heat = F.contour(study, "sampler", "k", "best_val_dice")
    assert heat.data[0].type == "contour" and heat.layout.xaxis.title.text == "k"  # alphabetical, as Optuna
    assert heat.layout.yaxis.title.text == "sampler" and heat.layout.yaxis.type == "category"
    assert _no_data(F.contour(study, "k", "k")) and _no_data(
        F.contour(_study(trials.iloc[:1]), "k", "train.optimizer.lr")
    )


def test_importance_bars_sorted(run):
    trials, _, _ = run
    study = _study(trials)
    imp, _ = S.evaluate(study)
    fig = F.importance(study, "best_val_dice")
    (bar,) = fig.data
    assert sorted(bar.y) == sorted(imp) and list(bar.x) == sorted(bar.x)
    np.testing.assert_allclose(sorted(bar.x), sorted(imp.values()))
    assert "ANOVA" in fig.layout.title.text and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    assert _no_data(F.importance(_study(trials.iloc[:1])))


def _optuna_study(storage: str, name: str, values: list[float]) -> None:
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    dists = {
        "x": optuna.distributions.FloatDistribution(0.0, 1.0),
        "c": optuna.distributions.CategoricalDistribution(("a", "b")),
    }
    for i, v in enumerate(values):
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": i / max(len(values), 1), "c": "ab"[i % 2]}, distributions=dists, value=v
            )
        )


def test_param_importances_from_storage(tmp_path):
    _optuna_study(f"sqlite:///{tmp_path}/optuna.db", "st", [0.1, 0.5, 0.3, 0.9, 0.7, 0.2])
    imp, name = I.param_importances(tmp_path, "st")
    assert set(imp) == {"x", "c"} and abs(sum(imp.values()) - 1) < 1e-6
    assert "ANOVA" in name and "6 completed trials" in name
    assert I.param_importances(tmp_path, "other") == ({}, "no Optuna study named 'other' in the storage")
    _optuna_study(f"sqlite:///{tmp_path}/optuna.db", "one", [0.4])
    imp, reason = I.param_importances(tmp_path / "optuna.db", "one")
    assert imp == {} and "at least 2" in reason
    empty = tmp_path / "nothing"
    empty.mkdir()
    imp, reason = I.param_importances(empty, "st")
    assert imp == {} and "no Optuna storage" in reason and not (empty / "optuna.db").exists()


def test_stored_study_keeps_numbers_and_shortens_names(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    stored = optuna.create_study(study_name="s", storage=url, direction="maximize")
    dist = {"method.params.k": optuna.distributions.FloatDistribution(0.0, 1.0)}
    stored.add_trial(optuna.trial.create_trial(params={"method.params.k": 0.2}, distributions=dist, value=0.5))
    stored.ask()  # an interrupted proposal: RUNNING
    stored.add_trial(optuna.trial.create_trial(params={"method.params.k": 0.7}, distributions=dist, value=0.8))
    study, reason = S.stored_study(url, "s")
    assert reason == "" and [t.number for t in study.trials] == [0, 1, 2]
    assert [t.params for t in S.completed(study)] == [{"k": 0.2}, {"k": 0.7}]
    assert study.trials[1].state == optuna.trial.TrialState.FAIL  # not drawn, number kept


def test_trial_importances(run):
    trials, _, _ = run
    imp, name = I.trial_importances(trials, KNOBS)
    assert set(imp) == {"k", "train.optimizer.lr", "sampler"} and "6 completed trials" in name
    assert I.trial_importances(trials.iloc[:1], KNOBS)[0] == {}
    with pytest.raises(ValueError):
        I.trial_importances(trials, KNOBS, metric="test_dice")


def test_slices_mean_std_per_value(run):
    trials, _, _ = run
    fig = F.slices(trials, KNOBS, "best_val_dice")
    means = [t for t in fig.data if t.name == "mean ± std over seeds"]
    points = [t for t in fig.data if t.name == "trials"]
    assert len(means) == len(points) == len(KNOBS)
    k = means[0]
    expect = trials.groupby("config.method.params.k")["best_val_dice"]
    assert list(k.x) == [5, 10, 15]
    np.testing.assert_allclose(k.y, expect.mean().to_numpy())
    np.testing.assert_allclose(k.error_y.array, expect.std().to_numpy())
    assert [fig.layout[f"xaxis{i or ''}"].title.text for i in (0, 2, 3)] == ["k", "train.optimizer.lr", "sampler"]
    assert fig.layout.yaxis.title.text == "best_val_dice"
    assert fig.layout.xaxis2.type == "log" and fig.layout.xaxis3.type == "category"


def test_learning_curves_one_line_per_trial(run):
    trials, history, _ = run
    fig = F.learning_curves(history, trials)
    lines = [t for t in fig.data if "lines" in t.mode]
    assert len(lines) == len(trials)
    stopped = [t for t in lines if t.hovertext.endswith(f"trial {STOPPED}")]
    assert len(stopped) == 1 and stopped[0].line.dash == "dash" and "stopped early" in stopped[0].name
    # legends name the group and the seed, not the trial id
    group = trials.set_index("trial_id").loc[STOPPED, "group"]
    assert stopped[0].name == f"{group} · seed 1 (stopped early)"
    assert not any(t.name.startswith("t") and "-s" in t.name for t in lines)
    assert all(t.line.dash == "solid" for t in lines if t is not stopped[0])
    (end,) = [t for t in fig.data if t.name == "stopped early"]
    assert list(end.x) == [50] and end.marker.symbol == "x"
    assert fig.layout.xaxis.title.text == "iteration" and fig.layout.yaxis.title.text == "validation Dice"
    # colour by group: the two seeds of a configuration share one colour
    assert lines[0].line.color == lines[1].line.color != lines[2].line.color


def test_loss_terms_subplots(run):
    trials, history, _ = run
    terms = ["loss", "term_sup", "term_contrast", "term_contrast_spread"]
    fig = F.loss_terms(history, trials)
    assert [a.text for a in fig.layout.annotations] == terms
    assert len(fig.data) == len(terms) * len(trials)
    assert fig.layout.yaxis.title.text == "loss" and fig.layout.xaxis4.title.text == "iteration"
    grouped = F.loss_terms(history, trials, by="group")
    assert len(grouped.data) == len(terms) * len(CONFIGS)
    first = grouped.data[0]
    expect = history[history.trial_id.isin(["t1-s0", "t1-s1"])].groupby("iteration")["loss"].mean()
    np.testing.assert_allclose(first.y, expect.to_numpy())


def test_loss_term_panels_are_described_and_legends_named(run):
    trials, history, _ = run
    descriptions = F.term_descriptions(trials)  # the synthetic run's method is arco
    arco = get_method("arco").terms
    assert descriptions["term_contrast"] == arco["contrast"] and descriptions["loss"] == arco["loss"]
    fig = F.loss_terms(history, trials, descriptions=descriptions)
    titles = [a.text for a in fig.layout.annotations]
    assert [t.split("<br>")[0] for t in titles] == ["loss", "term_sup", "term_contrast", "term_contrast_spread"]
    assert all(len(t.split("<br>")) > 1 for t in titles)  # every panel carries its description
    assert "sampling variance" in titles[3].replace("<br>", " ")
    legend = {t.name for t in fig.data if t.showlegend}
    assert legend == set(trial_names(trials)) and all(" · seed " in name for name in legend)
    assert [a.text for a in F.loss_terms(history, trials).layout.annotations] == [t.split("<br>")[0] for t in titles]


def test_term_descriptions_of_several_methods():
    trials = pd.DataFrame({"method": ["cps", "dvcl", "no_such_method"]})
    d = F.term_descriptions(trials)
    cps, dvcl = get_method("cps").terms, get_method("dvcl").terms
    assert d["term_hqc"] == dvcl["hqc"]  # one method only
    assert d["term_sup_a"] == cps["sup_a"] == dvcl["sup_a"]  # the same words: said once
    assert d["loss"] == f"cps: {cps['loss']} | dvcl: {dvcl['loss']}"
    assert F.term_descriptions(pd.DataFrame()) == {}


def test_class_heatmap_shape(run):
    trials, history, cases = run
    table = ablation_table(io.Results(trials, history, cases, {}))
    fig = F.class_heatmap(table.frame, table.classes)
    (hm,) = fig.data
    assert np.asarray(hm.z).shape == (len(CONFIGS), len(CLASSES))
    assert list(hm.x) == CLASSES and list(fig.layout.xaxis.tickvals) == CLASSES
    assert hm.text[0][0] == f"{100 * table.frame.loc[0, 'dice/liver']:.1f}"
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text == "group"
    assert _no_data(F.class_heatmap(table.frame.iloc[0:0], CLASSES))


def test_case_boxes_one_box_per_group(run):
    trials, _, cases = run
    fig = F.case_boxes(trials, cases)
    assert [t.type for t in fig.data] == ["box"] * len(CONFIGS)
    assert all(t.boxpoints == "all" for t in fig.data)
    # the stopped trial has no test rows: its group has one seed's cases only
    assert sorted(len(t.y) for t in fig.data) == [4, 8, 8]
    one = cases[(cases.trial_id == "t1-s0") & (cases.split == "test") & (cases.case_id == "case0")].dice.mean()
    assert one in list(fig.data[0].y)
    assert fig.layout.xaxis.title.text == "group" and fig.layout.yaxis.title.text


def test_sampler_panel(run):
    trials, history, _ = run
    fig = F.sampler_panel(history, trials)
    means = [t for t in fig.data if t.showlegend is not False and t.name in ("ns", "sg", "sag")]
    assert sorted(t.name for t in means) == ["ns", "sag", "sg"]
    ns = [t for t in fig.data if t.name == "ns"]
    mean_line, spread_line = ns[0], ns[1]
    expect = history[history.trial_id.isin(["t1-s0", "t1-s1"])].groupby("iteration")["term_contrast"]
    np.testing.assert_allclose(mean_line.y, expect.mean().to_numpy())
    np.testing.assert_allclose(spread_line.y, 0.05)  # the logged term_contrast_spread
    assert sum(1 for t in fig.data if t.fill == "tonexty") == 3
    assert "term_contrast_spread" in fig.layout.annotations[1].text
    no_spread = F.sampler_panel(history.drop(columns="term_contrast_spread"), trials)
    spread = [t for t in no_spread.data if t.name == "ns"][1]
    np.testing.assert_allclose(spread.y, expect.std().to_numpy())
    assert fig.layout.xaxis.title.text == "iteration" and fig.layout.yaxis.title.text == "term_contrast"
    assert _no_data(F.sampler_panel(history, trials.drop(columns="config.method.params.sampler")))


def _all(trials, history, cases):
    return [
        F.optimisation_history(_study(trials)),
        F.parallel_coordinates(_study(trials)),
        F.slices(trials, KNOBS, "best_val_dice"),
        F.contour(_study(trials), "k", "train.optimizer.lr"),
        F.learning_curves(history, trials),
        F.loss_terms(history, trials),
        F.case_boxes(trials, cases),
        F.sampler_panel(history, trials),
        F.class_heatmap(pd.DataFrame(columns=["group"]), CLASSES),
    ]


def test_empty_frames_say_no_data(run):
    trials, history, cases = run
    empty = [f.iloc[0:0] for f in (trials, history, cases)]
    figs = _all(*empty)
    assert all(_no_data(f) for f in figs)
    bare = [io.frame([], io.TRIAL_COLUMNS), io.frame([], io.HISTORY_COLUMNS), io.frame([], io.CASE_COLUMNS)]
    assert all(_no_data(f) for f in _all(*bare))


def test_single_trial_does_not_crash(run):
    trials, history, cases = run
    one = trials.iloc[:1]
    figs = _all(one, history[history.trial_id == "t1-s0"], cases[cases.trial_id == "t1-s0"])
    assert sum(1 for t in figs[0].data if len(t.x)) == 2 and len(figs[4].data) == 1 and len(figs[6].data) == 1
    assert all(f.layout.title.text for f in figs)
