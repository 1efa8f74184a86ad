"""The pieces of the HTML report and their rendering by Jinja2 (autoescape on).

A section is a key, a title and a list of *blocks*, plain dicts that the macros of
``templates/macros.html.j2`` turn into HTML: every text is escaped there; only plotly's
figure ``<div>`` (:func:`figure`) and plotly.js are :class:`markupsafe.Markup`. No HTML
is assembled in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from plotly.offline import get_plotlyjs

Block = dict[str, Any]

ENV = Environment(
    loader=PackageLoader("vrsearch.report", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


@dataclass
class Section:
    """One ``<section>`` of the report: its anchor, its ``<h2>`` title and its blocks."""

    key: str
    title: str
    blocks: list[Block] = field(default_factory=list)


def note(text: str) -> Block:
    return {"kind": "note", "text": text}


def warn(text: str) -> Block:
    return {"kind": "warn", "text": text}


def heading(text: str) -> Block:
    """An ``<h3>``."""
    return {"kind": "heading", "text": text}


def kv(rows: list[tuple[str, Any]]) -> Block:
    """A two-column table of (label, value); a value is text, ``code(text)`` or ``items(pairs)``."""
    return {"kind": "kv", "rows": rows}


def code(text: Any) -> dict[str, str]:
    """A value shown as ``<code>``."""
    return {"code": str(text)}


def items(pairs: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """A value shown as a list of "**name**: text" items."""
    return {"items": pairs}


def failed(pairs: list[tuple[str, str]]) -> Block:
    """A list of (trial id, error)."""
    return {"kind": "failed", "items": pairs}


def table(sections: list[tuple[Any, list[list[tuple[bool, str, bool]]]]]) -> Block:
    """Ablation tables: per :class:`~vrsearch.results.table_view.Section` its rows of
    (text column?, cell text, bold?)."""
    return {"kind": "table", "sections": sections}


def figure(fig: go.Figure) -> Block:
    """A figure as a ``<div>`` + inline script (no plotly.js, no MathJax, no links out)."""
    height = int(fig.layout.height or 450)
    html = pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        include_mathjax=False,
        config={"displaylogo": False, "responsive": True},
        default_height=f"{height}px",
    )
    return {"kind": "figure", "html": Markup(html)}


def render_blocks(blocks: list[Block]) -> str:
    """The HTML of ``blocks`` alone (e.g. the ablation tables for a test or a notebook)."""
    return str(ENV.get_template("macros.html.j2").module.blocks(blocks))  # type: ignore[attr-defined]


def render_page(name: str, label: str, sections: list[Section]) -> str:
    """The whole report: one HTML file with plotly.js inline in its ``<head>``."""
    page = {"name": name, "label": label, "sections": sections, "plotlyjs": Markup(get_plotlyjs())}
    return ENV.get_template("report.html.j2").render(page=page)
