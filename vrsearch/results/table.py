"""The ablation table of a run: one row per group, baseline first.

:func:`ablation_table` combines the seed-level summary
(:func:`~vrsearch.results.stats.summarize`), the paired per-case tests against
the baseline (:func:`~vrsearch.results.stats.paired_tests`, Holm-adjusted) and
the compute budget (:func:`~vrsearch.results.stats.budget`) into an
:class:`AblationTable`. Its ``frame`` holds raw numbers (Dice and Jaccard as
fractions in [0, 1], distances in mm) and is what ``to_csv`` writes; the text
renderers (Markdown, LaTeX/booktabs, rich) show Dice and Jaccard in percent
(×100, labelled "%") and put the best value of each metric column in bold
(max for Dice/Jaccard, min for HD95).
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
from vrsearch.results.stats import budget, group_labels, metric_columns, paired_tests, summarize, trial_metrics

DASH = "-"


@dataclass(frozen=True)
class Column:
    """How one column of ``AblationTable.frame`` is shown."""

    header: str
    key: str
    kind: str  # text | int | pct | pct_ci | delta | mm | p | hours
    best: str | None = None  # "max" | "min": bold the best row


def stars(p: float) -> str:
    """Significance marker of a Holm-adjusted p-value."""
    if p is None or not math.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
          "±": r"$\pm$", "Δ": r"$\Delta$", "<": r"$<$", ">": r"$>$"}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials (``_ % & $ # { } ~ ^ \\``) and map ± Δ < > to math."""
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _format(row: pd.Series, col: Column) -> str:
    x = row[col.key]
    if col.kind == "text":
        return str(x)
    if not _finite(x):
        return DASH
    x = float(x)
    if col.kind == "int":
        return f"{x:.0f}"
    if col.kind == "pct":
        return f"{100 * x:.1f}"
    if col.kind == "pct_ci":
        ci = row.get(col.key.replace("_mean", "_ci95"), math.nan)
        return f"{100 * x:.1f} ± {100 * float(ci):.1f}" if _finite(ci) else f"{100 * x:.1f}"
    if col.kind == "delta":
        return f"{100 * x:+.1f}"
    if col.kind == "p":
        return "<0.001" if x < 0.001 else f"{x:.3f}"
    return f"{x:.2f}"  # mm, hours


@dataclass
class AblationTable:
    """Rows = groups (baseline first, then the study's arms, then others sorted).

    ``frame`` columns (raw numbers): ``group, n`` (seeds with a test Dice),
    ``dice/<class>`` (per-class Dice, mean over seeds), ``dice_mean, dice_std,
    dice_ci95`` (95 % t half-width), ``dice_delta`` (vs baseline),
    ``jaccard_mean, hd95_mm_mean``, ``mean_diff`` (paired per-case Dice
    difference vs baseline), ``p_holm, sig`` and the budget ``trials,
    completed, iterations, wall_time_h, device_hours``.
    """

    frame: pd.DataFrame
    classes: list[str]
    baseline: str
    split: str = "test"
    #: the dataset-axis setting this table covers (``labeled_ratio=0.1``), "" without axes
    slice: str = ""

    def columns(self) -> list[Column]:
        cols = [Column("Group", "group", "text"), Column("n", "n", "int")]
        cols += [Column(f"{c} Dice (%)", f"dice/{c}", "pct", "max") for c in self.classes]
        cols += [
            Column("Dice (%) ± CI", "dice_mean", "pct_ci", "max"),
            Column("Δ Dice (pp)", "dice_delta", "delta"),
            Column("Jaccard (%)", "jaccard_mean", "pct", "max"),
            Column("HD95 (mm)", "hd95_mm_mean", "mm", "min"),
            Column("p (Holm)", "p_holm", "p"),
            Column("sig", "sig", "text"),
            Column("Trials", "trials", "int"),
            Column("Iterations", "iterations", "int"),
            Column("Wall (h)", "wall_time_h", "hours"),
            Column("Device (h)", "device_hours", "hours"),
        ]
        return cols

    def caption(self) -> str:
        where = f"{self.slice}; " if self.slice else ""
        return (f"{where}{self.split} split; mean over seeds, ± = 95 % Student-t CI; Dice/Jaccard in %, HD95 in mm; "
                f"Δ and p vs '{self.baseline}': paired Wilcoxon on per-case Dice, Holm-adjusted across arms "
                "(* p<0.05, ** p<0.01, *** p<0.001); bold = best per column.")

    def cells(self) -> tuple[list[Column], list[list[tuple[str, bool]]]]:
        """Formatted cells with a bold flag for each (the best value of a metric column)."""
        cols = self.columns()
        best: dict[str, float] = {}
        for col in cols:
            values = pd.to_numeric(self.frame[col.key], errors="coerce").dropna() if col.best else None
            if col.best and values.nunique() > 1:  # a tie across every row highlights nothing
                best[col.key] = values.max() if col.best == "max" else values.min()
        rows = []
        for _, row in self.frame.iterrows():
            rows.append([(_format(row, c), c.key in best and _finite(row[c.key]) and float(row[c.key]) == best[c.key])
                         for c in cols])
        return cols, rows

    def to_markdown(self) -> str:
        cols, rows = self.cells()

        def cell(text: str, bold: bool) -> str:
            text = text.replace("|", r"\|").replace("*", r"\*")
            return f"**{text}**" if bold else text

        lines = ["| " + " | ".join(c.header for c in cols) + " |",
                 "|" + "|".join(":---" if c.kind == "text" else "---:" for c in cols) + "|"]
        lines += ["| " + " | ".join(cell(t, b) for t, b in row) + " |" for row in rows]
        return "\n".join(lines) + "\n\n" + self.caption().replace("*", r"\*") + "\n"

    def to_latex(self) -> str:
        cols, rows = self.cells()

        def cell(text: str, bold: bool) -> str:
            return rf"\textbf{{{latex_escape(text)}}}" if bold else latex_escape(text)

        spec = "".join("l" if c.kind == "text" else "r" for c in cols)
        lines = [f"% {self.caption()}", r"% needs \usepackage{booktabs}",
                 rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
                 " & ".join(latex_escape(c.header) for c in cols) + r" \\", r"\midrule"]
        lines += [" & ".join(cell(t, b) for t, b in row) + r" \\" for row in rows]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"

    def to_rich(self):
        """A :class:`rich.table.Table` (cells are plain Text: no markup is parsed)."""
        from rich.table import Table
        from rich.text import Text

        cols, rows = self.cells()
        where = f", {self.slice}" if self.slice else ""
        table = Table(title=f"Ablation vs {self.baseline} ({self.split}{where})", caption=self.caption())
        width = min(30, max((len(str(g)) for g in self.frame["group"]), default=5))
        for c in cols:
            table.add_column(Text(c.header), justify="left" if c.kind == "text" else "right",
                             min_width=width if c.key == "group" else None)
        for row in rows:
            table.add_row(*[Text(t, style="bold" if b else "") for t, b in row])
        return table

    def to_csv(self, path: Path | str) -> Path:
        """Raw numbers (fractions, mm, hours) of ``frame``, written atomically."""
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
            ("n", "mean", "std", "ci95", "delta")}
    classes = [c.split("/", 1)[1] for c in metric_columns(metrics) if c.startswith("dice/")]
    frame = pd.DataFrame({"group": order})
    frame["n"] = stat["n"]["dice"].fillna(0).astype(int).to_numpy()
    for c in classes:
        frame[f"dice/{c}"] = stat["mean"][f"dice/{c}"].to_numpy()
    for key in ("mean", "std", "ci95", "delta"):
        frame[f"dice_{key}"] = stat[key]["dice"].to_numpy()
    frame["jaccard_mean"] = stat["mean"]["jaccard"].to_numpy()
    frame["hd95_mm_mean"] = stat["mean"]["hd95_mm"].to_numpy()

    tests = paired_tests(trials, cases, baseline, split, "dice").set_index("group").reindex(order)
    for key in ("n_pairs", "mean_diff", "boot_low", "boot_high", "p", "p_holm", "rank_biserial", "cohen_dz"):
        frame[key] = tests[key].to_numpy()
    frame["sig"] = [stars(p) for p in frame["p_holm"]]
    spent = budget(trials).set_index("group").reindex(order)
    frame["trials"] = spent["trials"].to_numpy()
    frame["completed"] = spent["completed"].to_numpy()
    frame["iterations"] = spent["iterations_sum"].to_numpy()
    frame["wall_time_h"] = spent["wall_time_h"].to_numpy()
    frame["device_hours"] = spent["device_hours"].to_numpy()
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
