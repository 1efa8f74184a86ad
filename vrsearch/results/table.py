"""The ablation table of a run: one row per group, baseline first.

:func:`ablation_table` combines the seed-level summary
(:func:`~vrsearch.results.stats.summarize`), the headline test against the
baseline (:func:`~vrsearch.results.stats.headline_tests`: paired t over seeds,
Holm across arms, minimal detectable difference), the case-level view on these
trained models (:func:`~vrsearch.results.stats.case_level_tests`), per-class Dice
and empty-mask counts, and the compute budget into an :class:`AblationTable`.
Its ``frame`` holds raw numbers (Dice and Jaccard as fractions in [0, 1],
distances in mm) and is what ``to_csv`` writes. The renderers (Markdown,
LaTeX/booktabs and rich in :mod:`vrsearch.results.table_view`, HTML in the report)
show Dice and Jaccard in percent and put the best value of each metric column in
bold (max for Dice/Jaccard, min for distances); only the headline p-value gets stars.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vrsearch.errors import VrsearchError
from vrsearch.results import io
from vrsearch.results.table_view import Column, Section, latex, markdown, terminal_view
from vrsearch.results.stats import (
    METRIC_INFO, METRICS, budget, case_level_tests, empty_counts, group_labels, headline_tests, metric_columns,
    summarize, trial_metrics,
)

DASH = "-"
ALPHA, POWER, LEVEL = 0.05, 0.80, 0.95


def stars(p: float) -> str:
    """Significance marker of a Holm-adjusted p-value."""
    if p is None or not math.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _format(row: pd.Series, col: Column) -> str:
    if col.kind == "text":
        return str(row[col.key])
    if col.kind == "counts":  # "pred_empty/label_empty" of one class
        flags = [row.get(f"{f}/{col.key.split('/', 1)[1]}") for f in ("pred_empty", "label_empty")]
        return "/".join(f"{float(v):.0f}" if _finite(v) else "?" for v in flags)
    x = row[col.key]
    if not _finite(x):
        return DASH
    if col.kind == "pair":  # paired seeds × cases of the headline test
        return f"{x:.0f} × {float(row['n_cases']):.0f}"
    x = float(x)
    if col.kind in ("pct_ci", "delta_ci"):
        half = row.get(col.key.replace("_mean", "_ci95") if col.kind == "pct_ci" else "delta_ci95", math.nan)
        value = f"{100 * x:.1f}" if col.kind == "pct_ci" else f"{100 * x:+.1f}"
        return f"{value} ± {100 * float(half):.1f}" if _finite(half) else value
    if col.kind == "int":
        return f"{x:.0f}"
    if col.kind == "pct":
        return f"{100 * x:.1f}"
    if col.kind == "delta":
        return f"{100 * x:+.1f}"
    if col.kind in ("p", "p_sig"):
        text = "<0.001" if x < 0.001 else f"{x:.3f}"
        return f"{text} {stars(x)}".rstrip() if col.kind == "p_sig" else text
    if col.kind == "r":
        return f"{x:+.2f}"
    return f"{x:.2f}"  # mm, hours


def _span(values) -> str:
    """"3" or "2–3" for the distinct finite counts in ``values``."""
    v = sorted({int(x) for x in values if _finite(x)})
    return "?" if not v else str(v[0]) if len(v) == 1 else f"{v[0]}–{v[-1]}"


def _pp_span(values) -> str:
    """"3.2" or "3.2–4.1" (percentage points) for the finite ``values``; "?" without any."""
    v = sorted(100 * float(x) for x in values if _finite(x))
    return "?" if not v else f"{v[0]:.1f}" if f"{v[0]:.1f}" == f"{v[-1]:.1f}" else f"{v[0]:.1f}–{v[-1]:.1f}"


@dataclass
class AblationTable:
    """Rows = groups (baseline first, then the study's arms, then others sorted).

    ``frame`` columns (raw numbers): ``group, n`` (seeds with a test Dice); per
    metric of :data:`~vrsearch.results.stats.METRICS` ``<m>_mean`` (mean over seeds of
    the trials' NaN-aware means) and for Dice ``dice_std, dice_ci95`` (95 % t
    half-width); the headline test vs the baseline ``n_seeds`` (shared), ``n_cases``,
    ``delta`` (mean per-seed difference), ``delta_low, delta_high, delta_ci95``
    (95 % t-interval, half-width), ``delta_sd, p, p_holm, sig, mdd`` (difference
    detectable with 80 % power at α = 0.05); the case-level view ``case_n_seeds,
    case_n_cases, case_delta, case_p, case_p_holm, case_rank_biserial``; per class
    ``dice/<class>``, ``pred_empty/<class>``, ``label_empty/<class>`` (counts over
    seeds × cases) and ``rows_per_class``; the budget ``trials, completed,
    iterations, wall_time_h, device_hours``.
    """

    frame: pd.DataFrame
    classes: list[str]
    baseline: str
    split: str = "test"
    #: the dataset-axis setting this table covers (``labeled_ratio=0.1``), "" without axes
    slice: str = ""

    # -- columns -----------------------------------------------------------------------------------------
    def headline_columns(self) -> list[Column]:
        """Group, n, Dice ± CI, Δ ± CI, p, MDD — what a verdict needs."""
        return [Column("Group", "group", "text"), Column("n", "n", "int"),
                Column("Dice (%) ± CI", "dice_mean", "pct_ci", "max", "Dice % ± CI"),
                Column("Δ Dice (pp) ± CI", "delta", "delta_ci", None, "Δ pp ± CI"),
                Column("p (Holm)", "p_holm", "p_sig", None, "p Holm"),
                Column("MDD (pp)", "mdd", "pct", None, "MDD pp")]

    def budget_columns(self) -> list[Column]:
        return [Column("Iterations", "iterations", "int", None, "Iter"),
                Column("Wall (h)", "wall_time_h", "hours", None, "Wall h"),
                Column("Trials", "trials", "int"), Column("Device (h)", "device_hours", "hours", None, "Dev h")]

    def metric_columns(self) -> list[Column]:
        """The other metrics of :data:`METRICS` (after Dice) as ``<m>_mean`` columns."""
        return [Column(f"{METRIC_INFO[m][0]} ({METRIC_INFO[m][1]})", f"{m}_mean",
                       "pct" if METRIC_INFO[m][1] == "%" else "mm", METRIC_INFO[m][2]) for m in METRICS[1:]]

    def case_columns(self) -> list[Column]:
        return [Column("Group", "group", "text"), Column("Seeds", "case_n_seeds", "int"),
                Column("Cases", "case_n_cases", "int"), Column("Δ Dice (pp)", "case_delta", "delta"),
                Column("p (Holm)", "case_p_holm", "p"), Column("Rank-biserial", "case_rank_biserial", "r")]

    def class_columns(self) -> list[Column]:
        return [Column(c, f"dice/{c}", "pct", "max") for c in self.classes]

    def empty_columns(self) -> list[Column]:
        return [Column(c, f"counts/{c}", "counts") for c in self.classes]

    # -- captions ----------------------------------------------------------------------------------------
    def _arms(self) -> pd.DataFrame:
        return self.frame.loc[self.frame["group"] != self.baseline]

    def headline_caption(self) -> str:
        arms = self._arms()
        where = f"{self.slice}; " if self.slice else ""
        return (f"{where}{self.split} split. Dice: mean over seeds ± 95 % t-CI. Δ, p vs '{self.baseline}': paired "
                f"t-test over the {_span(arms['n_seeds'])} seeds both groups share (per seed: the trial's "
                f"{self.split} Dice over {_span(arms['n_cases'])} cases), ± = 95 % CI, Holm across "
                f"{len(arms)} arm(s) (* p<0.05, ** p<0.01, *** p<0.001). MDD: the difference this test detects "
                f"with 80 % power (α = 0.05, before Holm) given the observed seed-to-seed spread; with "
                f"{_span(arms['n_seeds'])} seeds, true differences smaller than {_pp_span(arms['mdd'])} pp are "
                "likely to be missed. Bold = best per column; iterations and hours summed over the group's trials.")

    def case_caption(self) -> str:
        return ("On these trained models (not a verdict about the method): per case, Dice averaged over the seeds "
                f"both groups share, minus '{self.baseline}'; Wilcoxon signed-rank over cases (n = cases), Holm "
                "across arms. It ignores seed-to-seed variation, so it says whether these models differ, "
                "not whether the method does.")

    def empty_caption(self) -> str:
        return ("Empty masks per class: pred_empty/label_empty counts over seeds × cases (rows per class in the "
                "second column). pred_empty without label_empty = a missed organ (Dice 0, worst-case distance); "
                "both = a class absent from the case and not predicted (no score, left out of every mean).")

    def sections(self) -> list[Section]:
        """The tables every file and the report show, headline first."""
        head = self.headline_columns() + [Column("Seeds × cases", "n_seeds", "pair")] + self.budget_columns()
        group = self.headline_columns()[0]
        return [Section("Headline: each arm vs the baseline over seeds", head, self.headline_caption()),
                Section("Other metrics", [group, *self.metric_columns()],
                        "Mean over seeds of each trial's NaN-aware mean over its (case, class) rows; bold = best."),
                Section("Case-level view: on these trained models", self.case_columns(), self.case_caption(), True),
                Section("Per-class Dice (%)", [group, *self.class_columns()],
                        "Mean over seeds of each trial's NaN-aware mean over cases; bold = best per class."),
                Section("Empty masks per class", [group, Column("Rows", "rows_per_class", "int"),
                                                  *self.empty_columns()], self.empty_caption())]

    def cells(self, cols: list[Column], arms_only: bool = False) -> list[list[tuple[str, bool]]]:
        """Formatted cells of ``cols`` with a bold flag for each (the best value of a metric
        column); ``arms_only`` leaves the baseline row out."""
        frame = self._arms() if arms_only else self.frame
        best: dict[str, float] = {}
        for col in cols:
            values = pd.to_numeric(self.frame[col.key], errors="coerce").dropna() if col.best else None
            if col.best and values.nunique() > 1:  # a tie across every row highlights nothing
                best[col.key] = values.max() if col.best == "max" else values.min()
        return [[(_format(row, c), c.key in best and _finite(row[c.key]) and float(row[c.key]) == best[c.key])
                 for c in cols] for _, row in frame.iterrows()]

    # -- files -------------------------------------------------------------------------------------------
    def to_markdown(self) -> str:
        """Every section as a Markdown table with its caption (see :mod:`~vrsearch.results.table_view`)."""
        return markdown(self)

    def to_latex(self) -> str:
        """Every section as a booktabs ``tabular`` (see :mod:`~vrsearch.results.table_view`)."""
        return latex(self)

    def to_rich(self, width: int = 200, classes: bool = False) -> list:
        """The terminal view (rich tables) fitted to ``width`` columns: see
        :func:`vrsearch.results.table_view.terminal_view`."""
        return terminal_view(self, width, classes)

    def to_csv(self, path: Path | str) -> Path:
        """Raw numbers (fractions, mm, hours, counts) of ``frame``, written atomically."""
        path = Path(path)
        io.write_text_atomic(path, self.frame.to_csv(index=False))
        return path

    def write(self, out_dir: Path | str) -> list[Path]:
        """``table.md``, ``table.tex``, ``table.csv`` (``table_<split>.*`` for a split other than test)."""
        out_dir = Path(out_dir)
        stem = "table" if self.split == "test" else f"table_{self.split}"
        if self.slice:
            stem += "_" + re.sub(r"[^A-Za-z0-9.=-]+", "_", self.slice)
        md, tex = out_dir / f"{stem}.md", out_dir / f"{stem}.tex"
        io.write_text_atomic(md, self.to_markdown())
        io.write_text_atomic(tex, self.to_latex())
        return [md, tex, self.to_csv(out_dir / f"{stem}.csv")]


def group_order(groups: list[str], study: dict | None, baseline: str | None) -> list[str]:
    """Baseline first, then the study's ablation arms in study order, then the rest sorted."""
    search = (study or {}).get("search") or {}
    arms = [a.get("name") for a in (search.get("arms") or []) if isinstance(a, dict)]
    present = list(dict.fromkeys(groups))
    order = [baseline] if baseline in present else []
    order += [a for a in arms if a in present and a not in order]
    return order + sorted(g for g in present if g not in order)


def _per_class(trials: pd.DataFrame, cases: pd.DataFrame, split: str, order: list[str]) -> pd.DataFrame:
    """``pred_empty/<c>``, ``label_empty/<c>`` counts and ``rows_per_class`` per group (rows in ``order``)."""
    counts = empty_counts(trials, cases, split)
    out = pd.DataFrame(index=pd.Index(order, name="group"))
    if counts.empty:
        return out.assign(rows_per_class=math.nan)
    classes = list(pd.unique(counts["class"]))
    for flag in ("pred_empty", "label_empty"):
        wide = counts.pivot(index="group", columns="class", values=flag).reindex(index=order, columns=classes)
        out[[f"{flag}/{c}" for c in classes]] = wide.to_numpy(dtype=float)
    out["rows_per_class"] = counts.groupby("group")["rows"].max().reindex(order).to_numpy(dtype=float)
    return out


def _tests(trials: pd.DataFrame, cases: pd.DataFrame, baseline: str, split: str, order: list[str]) -> pd.DataFrame:
    """Headline and case-level columns of the frame, one row per group of ``order``."""
    head = headline_tests(trials, cases, baseline, split, "dice", LEVEL, ALPHA, POWER).set_index("group")
    case = case_level_tests(trials, cases, baseline, split, "dice").set_index("group")
    out = pd.DataFrame(index=pd.Index(order, name="group"))
    for key, source in (("n_seeds", "n_seeds"), ("n_cases", "n_cases"), ("delta", "mean_diff"),
                        ("delta_low", "ci_low"), ("delta_high", "ci_high"), ("delta_sd", "sd"), ("p", "p"),
                        ("p_holm", "p_holm"), ("mdd", "mdd")):
        out[key] = head[source].reindex(order).to_numpy(dtype=float)
    out["delta_ci95"] = (out["delta_high"] - out["delta_low"]) / 2
    out["sig"] = [stars(p) for p in out["p_holm"]]
    for key in ("n_seeds", "n_cases", "mean_diff", "p", "p_holm", "rank_biserial"):
        out["case_" + key.replace("mean_diff", "delta")] = case[key].reindex(order).to_numpy(dtype=float)
    return out


def ablation_table(results: io.Results, baseline: str | None = None, split: str = "test",
                   *, name: str | None = None) -> AblationTable:
    """Build the ablation table of ``results`` (``name`` prefixes error messages).

    ``baseline`` defaults to the group "baseline" if present, else the first
    group (in table order) that has trials with metrics of ``split``."""
    prefix = f"{name}: " if name else ""
    trials, cases = results.trials, results.cases
    metrics = trial_metrics(trials, cases, split)
    if metrics.empty or metrics["dice"].notna().sum() == 0:
        raise VrsearchError(f"{prefix}no completed trials with {split} metrics yet")
    groups = list(pd.unique(group_labels(trials)))
    if baseline is None:
        scored = set(metrics.loc[metrics["dice"].notna(), "group"])
        ordered = [g for g in group_order(groups, results.study, None) if g in scored]
        baseline = "baseline" if "baseline" in groups else ordered[0]
    elif baseline not in groups:
        raise VrsearchError(f"{prefix}baseline {baseline!r} is not a group of this run (groups: {', '.join(groups)})")
    order = group_order(groups, results.study, baseline)

    summary = summarize(metrics, baseline)
    stat = {k: summary.pivot(index="group", columns="metric", values=k).reindex(order) for k in
            ("n", "mean", "std", "ci95")}
    classes = [c.split("/", 1)[1] for c in metric_columns(metrics) if c.startswith("dice/")]
    frame = pd.DataFrame({"group": order})
    frame["n"] = stat["n"]["dice"].fillna(0).astype(int).to_numpy()
    for key in ("mean", "std", "ci95"):
        frame[f"dice_{key}"] = stat[key]["dice"].to_numpy()
    for m in METRICS[1:]:
        frame[f"{m}_mean"] = stat["mean"][m].to_numpy() if m in stat["mean"] else math.nan
    frame = frame.join(_tests(trials, cases, baseline, split, order), on="group")
    for c in classes:
        frame[f"dice/{c}"] = stat["mean"][f"dice/{c}"].to_numpy()
    frame = frame.join(_per_class(trials, cases, split, order), on="group")
    spent = budget(trials).set_index("group").reindex(order)
    for key, source in (("trials", "trials"), ("completed", "completed"), ("iterations", "iterations_sum"),
                        ("wall_time_h", "wall_time_h"), ("device_hours", "device_hours")):
        frame[key] = spent[source].to_numpy()
    return AblationTable(frame=frame, classes=classes, baseline=baseline, split=split)


def axis_slices(results: io.Results) -> list[tuple[str, io.Results]]:
    """One ``(label, results)`` per setting of the study's dataset axes (arms are compared
    with the baseline at the same labeled ratio / split seed); ``[("", results)]`` without axes.
    Within a slice a trial's group is its arm (or its knobs) without the axis values."""
    axes = ((results.study or {}).get("search") or {}).get("axes") or {}
    if not axes:
        return [("", results)]
    trials, out = results.trials, []
    labels = group_labels(trials)
    for combo in itertools.product(*axes.values()):
        parts = [f"{k.split('.', 1)[1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.', 1)[1]}={v}"
                 for k, v in zip(axes, combo)]
        keep = pd.Series(True, index=trials.index)
        for key, value in zip(axes, combo):
            column = f"config.{key}"
            keep &= trials[column] == value if column in trials else False
        suffix = ", " + ", ".join(parts)
        part = trials[keep].assign(group=[g[: -len(suffix)] if g.endswith(suffix) else g for g in labels[keep]])
        cases = results.cases[results.cases.trial_id.isin(part.trial_id)]
        out.append((", ".join(parts), io.Results(part, results.history, cases, results.study)))
    return out


def load_tables(run_dir: Path | str, baseline: str | None = None, split: str = "test") -> list[AblationTable]:
    """The run's ablation tables: one, or one per dataset-axis setting with results."""
    results, tables = io.load(run_dir), []
    for label, part in axis_slices(results):
        try:
            table = ablation_table(part, baseline=baseline, split=split, name=str(run_dir))
        except VrsearchError:
            if label:  # a setting whose trials have not finished yet
                continue
            raise
        table.slice = label
        tables.append(table)
    if not tables:
        raise VrsearchError(f"{run_dir}: no completed trials with {split} metrics yet")
    return tables


def load_table(run_dir: Path | str, baseline: str | None = None, split: str = "test") -> AblationTable:
    """Load a run directory and build its (first) ablation table (errors name the run dir)."""
    return load_tables(run_dir, baseline, split)[0]


def write_table(run_dir: Path | str, out_dir: Path | str | None = None, baseline: str | None = None,
                split: str = "test") -> list[Path]:
    """Write ``table.md``, ``table.tex`` and ``table.csv`` (per axis setting: ``table_<setting>.*``)
    into ``out_dir`` (default: the run dir)."""
    out = out_dir if out_dir is not None else run_dir
    return [p for t in load_tables(run_dir, baseline=baseline, split=split) for p in t.write(out)]
