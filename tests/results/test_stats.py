"""vrsearch.results.stats against naive references on small synthetic runs."""

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


def synthetic(n_cases: int = 5, seed: int = 0, groups=GROUPS, effect=EFFECT) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, cases): groups × 3 seeds × n_cases cases × 3 classes, val and test rows,
    plus a failed and a stopped-early trial (neither has test rows)."""
    rng = np.random.default_rng(seed)
    hard = rng.normal(0.0, 0.08, n_cases)
    trials, cases = [], []
    for g in groups:
        for s in SEEDS:
            tid = f"{g}-s{s}"
            test = []
            for split in ("val", "test"):
                for c in range(n_cases):
                    for k, (index, name) in enumerate(CLASSES):
                        dice = float(np.clip(0.85 - 0.15 * k + effect.get(g, 0.0) + hard[c] + rng.normal(0, 0.02), 0, 1))
                        hd95 = float(rng.uniform(2, 20)) if (c + k) % 4 else math.nan
                        row = dict(trial_id=tid, split=split, iteration=100, case_id=f"case{c}", class_index=index,
                                   class_name=name, dice=dice, jaccard=dice / (2 - dice), hd95_mm=hd95,
                                   asd_mm=hd95 / 3, label_empty=False, pred_empty=False)
                        cases.append(row)
                        test += [row] if split == "test" else []
            trials.append(dict(trial_id=tid, status="completed", seed=s, arm=g, group=g, cell="{}",
                               iterations=100 + 10 * s, wall_time_s=360.0 * (s + 1),
                               device_hours=math.nan if s == 1 else 0.1 * (s + 1),
                               test_dice=float(np.nanmean([r["dice"] for r in test])),
                               best_val_dice=float(rng.uniform(0.5, 0.8))))
    trials.append(dict(trial_id="failed-1", status="failed", seed=3, arm=groups[1], group=groups[1], cell="{}",
                       iterations=20, wall_time_s=60.0, device_hours=0.01, test_dice=math.nan, best_val_dice=0.99))
    trials.append(dict(trial_id="stopped-1", status="stopped_early", seed=4, arm=groups[-1], group=groups[-1],
                       cell="{}", iterations=30, wall_time_s=90.0, device_hours=math.nan, test_dice=math.nan,
                       best_val_dice=0.98))
    cases += [dict(trial_id="failed-1", split="val", iteration=20, case_id="case0", class_index=1, class_name="liver",
                   dice=0.1, jaccard=0.05, hd95_mm=50.0, asd_mm=10.0, label_empty=False, pred_empty=False)]
    return pd.DataFrame(trials), pd.DataFrame(cases)


@pytest.fixture
def run():
    return synthetic()


def test_group_labels_fallbacks():
    trials = pd.DataFrame({
        "group": ["g1", None, "", math.nan, " "],
        "arm": ["a1", "a2", "", "a4", ""],
        "cell": ['{"x": 1}', '{"x": 2}', '{"x": 3}', '{"x": 4}', None],
    })
    assert S.group_labels(trials).tolist() == ["g1", "a2", '{"x": 3}', "a4", "default"]
    assert S.group_labels(trials.drop(columns="group")).tolist() == ["a1", "a2", '{"x": 3}', "a4", "default"]
    assert S.group_labels(trials.drop(columns=["group", "arm"])).tolist()[:2] == ['{"x": 1}', '{"x": 2}']
    assert S.group_labels(trials).name == "group"


def test_trial_metrics_matches_naive_loops(run):
    trials, cases = run
    m = S.trial_metrics(trials, cases)
    done = [t for t in trials.to_dict("records") if t["status"] == "completed"]
    assert m["trial_id"].tolist() == [t["trial_id"] for t in done]
    assert m.columns.tolist()[:7] == ["trial_id", "group", "seed", "dice", "jaccard", "hd95_mm", "asd_mm"]
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
        np.testing.assert_allclose([row["mean"], row["std"], row["ci95"], row["delta"]], [mean, sd, ci, delta],
                                   rtol=1e-12, equal_nan=True)
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


def naive_pairs(trials, cases, group, baseline="baseline", metric="dice"):
    """{(seed, case): mean over classes} per group, paired by hand."""
    def values(g):
        out = {}
        for t in trials.to_dict("records"):
            if t["group"] != g or t["status"] != "completed":
                continue
            sel = cases[(cases.trial_id == t["trial_id"]) & (cases.split == "test")]
            for case, rows in sel.groupby("case_id"):
                out[t["seed"], case] = float(np.nanmean(rows[metric]))
        return out
    a, b = values(group), values(baseline)
    keys = sorted(set(a) & set(b))
    return np.array([a[k] for k in keys]), np.array([b[k] for k in keys])


def naive_rank_biserial(d):
    d = [x for x in d if x != 0]
    mags = sorted(abs(x) for x in d)
    rank = {}
    for v in set(mags):
        positions = [i + 1 for i, m in enumerate(mags) if m == v]
        rank[v] = sum(positions) / len(positions)
    plus = sum(rank[abs(x)] for x in d if x > 0)
    minus = sum(rank[abs(x)] for x in d if x < 0)
    return (plus - minus) / (plus + minus)


def test_paired_tests_match_scipy_and_naive(run):
    trials, cases = run
    # drop one baseline case: only pairs present in both groups count
    cases = cases[~((cases.trial_id == "baseline-s2") & (cases.case_id == "case4"))]
    pt = S.paired_tests(trials, cases, n_boot=2000)
    assert pt.columns.tolist() == S.PAIRED_COLUMNS
    assert pt["group"].tolist() == ["no_dvcl", "no_mem"]
    for row in pt.to_dict("records"):
        a, b = naive_pairs(trials, cases, row["group"])
        assert row["n_pairs"] == len(a) == 14
        ref = sps.wilcoxon(a, b)
        assert row["wilcoxon"] == pytest.approx(ref.statistic)
        assert row["p"] == pytest.approx(ref.pvalue)
        d = a - b
        assert row["mean_diff"] == pytest.approx(sum(d) / len(d))
        assert row["cohen_dz"] == pytest.approx(d.mean() / statistics.stdev(d))
        assert row["rank_biserial"] == pytest.approx(naive_rank_biserial(d))
        assert row["boot_low"] <= row["mean_diff"] <= row["boot_high"]
    np.testing.assert_allclose(pt["p_holm"], naive_holm(pt["p"].tolist()))
    dvcl = pt.set_index("group").loc["no_dvcl"]
    assert dvcl["mean_diff"] < 0 and dvcl["p_holm"] < 0.01 and dvcl["rank_biserial"] == -1.0


def test_paired_tests_degenerate_differences(run):
    trials, cases = run
    same = cases[cases.trial_id.str.startswith("baseline")].assign(trial_id=lambda c: c.trial_id.str.replace("baseline", "twin"))
    one = same.copy()
    one.loc[one.index[one["split"] == "test"][0], "dice"] += 0.1  # a single non-zero test difference
    one["trial_id"] = one["trial_id"].str.replace("twin", "one")
    extra = pd.DataFrame([dict(trial_id=f"{g}-s{s}", status="completed", seed=s, group=g)
                          for g in ("twin", "one") for s in SEEDS])
    pt = S.paired_tests(pd.concat([trials, extra]), pd.concat([cases, same, one]), n_boot=500).set_index("group")
    assert math.isnan(pt.loc["twin", "p"]) and math.isnan(pt.loc["twin", "p_holm"])
    assert math.isnan(pt.loc["one", "p"]) and pt.loc["one", "n_pairs"] == 15
    assert pt.loc["one", "mean_diff"] == pytest.approx(0.1 / 3 / 15) and pt.loc["one", "rank_biserial"] == 1.0
    assert pt.loc["twin", "mean_diff"] == 0 and pt.loc["twin", "boot_low"] == pt.loc["twin", "boot_high"] == 0
    assert math.isnan(pt.loc["twin", "cohen_dz"])
    assert not math.isnan(pt.loc["no_dvcl", "p_holm"])  # NaN p-values are not counted by Holm


def test_paired_tests_without_baseline_group(run):
    pt = S.paired_tests(*run, baseline="absent", n_boot=100)
    assert len(pt) == 3 and (pt["n_pairs"] == 0).all() and pt["p"].isna().all()


def test_bootstrap_reproducible_and_narrows():
    rng = np.random.default_rng(7)
    d = rng.normal(0.03, 0.05, 500)
    assert S.bootstrap_ci(d[:20], 3000, seed=1) == S.bootstrap_ci(d[:20], 3000, seed=1)
    assert S.bootstrap_ci(d[:20], 3000, seed=1) != S.bootstrap_ci(d[:20], 3000, seed=2)
    lo_small, hi_small = S.bootstrap_ci(d[:20], 3000, seed=1)
    lo_big, hi_big = S.bootstrap_ci(d, 3000, seed=1)
    assert lo_big < d.mean() < hi_big and lo_small < d[:20].mean() < hi_small
    assert hi_big - lo_big < 0.5 * (hi_small - lo_small)
    # via paired_tests: more cases → narrower CI for the same effect
    small = S.paired_tests(*synthetic(n_cases=5), n_boot=2000).set_index("group")
    big = S.paired_tests(*synthetic(n_cases=60), n_boot=2000).set_index("group")
    width = lambda t: t.loc["no_dvcl", "boot_high"] - t.loc["no_dvcl", "boot_low"]
    assert width(big) < width(small)
    again = S.paired_tests(*synthetic(n_cases=5), n_boot=2000).set_index("group")
    assert again.loc["no_dvcl", "boot_low"] == small.loc["no_dvcl", "boot_low"]


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
    old = trials.drop(columns=["group"]).assign(arm="", cell=lambda t: [json.dumps({"k": t_id[:2]}) for t_id in t.trial_id])
    m = S.trial_metrics(old, cases)
    assert sorted(pd.unique(m["group"])) == sorted({json.dumps({"k": g[:2]}) for g in GROUPS})
