"""Renderers of an :class:`~vrsearch.results.table_model.AblationTable`: Markdown and LaTeX (every
section with its caption: what the files keep) and the terminal view of ``vrsearch table``.

The terminal puts the headline first, fitted to the width: it always shows group,
n, Dice ± CI, Δ ± CI, p (Holm) with stars, the minimal detectable difference and
the budget (iterations, wall hours); then, while they fit in the width at their
full natural size (numbers are never cut), trials, device hours and the other
metrics, and the per-class Dice columns only if all of them fit. ``classes=True`` prints
the per-class Dice and empty-mask counts below, split into as many tables as the width needs. The case-level view
follows the headline. The files (``table.md/.tex/.csv``) keep everything.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class Column:
    """How one column of ``AblationTable.frame`` is shown (``short``: the terminal header)."""

    header: str
    key: str
    kind: str  # text | int | pair | pct | pct_ci | delta_ci | delta | mm | p | p_sig | r | hours | counts
    best: str | None = None  # "max" | "min": bold the best row
    short: str = ""

    @property
    def label(self) -> str:
        return self.short or self.header


@dataclass(frozen=True)
class Section:
    """One table of the rendered view: a title, its columns and a caption (``arms_only``:
    without the baseline row)."""

    title: str
    columns: list[Column]
    caption: str
    arms_only: bool = False


class AblationTable(Protocol):
    """What the renderers read of a :class:`vrsearch.results.table_model.AblationTable`
    (which imports this module, not the other way round)."""

    frame: Any
    baseline: str
    split: str
    slice: str

    def sections(self) -> list[Section]: ...
    def cells(self, cols: list[Column], arms_only: bool = False) -> list[list[tuple[str, bool]]]: ...
    def headline_columns(self) -> list[Column]: ...
    def budget_columns(self) -> list[Column]: ...
    def metric_columns(self) -> list[Column]: ...
    def class_columns(self) -> list[Column]: ...
    def case_columns(self) -> list[Column]: ...
    def empty_columns(self) -> list[Column]: ...
    def headline_caption(self) -> str: ...
    def case_caption(self) -> str: ...
    def empty_caption(self) -> str: ...


#: widest a group name gets before it folds onto a second line
GROUP_WIDTH = 24

_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "<": r"$<$",
    ">": r"$>$",
    "×": r"$\times$",
    "α": r"$\alpha$",
    "–": "--",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials (``_ % & $ # { } ~ ^ \\``) and map ± Δ < > × α – to LaTeX."""
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def markdown(table: AblationTable) -> str:
    """Every section of ``table`` as a Markdown table under a ``###`` title, caption below."""

    def cell(text: str, bold: bool) -> str:
        text = text.replace("|", r"\|").replace("*", r"\*")
        return f"**{text}**" if bold else text

    out = []
    for s in table.sections():
        lines = [
            f"### {s.title}",
            "",
            "| " + " | ".join(c.header for c in s.columns) + " |",
            "|" + "|".join(":---" if c.kind == "text" else "---:" for c in s.columns) + "|",
        ]
        lines += ["| " + " | ".join(cell(t, b) for t, b in row) + " |" for row in table.cells(s.columns, s.arms_only)]
        out.append("\n".join(lines) + "\n\n" + s.caption.replace("*", r"\*") + "\n")
    return "\n".join(out)


def latex(table: AblationTable) -> str:
    """Every section of ``table`` as a booktabs ``tabular``, title and caption as comments."""

    def cell(text: str, bold: bool) -> str:
        return rf"\textbf{{{latex_escape(text)}}}" if bold else latex_escape(text)

    out = [r"% needs \usepackage{booktabs}"]
    for s in table.sections():
        spec = "".join("l" if c.kind == "text" else "r" for c in s.columns)
        lines = [
            f"% {s.title}: {s.caption}",
            rf"\begin{{tabular}}{{{spec}}}",
            r"\toprule",
            " & ".join(latex_escape(c.header) for c in s.columns) + r" \\",
            r"\midrule",
        ]
        lines += [" & ".join(cell(t, b) for t, b in row) + r" \\" for row in table.cells(s.columns, s.arms_only)]
        out.append("\n".join(lines + [r"\bottomrule", r"\end{tabular}"]))
    return "\n\n".join(out) + "\n"


def _table(
    table: AblationTable,
    cols: list[Column],
    title: str | None = None,
    caption: str | None = None,
    arms_only: bool = False,
) -> Table:
    out = Table(
        title=title,
        caption=caption,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        title_justify="left",
        caption_justify="left",
    )
    for c in cols:
        if c.kind == "text":
            out.add_column(Text(c.label), justify="left", overflow="fold", max_width=GROUP_WIDTH)
        else:
            out.add_column(Text(c.label), justify="right", no_wrap=True)
    for row in table.cells(cols, arms_only):
        out.add_row(*[Text(text, style="bold" if bold else "") for text, bold in row])
    return out


def natural_width(renderable: Any) -> int:
    """Terminal columns ``renderable`` takes when nothing limits it."""
    console = Console(width=100_000, file=io.StringIO(), color_system=None)
    with console.capture() as capture:
        console.print(renderable)
    return max((cell_len(line) for line in capture.get().splitlines()), default=0)


def _fits(table: AblationTable, cols: list[Column], width: int) -> bool:
    return natural_width(_table(table, cols)) <= width


def _chunks(table: AblationTable, first: list[Column], cols: list[Column], width: int) -> Iterator[list[Column]]:
    """``cols`` cut into runs that fit in ``width`` after the ``first`` columns (at least one each)."""
    chunk: list[Column] = []
    for c in cols:
        if chunk and not _fits(table, first + chunk + [c], width):
            yield chunk
            chunk = []
        chunk.append(c)
    if chunk:
        yield chunk


def _has_values(table: AblationTable, col: Column) -> bool:
    values = table.frame[col.key] if col.key in table.frame else []
    return any(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def terminal_view(table: AblationTable, width: int, classes: bool = False) -> list[Table]:
    """The rich tables ``vrsearch table`` prints, in order (see the module docstring)."""
    budget = table.budget_columns()
    cols = table.headline_columns() + budget[:2]
    for col in budget[2:] + table.metric_columns():
        if _has_values(table, col) and _fits(table, cols + [col], width):
            cols.append(col)
    per_class = table.class_columns()
    inline = bool(per_class) and _fits(table, cols + per_class, width)
    caption = table.headline_caption()
    if inline:
        cols += per_class
    elif per_class and not classes:
        caption += (
            f" {len(per_class)} per-class Dice columns do not fit in {width} columns: --classes shows "
            "them (table.md and table.csv have them)."
        )
    where = f", {table.slice}" if table.slice else ""
    out = [_table(table, cols, f"Ablation vs {table.baseline} ({table.split}{where}): headline", caption)]
    if len(table.frame) > 1:
        out.append(
            _table(
                table,
                table.case_columns(),
                "Case-level view: on these trained models",
                table.case_caption(),
                arms_only=True,
            )
        )
    if classes:
        group = cols[:1]
        if not inline:
            out += _split(table, group, per_class, width, "Per-class Dice (%)")
        out += _split(
            table,
            group + [Column("Rows", "rows_per_class", "int")],
            table.empty_columns(),
            width,
            "Empty masks per class (pred_empty/label_empty)",
            table.empty_caption(),
        )
    return out


def _split(
    table: AblationTable, first: list[Column], cols: list[Column], width: int, title: str, caption: str | None = None
) -> list[Table]:
    """``first`` + ``cols`` as tables that each fit in ``width`` ("(i/k)" in the titles when k > 1)."""
    parts = list(_chunks(table, first, cols, width))
    return [
        _table(
            table,
            first + chunk,
            title + (f" ({i}/{len(parts)})" if len(parts) > 1 else ""),
            caption if i == len(parts) else None,
        )
        for i, chunk in enumerate(parts, 1)
    ]
