"""One self-contained HTML report of a run directory (``vrsearch report``).

The page embeds plotly.js once in its ``<head>`` and every figure of
:mod:`vrsearch.report.figures` as a ``<div>``: it opens offline, loads nothing
from the network and fetches no MathJax. Sections appear only when they apply:

* **Overview** — always: study, method, dataset, design, trial counts, compute,
  the best configuration *by validation Dice* and its val and test metrics;
* **Optimisation history, Parallel coordinates, Slices, Contour, Hyperparameter
  importance** — designs ``search``/``grid``/``random`` with searched knobs;
* **Learning curves, Loss terms** — when the history has values;
* **Ablation table, Per-class Dice, Per-case Dice** — when completed trials
  have test metrics;
* **Sampler comparison** — when ``method.params.sampler`` varies.

Every user-controlled string (study name, knobs, groups, errors) goes through
:func:`html.escape`. Protocol rule: nothing is selected or ranked by a test
metric; "best" always means best ``best_val_dice``.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import pandas as pd
import plotly.io as pio
from plotly.offline import get_plotlyjs

from vrsearch.errors import VrsearchError
from vrsearch.report import figures as F
from vrsearch.report import importance as I  # noqa: E741
from vrsearch.results import faults, io
from vrsearch.results.rundir import REPORT_FILE, RunDir
from vrsearch.results.stats import group_labels, select_best
from vrsearch.results.table import AblationTable, load_tables

METRIC, MODE = "best_val_dice", "max"
SEARCH_DESIGNS = ("search", "grid", "random")
_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ddd;padding:.25em .6em}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}caption{caption-side:bottom;
text-align:left;color:#555;font-size:.85em;padding-top:.4em}nav a{margin-right:1em}.note{color:#555}
.warn{color:#a00}.wide{overflow-x:auto}"""


def esc(value) -> str:
    """HTML-escape any value's text (quotes included)."""
    return html.escape(str(value), quote=True)


def _num(x, fmt: str = ".4f") -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "—"
    return format(x, fmt) if math.isfinite(x) else "—"


def searched_knobs(results: io.Results) -> list[str]:
    """Knobs of the study present as ``config.<key>`` columns: the search
    space's keys, then the dotted keys that ablation arms set."""
    search = (results.study or {}).get("search") or {}
    keys = list((search.get("space") or {}).keys())
    for arm in search.get("arms") or []:
        if isinstance(arm, dict) and isinstance(arm.get("set"), dict):
            keys += list(io.flatten(arm["set"]).keys())
    return [k for k in dict.fromkeys(keys) if f"config.{k}" in results.trials.columns]


def figure_html(fig) -> str:
    """A figure as a ``<div>`` + inline script (no plotly.js, no MathJax, no links out)."""
    height = int(fig.layout.height or 450)
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, include_mathjax=False,
                       config={"displaylogo": False, "responsive": True}, default_height=f"{height}px")


def _kv_table(rows: list[tuple[str, str]]) -> str:
    """Rows of (escaped label, already-safe HTML value)."""
    return "<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def table_html(table: AblationTable) -> str:
    """The ablation tables as HTML, one per :meth:`AblationTable.sections`: the headline
    first (verdict columns leftmost, on screen without scrolling), then the case-level
    view, per-class Dice and empty-mask counts (those may scroll sideways); cells
    escaped, best values bold."""
    out = ""
    for section in table.sections():
        cols = section.columns
        head = "".join(f"<th>{esc(c.header)}</th>" for c in cols)
        body = ""
        for row in table.cells(cols, section.arms_only):
            cells = [(f'<td class="text">' if col.kind == "text" else '<td class="num" style="white-space:nowrap">')
                     + (f"<strong>{esc(text)}</strong>" if bold else esc(text)) + "</td>"
                     for col, (text, bold) in zip(cols, row)]
            body += "<tr>" + "".join(cells) + "</tr>"
        out += (f'<h4>{esc(section.title)}</h4><div class="wide"><table class="ablation"><caption>'
                f"{esc(section.caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")
    return out


def _overview(results: io.Results, name: str, knobs: list[str]) -> str:
    study, trials = results.study, results.trials
    search, dataset = study.get("search") or {}, study.get("dataset") or {}
    method = (study.get("method") or {}).get("name")
    if not method and "method" in trials.columns:
        method = ", ".join(str(m) for m in pd.unique(trials["method"].dropna()))
    design = search.get("design", "none")
    detail = []
    if design == "search":
        detail.append(f"searcher {search.get('searcher', '?')}, scheduler {search.get('scheduler', '?')}")
    if design in ("search", "random") and search.get("num_samples") is not None:
        detail.append(f"{search['num_samples']} samples")
    if search.get("seeds"):
        detail.append("seeds " + ", ".join(str(s) for s in search["seeds"]))
    for key, values in (search.get("axes") or {}).items():
        detail.append(f"axis {key} ∈ {{{', '.join(str(v) for v in values)}}}")
    status = trials["status"].astype(str).value_counts() if "status" in trials.columns else pd.Series(dtype=int)
    counts = f"{len(trials)} in all" + "".join(f"; {esc(s)}: {n}" for s, n in status.items())
    wall = pd.to_numeric(trials.get("wall_time_s", pd.Series(dtype=float)), errors="coerce").sum() / 3600
    device = pd.to_numeric(trials.get("device_hours", pd.Series(dtype=float)), errors="coerce")
    compute = f"{wall:.2f} wall-clock hours (sum over trials); " + (
        f"{device.sum():.2f} device-hours" if device.notna().any() else "device-hours not recorded")
    rows = [("Study", esc(name))]
    if study.get("description"):
        rows.append(("Description", esc(study["description"])))
    rows += [("Method", esc(method or "—")),
             ("Dataset", f"layout {esc(dataset.get('layout', '—'))}, "
                         f"labeled ratio {esc(dataset.get('labeled_ratio', '—'))}"),
             ("Design", esc(design) + (f" ({esc('; '.join(detail))})" if detail else "")),
             ("Arm settings", _arm_settings(search)) if design == "ablation"
             else ("Searched knobs", esc(", ".join(knobs)) if knobs else "—"),
             ("Trials", counts), ("Compute", esc(compute)),
             ("Metric conventions", esc(conventions_text(results.conventions)))]
    out = _kv_table(rows)
    out += "<h3>Best configuration (selected by validation Dice)</h3>" + _best(trials, knobs)
    failed = trials.loc[trials["status"] == "failed"] if "status" in trials.columns else trials.iloc[0:0]
    if len(failed):
        items = "".join(f"<li><code>{esc(r.trial_id)}</code>: {esc(str(r.error or '')[:500])}</li>"
                        for r in failed.itertuples())
        out += f"<h3>Failed trials</h3><ul>{items}</ul>"
    return out


def _arm_settings(search: dict) -> str:
    """The arms of an ablation, each with the settings it changes (an HTML list)."""
    items = ["<li><strong>baseline</strong>: the study as written</li>"]
    for arm in search.get("arms") or []:
        if not isinstance(arm, dict):
            continue
        changes = io.flatten(arm["set"]) if isinstance(arm.get("set"), dict) else {}
        text = ", ".join(f"{k} = {v}" for k, v in changes.items()) or "no change"
        items.append(f"<li><strong>{esc(arm.get('name', '?'))}</strong>: {esc(text)}</li>")
    return "<ul>" + "".join(items) + "</ul>"


def conventions_text(conventions: dict) -> str:
    """One line on the metric conventions a run's cases were scored with."""
    def one(c: dict) -> str:
        return (f"v{c.get('version', '?')}: class absent from truth and prediction → "
                f"{c.get('both_empty_rule', '?')}; missed or spurious class → {c.get('missed_or_spurious', '?')}")

    if not conventions:
        return "not recorded"
    if "mixed" in conventions:
        return "mixed, trials were scored differently: " + " / ".join(one(c) for c in conventions["mixed"])
    return one(conventions)


def _best(trials: pd.DataFrame, knobs: list[str]) -> str:
    try:
        best = select_best(trials, METRIC, MODE)
    except ValueError:
        return '<p class="note">No completed trial with a validation Dice yet.</p>'
    group = group_labels(trials.loc[[best.name]]).iloc[0]
    rows = [("Trial", f"<code>{esc(best['trial_id'])}</code>")]
    if group != best.get("cell"):  # a search cell is shown knob by knob below
        rows.append(("Group", esc(group)))
    rows.append(("Seed", esc(best.get("seed"))))
    rows += [(k, esc(best.get(f"config.{k}"))) for k in knobs]
    at = esc(best.get("best_iteration"))
    rows += [("Best validation Dice", f"{_num(best.get('best_val_dice'))} at iteration {at}"),
             ("Final validation Dice", _num(best.get("final_val_dice"))),
             ("Test Dice / Jaccard", f"{_num(best.get('test_dice'))} / {_num(best.get('test_jaccard'))}"),
             ("Test HD95 / ASSD (mm)",
              f"{_num(best.get('test_hd95_mm'), '.2f')} / {_num(best.get('test_assd_mm'), '.2f')}")]
    return _kv_table(rows) + ('<p class="note">Selection uses validation metrics only; the test metrics of the '
                              "selected trial are reported, never used to choose.</p>")


def optuna_storage(run_dir: Path, study: dict) -> str | None:
    """The run's Optuna storage: ``search.storage`` (any SQLAlchemy URL, e.g. an external
    database), else the run directory's SQLite file if there is one."""
    external = (study.get("search") or {}).get("storage")
    if external:
        return str(external)
    run = RunDir(Path(run_dir).resolve())
    return run.optuna_url(None) if run.optuna_file.is_file() else None


def _completion_order(storage: str | None, study_name: str, trials: pd.DataFrame) -> pd.Series | None:
    """Completion time of each trial from the Optuna storage (matching Optuna params to
    the trial's ``cell``), or None without storage or matches."""
    if storage is None or "cell" not in trials.columns or not study_name:
        return None
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except Exception:  # noqa: BLE001 - a missing/other-version study just loses the ordering
        return None
    finally:
        optuna.logging.set_verbosity(previous)
    done: dict[str, pd.Timestamp] = {}
    for t in study.trials:
        if t.datetime_complete is not None:
            key = json.dumps(t.params, sort_keys=True, default=str)
            done[key] = min(done.get(key, pd.Timestamp(t.datetime_complete)), pd.Timestamp(t.datetime_complete))

    def key(cell) -> str:
        try:
            return json.dumps(json.loads(cell), sort_keys=True, default=str)
        except (TypeError, ValueError):
            return ""

    order = pd.to_datetime(trials["cell"].map(key).map(done))
    return order if order.notna().any() else None


def _search_sections(run_dir: Path, results: io.Results, name: str, knobs: list[str]) -> list[tuple[str, str, str]]:
    trials, space = results.trials, ((results.study.get("search") or {}).get("space") or {})
    storage = optuna_storage(run_dir, results.study)
    order = _completion_order(storage, str(results.study.get("name") or ""), trials)
    note = ("x: trials in order of completion (Optuna storage)" if order is not None
            else "x: trials in the order of trials.parquet")
    ordered = trials.assign(_completed_at=order) if order is not None else trials
    hist = F.optimisation_history(ordered, METRIC, MODE, order="_completed_at" if order is not None else None)
    out = [("history", "Optimisation history", f'<p class="note">{esc(note)}; points include early-stopped trials '
                                                f"(their value when stopped).</p>" + figure_html(hist)),
           ("parallel", "Parallel coordinates", figure_html(F.parallel_coordinates(trials, knobs, METRIC))),
           ("slices", "Slices", figure_html(F.slices(trials, knobs, METRIC)))]
    if storage is not None:
        imp, evaluator = I.param_importances(storage, str(results.study.get("name") or name))
        objective = "the values stored in the Optuna study (search metric " \
                    f"{(results.study.get('search') or {}).get('metric', '?')})"
    else:
        imp, evaluator = I.trial_importances(trials, knobs, METRIC, MODE, space)
        objective = f"{METRIC} of the trials (in-memory Optuna study)"
    varying = [k for k in knobs if F.knob_values(trials, k)[0].dropna().nunique() >= 2]
    if len(varying) >= 2:
        ranked = sorted(varying, key=lambda k: -imp.get(k, -1.0)) if imp else varying
        out.append(("contour", "Contour", f'<p class="note">The two {"most important" if imp else "first"} varying '
                    f"knobs; contour = inverse-distance interpolation (a guide to the eye).</p>"
                    + figure_html(F.contour(trials, ranked[0], ranked[1], METRIC))))
    text = (f"Evaluator: {esc(evaluator)}; objective: {esc(objective)}." if imp
            else f"Not computed: {esc(evaluator)}.")
    out.append(("importance", "Hyperparameter importance", f'<p class="note">{text}</p>'
                + (figure_html(F.importance(imp, evaluator)) if imp else "")))
    return out


def _ablation_sections(run_dir: Path, results: io.Results) -> list[tuple[str, str, str]]:
    try:
        tables = load_tables(run_dir)
    except VrsearchError:
        return []
    body, maps = "", ""
    for t in tables:
        heading = f"<h3>{esc(t.slice)}</h3>" if t.slice else ""
        body += heading + table_html(t)
        maps += heading + figure_html(F.class_heatmap(t.frame, t.classes))
    return [("ablation", "Ablation table", body), ("classes", "Per-class Dice", maps),
            ("cases", "Per-case Dice", figure_html(F.case_boxes(results.trials, results.cases, "test")))]


def _guard(key: str, title: str, make) -> list[tuple[str, str, str]]:
    """Sections from ``make()``; an unexpected error becomes a visible note, not a crash."""
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 - a half-written running study must still render
        return [(key, title, f'<p class="warn">Could not render: {esc(type(exc).__name__)}: {esc(exc)}</p>')]


def build_report(run_dir: Path | str, label: str | None = None) -> str:
    """The report of ``run_dir`` as one self-contained HTML string (``label``: what the page
    says it reports on, e.g. the storage URI a temporary copy came from)."""
    run_dir = Path(run_dir)
    results = io.load(run_dir)
    trials, history = results.trials, results.history
    name = str(results.study.get("name") or run_dir.name)
    knobs = searched_knobs(results)
    design = (results.study.get("search") or {}).get("design", "none")
    sections = _guard("overview", "Overview", lambda: [("overview", "Overview", _overview(results, name, knobs))])
    has_metric = METRIC in trials.columns and pd.to_numeric(trials[METRIC], errors="coerce").notna().any()
    if design in SEARCH_DESIGNS and knobs and has_metric:
        sections += _guard("history", "Search", lambda: _search_sections(run_dir, results, name, knobs))
    def has(columns) -> bool:
        return any(pd.to_numeric(history[c], errors="coerce").notna().any() for c in columns)

    if "val_dice" in history.columns and has(["val_dice"]):
        sections += _guard("curves", "Learning curves", lambda: [
            ("curves", "Learning curves", figure_html(F.learning_curves(history, trials)))])
    if has([c for c in history.columns if c == "loss" or c.startswith("term_")]):
        sections += _guard("terms", "Loss terms", lambda: [
            ("terms", "Loss terms", figure_html(F.loss_terms(history, trials,
                                                             descriptions=F.term_descriptions(trials))))])
    sections += _guard("ablation", "Ablation table", lambda: _ablation_sections(run_dir, results))
    sampler = trials[F.SAMPLER].dropna().astype(str).nunique() if F.SAMPLER in trials.columns else 0
    if sampler >= 2 and "term_contrast" in history.columns:
        sections += _guard("sampler", "Sampler comparison", lambda: [
            ("sampler", "Sampler comparison", figure_html(F.sampler_panel(history, trials, "term_contrast")))])
    nav = "".join(f'<a href="#{key}">{esc(title)}</a>' for key, title, _ in sections)
    body = "\n".join(f'<section id="{key}"><h2>{esc(title)}</h2>\n{content}\n</section>'
                     for key, title, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{esc(name)} · vrsearch report</title>\n<style>{_CSS}</style>\n"
            f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head>\n<body>\n'
            f"<h1>{esc(name)}</h1>\n<p class=\"note\">vrsearch report of <code>{esc(label or run_dir)}</code></p>\n"
            f"<nav>{nav}</nav>\n{body}\n</body>\n</html>\n")


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
