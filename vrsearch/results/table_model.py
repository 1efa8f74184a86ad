"""The contents of a run's ablation table (:class:`AblationTable`, built by
:func:`vrsearch.results.table.ablation_table`): what each section shows (its columns),
the captions that say how to read it, the formatted cells with the best value of each
metric column in bold, and the files it is written to. The renderers are in
:mod:`vrsearch.results.table_view`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vrsearch.results import io
from vrsearch.results.stats import METRIC_INFO, METRICS
from vrsearch.results.table_cells import finite, format_cell, pp_span, span
from vrsearch.results.table_view import Column, Section, latex, markdown, terminal_view


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
    #: the numeric kernels its completed trials trained on (trials.parquet ``kernels``), sorted
    kernels: tuple[str, ...] = ()

    # -- columns -----------------------------------------------------------------------------------------
    def headline_columns(self) -> list[Column]:
        """Group, n, Dice ± CI, Δ ± CI, p, MDD — what a verdict needs."""
        return [
            Column("Group", "group", "text"),
            Column("n", "n", "int"),
            Column("Dice (%) ± CI", "dice_mean", "pct_ci", "max", "Dice % ± CI"),
            Column("Δ Dice (pp) ± CI", "delta", "delta_ci", None, "Δ pp ± CI"),
            Column("p (Holm)", "p_holm", "p_sig", None, "p Holm"),
            Column("MDD (pp)", "mdd", "pct", None, "MDD pp"),
        ]

    def budget_columns(self) -> list[Column]:
        return [
            Column("Iterations", "iterations", "int", None, "Iter"),
            Column("Wall (h)", "wall_time_h", "hours", None, "Wall h"),
            Column("Trials", "trials", "int"),
            Column("Device (h)", "device_hours", "hours", None, "Dev h"),
        ]

    def metric_columns(self) -> list[Column]:
        """The other metrics of :data:`METRICS` (after Dice) as ``<m>_mean`` columns."""
        return [
            Column(
                f"{METRIC_INFO[m][0]} ({METRIC_INFO[m][1]})",
                f"{m}_mean",
                "pct" if METRIC_INFO[m][1] == "%" else "mm",
                METRIC_INFO[m][2],
            )
            for m in METRICS[1:]
        ]

    def case_columns(self) -> list[Column]:
        return [
            Column("Group", "group", "text"),
            Column("Seeds", "case_n_seeds", "int"),
            Column("Cases", "case_n_cases", "int"),
            Column("Δ Dice (pp)", "case_delta", "delta"),
            Column("p (Holm)", "case_p_holm", "p"),
            Column("Rank-biserial", "case_rank_biserial", "r"),
        ]

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
        return (
            f"{where}{self.split} split. Dice: mean over seeds ± 95 % t-CI. Δ, p vs '{self.baseline}': paired "
            f"t-test over the {span(arms['n_seeds'])} seeds both groups share (per seed: the trial's "
            f"{self.split} Dice over {span(arms['n_cases'])} cases), ± = 95 % CI, Holm across "
            f"{len(arms)} arm(s) (* p<0.05, ** p<0.01, *** p<0.001). MDD: the difference this test detects "
            f"with 80 % power (α = 0.05, before Holm) given the observed seed-to-seed spread; with "
            f"{span(arms['n_seeds'])} seeds, true differences smaller than {pp_span(arms['mdd'])} pp are "
            "likely to be missed. Bold = best per column; iterations and hours summed over the group's trials."
            + self._kernels_caption()
        )

    def _kernels_caption(self) -> str:
        if len(self.kernels) < 2:
            return ""
        return (
            f" The trials ran on {len(self.kernels)} sets of kernels ({'; '.join(self.kernels)}): equal seeds "
            "give other numbers on other kernels, so part of a difference can be the order of float sums "
            "(README: Reproducibility)."
        )

    def case_caption(self) -> str:
        return (
            "On these trained models (not a verdict about the method): per case, Dice averaged over the seeds "
            f"both groups share, minus '{self.baseline}'; Wilcoxon signed-rank over cases (n = cases), Holm "
            "across arms. It ignores seed-to-seed variation, so it says whether these models differ, "
            "not whether the method does."
        )

    def empty_caption(self) -> str:
        return (
            "Empty masks per class: pred_empty/label_empty counts over seeds × cases (rows per class in the "
            "second column). pred_empty without label_empty = a missed organ (Dice 0, worst-case distance); "
            "both = a class absent from the case and not predicted (no score, left out of every mean)."
        )

    def sections(self) -> list[Section]:
        """The tables every file and the report show, headline first."""
        head = self.headline_columns() + [Column("Seeds × cases", "n_seeds", "pair")] + self.budget_columns()
        group = self.headline_columns()[0]
        return [
            Section("Headline: each arm vs the baseline over seeds", head, self.headline_caption()),
            Section(
                "Other metrics",
                [group, *self.metric_columns()],
                "Mean over seeds of each trial's NaN-aware mean over its (case, class) rows; bold = best.",
            ),
            Section("Case-level view: on these trained models", self.case_columns(), self.case_caption(), True),
            Section(
                "Per-class Dice (%)",
                [group, *self.class_columns()],
                "Mean over seeds of each trial's NaN-aware mean over cases; bold = best per class.",
            ),
            Section(
                "Empty masks per class",
                [group, Column("Rows", "rows_per_class", "int"), *self.empty_columns()],
                self.empty_caption(),
            ),
        ]

    def cells(self, cols: list[Column], arms_only: bool = False) -> list[list[tuple[str, bool]]]:
        """Formatted cells of ``cols`` with a bold flag for each (the best value of a metric
        column); ``arms_only`` leaves the baseline row out."""
        frame = self._arms() if arms_only else self.frame
        best: dict[str, float] = {}
        for col in (c for c in cols if c.best):
            values = pd.to_numeric(self.frame[col.key], errors="coerce").dropna()
            if values.nunique() > 1:  # a tie across every row highlights nothing
                best[col.key] = values.max() if col.best == "max" else values.min()
        return [
            [
                (format_cell(row, c), c.key in best and finite(row[c.key]) and float(row[c.key]) == best[c.key])
                for c in cols
            ]
            for _, row in frame.iterrows()
        ]

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
