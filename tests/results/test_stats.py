"""vrsearch.results.stats (and the descriptive frames it re-exports) against naive references on
small synthetic runs. The error rates of the tests are measured in test_stats_simulation.py."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from vrsearch.results import stats as S

GROUPS = ["baseline", "no_dvcl", "no_mem"]
EFFECT = {"baseline": 0.0, "no_dvcl": -0.06, "no_mem": 0.004}
SEEDS = [0, 1, 2]
CLASSES = [(1, "liver"), (2, "spleen"), (3, "pancreas")]  # class_index order is not alphabetical


def synthetic(
    n_cases: int = 5, seed: int = 0, groups=GROUPS, effect=EFFECT, classes=CLASSES
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, cases): groups × 3 seeds × n_cases cases × 3 classes, val and test rows,
    plus a failed and a stopped-early trial (neither has test rows). The pancreas is absent
    from case0 (label_empty; predicted empty too, so NaN, except by seed 1: Dice 0); the
    last group's seed 0 misses the spleen of case1 (pred_empty, Dice 0, HD95 50 mm)."""
    rng = np.random.default_rng(seed)
    hard = rng.normal(0.0, 0.08, n_cases)
    trials, cases = [], []
    for g in groups:
        for s in SEEDS:
            tid = f"{g}-s{s}"
            test = []
            for split in ("val", "test"):
                for c in range(n_cases):
                    for k, (index, name) in enumerate(classes):
                        dice = float(
                            np.clip(0.85 - 0.15 * (k % 3) + effect.get(g, 0.0) + hard[c] + rng.normal(0, 0.02), 0, 1)
                        )
                        hd95 = float(rng.uniform(2, 20))
                        absent = c == 0 and name == "pancreas"  # not in case0: empty label
                        missed = g == groups[-1] and s == 0 and c == 1 and name == "spleen"
                        pred_empty = missed or (absent and s != 1)  # seed 1 predicts a spurious pancreas
                        if absent or missed:  # empty-empty: no score (NaN); missed/spurious: 0 and worst case
                            dice, hd95 = (math.nan, math.nan) if absent and pred_empty else (0.0, 50.0)
                        row = dict(
                            trial_id=tid,
                            split=split,
                            iteration=100,
                            case_id=f"case{c}",
                            class_index=index,
                            class_name=name,
                            dice=dice,
                            jaccard=dice / (2 - dice),
                            hd95_mm=hd95,
                            assd_mm=hd95 / 3,
                            label_empty=absent,
                            pred_empty=pred_empty,
                        )
                        cases.append(row)
                        test += [row] if split == "test" else []
            trials.append(
                dict(
                    trial_id=tid,
                    status="completed",
                    seed=s,
                    arm=g,
                    group=g,
                    cell="{}",
                    iterations=100 + 10 * s,
                    wall_time_s=360.0 * (s + 1),
                    device_hours=math.nan if s == 1 else 0.1 * (s + 1),
                    test_dice=float(np.nanmean([r["dice"] for r in test])),
                    best_val_dice=float(rng.uniform(0.5, 0.8)),
                )
            )
    trials.append(
        dict(
            trial_id="failed-1",
            status="failed",
            seed=3,
            arm=groups[1],
            group=groups[1],
            cell="{}",
            iterations=20,
            wall_time_s=60.0,
            device_hours=0.01,
            test_dice=math.nan,
            best_val_dice=0.99,
        )
    )
    trials.append(
        dict(
            trial_id="stopped-1",
            status="stopped_early",
            seed=4,
            arm=groups[-1],
            group=groups[-1],
            cell="{}",
            iterations=30,
            wall_time_s=90.0,
            device_hours=math.nan,
            test_dice=math.nan,
            best_val_dice=0.98,
        )
    )
    cases += [
        dict(
            trial_id="failed-1",
            split="val",
            iteration=20,
            case_id="case0",
            class_index=1,
            class_name="liver",
            dice=0.1,
            jaccard=0.05,
            hd95_mm=50.0,
            assd_mm=10.0,
            label_empty=False,
            pred_empty=False,
        )
    ]
    return pd.DataFrame(trials), pd.DataFrame(cases)


@pytest.fixture
def run():
    return synthetic()


def test_group_labels_fallbacks():
    trials = pd.DataFrame(
        {
            "group": ["g1", None, "", math.nan, " "],
            "arm": ["a1", "a2", "", "a4", ""],
            "cell": ['{"x": 1}', '{"x": 2}', '{"x": 3}', '{"x": 4}', None],
        }
    )
    assert S.group_labels(trials).tolist() == ["g1", "a2", '{"x": 3}', "a4", "default"]
    assert S.group_labels(trials.drop(columns="group")).tolist() == ["a1", "a2", '{"x": 3}', "a4", "default"]
    assert S.group_labels(trials.drop(columns=["group", "arm"])).tolist()[:2] == ['{"x": 1}', '{"x": 2}']
    assert S.group_labels(trials).name == "group"


def test_trial_metrics_matches_naive_loops(run):
    trials, cases = run
    m = S.trial_metrics(trials, cases)
    done = [t for t in trials.to_dict("records") if t["status"] == "completed"]
    assert m["trial_id"].tolist() == [t["trial_id"] for t in done]
    assert m.columns.tolist()[:7] == ["trial_id", "group", "seed", *S.METRICS]
    assert [c for c in m.columns if c.startswith("dice/")] == ["dice/liver", "dice/spleen", "dice/pancreas"]
    rows = cases.to_dict("records")
    for t, got in zip(done, m.to_dict("records")):
        mine = [r for r in rows if r["trial_id"] == t["trial_id"] and r["split"] == "test"]
        for metric in S.METRICS:
            vals = [r[metric] for r in mine if not math.isnan(r[metric])]
            assert got[metric] == pytest.approx(sum(vals) / len(vals))
        for _, name in CLASSES:
            for metric in S.CLASS_METRICS:
                vals = [r[metric] for r in mine if r["class_name"] == name and not math.isnan(r[metric])]
                assert got[f"{metric}/{name}"] == pytest.approx(sum(vals) / len(vals))
        assert got["dice"] == pytest.approx(t["test_dice"])  # the trial-level definition
        assert got["group"] == t["group"] and got["seed"] == t["seed"]


def test_trial_metrics_val_split_differs(run):
    trials, cases = run
    val, test = S.trial_metrics(trials, cases, "val"), S.trial_metrics(trials, cases, "test")
    assert len(val) == len(test) == 9  # failed trial's val rows are ignored: completed only
    assert not np.allclose(val["dice"], test["dice"])


def naive_summary(metrics: pd.DataFrame, baseline: str) -> dict:
    out = {}
    for g in pd.unique(metrics["group"]):
        for col in S.metric_columns(metrics):
            vals = [v for v in metrics.loc[metrics["group"] == g, col] if not math.isnan(v)]
            n = len(vals)
            mean = sum(vals) / n if n else math.nan
            sd = statistics.stdev(vals) if n >= 2 else math.nan
            ci = sps.t.ppf(0.975, n - 1) * sd / math.sqrt(n) if n >= 2 else math.nan
            out[g, col] = (n, mean, sd, ci)
    return {k: (*v, v[1] - out[baseline, k[1]][1] if (baseline, k[1]) in out else math.nan) for k, v in out.items()}


def test_summarize_matches_naive(run):
    trials, cases = run
    m = S.trial_metrics(trials, cases)
    m = pd.concat([m, m.iloc[[0]].assign(trial_id="solo", group="solo")], ignore_index=True)  # n = 1 group
    s = S.summarize(m)
    assert s.columns.tolist() == ["group", "metric", "n", "mean", "std", "ci95", "delta"]
    assert list(pd.unique(s["group"])) == GROUPS + ["solo"]
    assert s["metric"].tolist()[: len(S.metric_columns(m))] == S.metric_columns(m)
    ref = naive_summary(m, "baseline")
    assert len(s) == len(ref)
    for row in s.to_dict("records"):
        n, mean, sd, ci, delta = ref[row["group"], row["metric"]]
        assert row["n"] == n
        np.testing.assert_allclose(
            [row["mean"], row["std"], row["ci95"], row["delta"]], [mean, sd, ci, delta], rtol=1e-12, equal_nan=True
        )
    solo = s[s["group"] == "solo"]
    assert solo["ci95"].isna().all() and solo["std"].isna().all()
    assert (s.loc[s["group"] == "baseline", "delta"] == 0).all()


def test_summarize_without_baseline_has_nan_delta(run):
    s = S.summarize(S.trial_metrics(*run), baseline="nope")
    assert s["delta"].isna().all() and s["mean"].notna().all()


def test_case_values_matches_naive(run):
    trials, cases = run
    for metric in ("dice", "hd95_mm"):
        cv = S.case_values(trials, cases, metric=metric)
        assert cv.columns.tolist() == ["group", "seed", "case_id", metric]
        assert len(cv) == 3 * 3 * 5
        for row in cv.to_dict("records"):
            tid = f"{row['group']}-s{row['seed']}"
            sel = cases[(cases.trial_id == tid) & (cases.split == "test") & (cases.case_id == row["case_id"])]
            vals = [v for v in sel[metric] if not math.isnan(v)]
            assert row[metric] == pytest.approx(sum(vals) / len(vals))


def naive_holm(p):
    idx = [i for i, v in enumerate(p) if not math.isnan(v)]
    m = len(idx)
    order = sorted(idx, key=lambda i: p[i])
    out = [math.nan] * len(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def test_holm_matches_naive_loop():
    rng = np.random.default_rng(3)
    for _ in range(20):
        p = rng.uniform(0, 0.3, rng.integers(1, 9))
        p[rng.uniform(size=p.size) < 0.2] = math.nan
        np.testing.assert_allclose(S.holm(p), naive_holm(list(p)), equal_nan=True)
    assert S.holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert S.holm([0.6, 0.9]).tolist() == [1.0, 1.0]
    adj = S.holm([0.02, math.nan, 0.01])
    assert adj[0] == pytest.approx(0.02) and math.isnan(adj[1]) and adj[2] == pytest.approx(0.02)
    assert np.isnan(S.holm([math.nan])).all() and S.holm([]).size == 0


def test_budget_matches_groupby(run):
    trials, _ = run
    b = S.budget(trials).set_index("group")
    assert b.index.tolist() == GROUPS
    for g, sel in trials.groupby("group"):
        assert b.loc[g, "trials"] == len(sel)
        assert b.loc[g, "completed"] == (sel.status == "completed").sum()
        assert b.loc[g, "iterations_sum"] == sel.iterations.sum()
        assert b.loc[g, "iterations_mean"] == pytest.approx(sel.iterations.mean())
        assert b.loc[g, "wall_time_h"] == pytest.approx(sel.wall_time_s.sum() / 3600)
        dh = [v for v in sel.device_hours if not math.isnan(v)]
        assert b.loc[g, "device_hours"] == pytest.approx(sum(dh))
    nan_only = S.budget(trials.assign(device_hours=math.nan).drop(columns=["iterations"]))
    assert nan_only["device_hours"].isna().all() and nan_only["iterations_sum"].isna().all()


def test_select_best_refuses_test_metrics(run):
    trials, _ = run
    for metric in ("test_dice", "test_hd95_mm", "Test/dice"):
        with pytest.raises(ValueError, match="selection uses validation metrics only"):
            S.select_best(trials, metric)
    best = S.select_best(trials)
    done = trials[trials.status == "completed"]
    assert best["trial_id"] == done.loc[done.best_val_dice.idxmax(), "trial_id"]  # not the failed 0.99
    assert S.select_best(trials, mode="min")["trial_id"] == done.loc[done.best_val_dice.idxmin(), "trial_id"]
    with pytest.raises(ValueError):
        S.select_best(trials, "val_nothing")


def test_json_cell_groups_without_group_column(run):
    trials, cases = run
    old = trials.drop(columns=["group"]).assign(
        arm="", cell=lambda t: [json.dumps({"k": t_id[:2]}) for t_id in t.trial_id]
    )
    m = S.trial_metrics(old, cases)
    assert sorted(pd.unique(m["group"])) == sorted({json.dumps({"k": g[:2]}) for g in GROUPS})


def uneven(run):
    """The synthetic run with a baseline case missing at seed 2 and no_mem's seed 0 failed:
    pairs exist only where both groups scored."""
    trials, cases = run
    cases = cases[~((cases.trial_id == "baseline-s2") & (cases.case_id == "case4"))]
    trials = trials.assign(status=np.where(trials.trial_id == "no_mem-s0", "failed", trials.status))
    return trials, cases


def naive_trial_values(trials, cases, group):
    """{seed: {case: [non-NaN test Dice of the case's classes]}} of the group's completed trials."""
    out = {}
    for t in trials.to_dict("records"):
        if t["group"] == group and t["status"] == "completed":
            sel = cases[(cases.trial_id == t["trial_id"]) & (cases.split == "test")]
            out[t["seed"]] = {c: [v for v in rows.dice if not math.isnan(v)] for c, rows in sel.groupby("case_id")}
    return out


def power_by_integration(delta, sd, n, alpha=0.05):
    """Power of the two-sided one-sample t-test, integrating over the chi-square of the sd
    (independent of scipy's noncentral t)."""
    from scipy import integrate

    df, crit, nc = n - 1, sps.t.ppf(1 - alpha / 2, n - 1), delta * math.sqrt(n) / sd

    def inner(v):
        scale = crit * math.sqrt(v / df)
        return (sps.norm.sf(scale - nc) + sps.norm.cdf(-scale - nc)) * sps.chi2.pdf(v, df)

    return integrate.quad(inner, 0, np.inf, limit=200)[0]


def test_headline_tests_match_scipy_on_hand_built_pairs(run):
    trials, cases = uneven(run)
    head = S.headline_tests(trials, cases)
    assert head.columns.tolist() == S.HEADLINE_COLUMNS and head["group"].tolist() == ["no_dvcl", "no_mem"]
    base = naive_trial_values(trials, cases, "baseline")
    for row in head.to_dict("records"):
        arm = naive_trial_values(trials, cases, row["group"])
        seeds = sorted(set(arm) & set(base))
        a, b, used = [], [], set()
        for s in seeds:
            shared = [c for c in arm[s] if c in base[s] and arm[s][c] and base[s][c]]
            used |= set(shared)
            a.append(np.mean([v for c in shared for v in arm[s][c]]))  # the trial's Dice over shared cases
            b.append(np.mean([v for c in shared for v in base[s][c]]))
        ref = sps.ttest_rel(a, b)
        ci = ref.confidence_interval(0.95)
        assert row["n_seeds"] == len(seeds) == (3 if row["group"] == "no_dvcl" else 2)
        assert row["n_cases"] == len(used) == 5
        assert row["mean_diff"] == pytest.approx(np.mean(np.subtract(a, b)))
        assert row["p"] == pytest.approx(ref.pvalue) and row["t"] == pytest.approx(ref.statistic)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high))
        assert power_by_integration(row["mdd"], row["sd"], row["n_seeds"]) == pytest.approx(0.80, abs=1e-4)
    np.testing.assert_allclose(head["p_holm"], naive_holm(head["p"].tolist()))
    assert head.set_index("group").loc["no_dvcl", "mean_diff"] < -0.04


def test_min_detectable_solves_the_power_equation():
    for n in (2, 3, 5, 10):
        mdd = S.min_detectable(0.02, n)
        assert power_by_integration(mdd, 0.02, n) == pytest.approx(0.80, abs=1e-4)
        assert power_by_integration(mdd, 0.02, n, alpha=0.01) < 0.80
    assert S.min_detectable(0.02, 3) > S.min_detectable(0.02, 5) > S.min_detectable(0.02, 10)
    np.testing.assert_allclose(
        S.min_detectable([0.01, 0.02], 3), [S.min_detectable(0.01, 3), S.min_detectable(0.02, 3)]
    )
    assert math.isnan(S.min_detectable(0.02, 1)) and S.min_detectable(0.0, 4) == 0.0


def test_case_level_tests_match_scipy(run):
    trials, cases = uneven(run)
    view = S.case_level_tests(trials, cases)
    assert view.columns.tolist() == S.CASE_LEVEL_COLUMNS
    base = naive_trial_values(trials, cases, "baseline")
    for row in view.to_dict("records"):
        arm = naive_trial_values(trials, cases, row["group"])
        seeds = sorted(set(arm) & set(base))
        diffs = []
        for c in sorted({c for s in seeds for c in arm[s]}):
            pairs = [
                (np.mean(arm[s][c]), np.mean(base[s][c])) for s in seeds if arm[s].get(c) and base[s].get(c)
            ]  # (seed, case) cells both scored
            diffs.append(np.mean([p[0] for p in pairs]) - np.mean([p[1] for p in pairs]))
        ref = sps.wilcoxon(diffs)
        assert row["n_cases"] == len(diffs) == 5 and row["n_seeds"] == len(seeds)
        assert row["mean_diff"] == pytest.approx(np.mean(diffs))
        assert row["wilcoxon"] == pytest.approx(ref.statistic) and row["p"] == pytest.approx(ref.pvalue)
        assert row["rank_biserial"] == pytest.approx(naive_rank_biserial(diffs))
    np.testing.assert_allclose(view["p_holm"], naive_holm(view["p"].tolist()))


def naive_rank_biserial(d):
    d = [x for x in d if x != 0]
    mags = sorted(abs(x) for x in d)
    rank = {v: np.mean([i + 1 for i, m in enumerate(mags) if m == v]) for v in set(mags)}
    plus = sum(rank[abs(x)] for x in d if x > 0)
    minus = sum(rank[abs(x)] for x in d if x < 0)
    return (plus - minus) / (plus + minus)


def test_tests_degenerate_inputs(run):
    trials, cases = run
    twin = cases[cases.trial_id.str.startswith("baseline")].assign(
        trial_id=lambda c: c.trial_id.str.replace("baseline", "twin")
    )
    solo = cases[cases.trial_id == "baseline-s0"].assign(trial_id="solo-s0")
    extra = pd.DataFrame(
        [dict(trial_id=f"twin-s{s}", status="completed", seed=s, group="twin") for s in SEEDS]
        + [dict(trial_id="solo-s0", status="completed", seed=0, group="solo")]
    )
    trials, cases = pd.concat([trials, extra]), pd.concat([cases, twin, solo])
    head = S.headline_tests(trials, cases).set_index("group")
    assert head.loc["twin", "mean_diff"] == 0 and head.loc["twin", "sd"] == 0 and math.isnan(head.loc["twin", "p"])
    assert (
        head.loc["solo", "n_seeds"] == 1 and math.isnan(head.loc["solo", "p"]) and math.isnan(head.loc["solo", "mdd"])
    )
    assert not math.isnan(head.loc["no_dvcl", "p_holm"])  # NaN p-values are not counted by Holm
    view = S.case_level_tests(trials, cases).set_index("group")
    assert math.isnan(view.loc["twin", "p"]) and view.loc["solo", "n_seeds"] == 1
    absent = S.headline_tests(*run, baseline="absent")
    assert len(absent) == 3 and (absent["n_seeds"] == 0).all() and absent["p"].isna().all()
    assert S.case_level_tests(*run, baseline="absent")["p"].isna().all()


def test_empty_counts_match_naive(run):
    trials, cases = run
    counts = S.empty_counts(trials, cases)
    assert counts.columns.tolist() == ["group", "class", "rows", "pred_empty", "label_empty"]
    assert counts["class"].tolist()[:3] == ["liver", "spleen", "pancreas"] and list(pd.unique(counts.group)) == GROUPS
    test = cases[cases.split == "test"]
    for row in counts.to_dict("records"):
        sel = test[test.trial_id.str.startswith(row["group"] + "-") & (test.class_name == row["class"])]
        assert (row["rows"], row["pred_empty"], row["label_empty"]) == (
            len(sel),
            sel.pred_empty.sum(),
            sel.label_empty.sum(),
        )
    c = counts.set_index(["group", "class"])
    assert c.loc[("no_mem", "spleen"), "pred_empty"] == 1 and c.loc[("baseline", "spleen"), "pred_empty"] == 0
    assert c.loc[("baseline", "pancreas"), "label_empty"] == 3 and c.loc[("baseline", "pancreas"), "pred_empty"] == 2
    assert S.empty_counts(trials, cases.drop(columns="pred_empty"))["pred_empty"].isna().all()


def test_empty_empty_leaves_the_means(run):
    """A class absent from truth and prediction is NaN and does not enter the means (as 1 it would)."""
    trials, cases = run
    m = S.trial_metrics(trials, cases).set_index("trial_id")
    sel = cases[(cases.trial_id == "baseline-s0") & (cases.split == "test") & (cases.class_name == "pancreas")]
    assert sel.dice.isna().sum() == 1
    assert m.loc["baseline-s0", "dice/pancreas"] == pytest.approx(sel.dice.dropna().mean())
    as_one = sel.dice.fillna(1.0).mean()
    assert as_one > m.loc["baseline-s0", "dice/pancreas"] + 0.05
