"""One self-contained HTML report of a run directory (``vrsearch report``).

The page embeds plotly.js once in its ``<head>`` and every figure of
:mod:`vrsearch.report.figures` as a ``<div>``: it opens offline, loads nothing
from the network and fetches no MathJax. Sections appear only when they apply:

* **Overview** — always: study, method, dataset, design, trial counts, compute,
  the best configuration *by validation Dice* and its val and test metrics;
* **Optimisation history, Parallel coordinates, Slices, Contour, Hyperparameter
  importance** — designs ``search``/``grid``/``random`` with searched knobs (Optuna's
  figures of the run's Optuna study, :mod:`vrsearch.report.sections`);
* **Learning curves, Loss terms** — when the history has values;
* **Ablation table, Per-class Dice, Per-case Dice** — when completed trials
  have test metrics;
* **Sampler comparison** — when ``method.params.sampler`` varies;
* **Replayed searches** — after ``vrsearch replay`` (:mod:`vrsearch.report.replay_view`).

The page is rendered by Jinja2 with autoescape (``templates/``): every user-controlled
string (study name, knobs, groups, errors) is escaped. Protocol rule: nothing is
selected or ranked by a test metric; "best" always means best ``best_val_dice``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from vrsearch.errors import VrsearchError
from vrsearch.report import blocks as B
from vrsearch.report import figures as F
from vrsearch.report import replay_view, sections
from vrsearch.report.sections import METRIC, conventions_text
from vrsearch.results import faults, io
from vrsearch.results.rundir import REPORT_FILE, RunDir
from vrsearch.results.table import load_tables
from vrsearch.results.table_model import AblationTable

SEARCH_DESIGNS = ("search", "grid", "random")

__all__ = [
    "REPORT_FILE",
    "build_report",
    "conventions_text",
    "optuna_storage",
    "searched_knobs",
    "table_html",
    "write_report",
]


def searched_knobs(results: io.Results) -> list[str]:
    """Knobs of the study present as ``config.<key>`` columns: the search
    space's keys, then the dotted keys that ablation arms set."""
    search = (results.study or {}).get("search") or {}
    keys = list((search.get("space") or {}).keys())
    for arm in search.get("arms") or []:
        if isinstance(arm, dict) and isinstance(arm.get("set"), dict):
            keys += list(io.flatten(arm["set"]).keys())
    return [k for k in dict.fromkeys(keys) if f"config.{k}" in results.trials.columns]


def table_html(table: AblationTable) -> str:
    """The ablation tables of ``table`` as HTML (:func:`vrsearch.report.sections.table_blocks`)."""
    return B.render_blocks([sections.table_blocks(table)])


def optuna_storage(run_dir: Path, study: dict) -> str | None:
    """The run's Optuna storage: ``search.storage`` (any SQLAlchemy URL, e.g. an external
    database), else the run directory's SQLite file if there is one."""
    external = (study.get("search") or {}).get("storage")
    if external:
        return str(external)
    run = RunDir(Path(run_dir).resolve())
    return run.optuna_url(None) if run.optuna_file.is_file() else None


def _guard(key: str, title: str, make: Callable[[], list[B.Section]]) -> list[B.Section]:
    """Sections from ``make()``; an unexpected error becomes a visible note, not a crash."""
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 - a half-written running study must still render
        return [B.Section(key, title, [B.warn(f"Could not render: {type(exc).__name__}: {exc}")])]


def _figure(key: str, title: str, make: Callable[[], object]) -> list[B.Section]:
    return _guard(key, title, lambda: [B.Section(key, title, [B.figure(make())])])


def _has_values(frame: pd.DataFrame, columns: list[str]) -> bool:
    return any(pd.to_numeric(frame[c], errors="coerce").notna().any() for c in columns if c in frame.columns)


def _ablation(run_dir: Path, results: io.Results) -> list[B.Section]:
    try:
        tables = load_tables(run_dir)
    except VrsearchError:
        return []
    return sections.ablation(tables, results)


def report_sections(run_dir: Path, results: io.Results, name: str) -> list[B.Section]:
    """The sections that apply to this run, in page order (see the module docstring)."""
    trials, history = results.trials, results.history
    knobs = searched_knobs(results)
    design = (results.study.get("search") or {}).get("design", "none")
    out = _guard(
        "overview", "Overview", lambda: [B.Section("overview", "Overview", sections.overview(results, name, knobs))]
    )
    if design in SEARCH_DESIGNS and knobs and _has_values(trials, [METRIC]):
        storage = optuna_storage(run_dir, results.study)
        out += _guard("history", "Search", lambda: sections.search(storage, results, knobs))
    if _has_values(history, ["val_dice"]):
        out += _figure("curves", "Learning curves", lambda: F.learning_curves(history, trials))
    if _has_values(history, [c for c in history.columns if c == "loss" or c.startswith("term_")]):
        out += _figure(
            "terms", "Loss terms", lambda: F.loss_terms(history, trials, descriptions=F.term_descriptions(trials))
        )
    out += _guard("ablation", "Ablation table", lambda: _ablation(run_dir, results))
    out += _guard("replay", "Replayed searches", lambda: replay_view.report_section(run_dir))
    sampler = trials[F.SAMPLER].dropna().astype(str).nunique() if F.SAMPLER in trials.columns else 0
    if sampler >= 2 and "term_contrast" in history.columns:
        out += _figure("sampler", "Sampler comparison", lambda: F.sampler_panel(history, trials, "term_contrast"))
    return out


def build_report(run_dir: Path | str, label: str | None = None) -> str:
    """The report of ``run_dir`` as one self-contained HTML string (``label``: what the page
    says it reports on, e.g. the storage URI a temporary copy came from)."""
    run_dir = Path(run_dir)
    results = io.load(run_dir)
    name = str(results.study.get("name") or run_dir.name)
    return B.render_page(name, str(label or run_dir), report_sections(run_dir, results, name))


def write_report(run_dir: Path | str, out: Path | str | None = None, label: str | None = None) -> Path:
    """Write the report (default ``<run_dir>/report.html``; a directory ``out``
    gets ``report.html`` inside) atomically and return its path."""
    path = Path(out) if out is not None else Path(run_dir) / REPORT_FILE
    if path.is_dir():
        path = path / REPORT_FILE
    text = build_report(run_dir, label)
    faults.point("report")
    try:
        io.write_text_atomic(path, text)
    except OSError as exc:
        raise VrsearchError(f"{path}: cannot write the report ({exc.strerror or exc})") from None
    return path
