"""The sections of the HTML report (:mod:`vrsearch.report.html`), each a list of blocks
(:mod:`vrsearch.report.blocks`): overview, search figures, ablation tables.

Protocol rule: nothing is selected or ranked by a test metric; "best" always means best
``best_val_dice``.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from vrsearch.report import blocks as B
from vrsearch.report import figures as F
from vrsearch.report.studies import completed, evaluate, stored_study, trials_study, varying
from vrsearch.results import io
from vrsearch.results.stats import group_labels, select_best
from vrsearch.results.table_model import AblationTable

METRIC, MODE = "best_val_dice", "max"


def _num(x: Any, fmt: str = ".4f") -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "—"
    return format(x, fmt) if math.isfinite(x) else "—"


def conventions_text(conventions: dict) -> str:
    """One line on the metric conventions a run's cases were scored with."""

    def one(c: dict) -> str:
        return (
            f"v{c.get('version', '?')}: class absent from truth and prediction → "
            f"{c.get('both_empty_rule', '?')}; missed or spurious class → {c.get('missed_or_spurious', '?')}"
        )

    if not conventions:
        return "not recorded"
    if "mixed" in conventions:
        return "mixed, trials were scored differently: " + " / ".join(one(c) for c in conventions["mixed"])
    return one(conventions)


def _design_text(search: dict) -> str:
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
    return str(design) + (f" ({'; '.join(detail)})" if detail else "")


def _compute_text(trials: pd.DataFrame) -> str:
    wall = pd.to_numeric(trials.get("wall_time_s", pd.Series(dtype=float)), errors="coerce").sum() / 3600
    device = pd.to_numeric(trials.get("device_hours", pd.Series(dtype=float)), errors="coerce")
    return f"{wall:.2f} wall-clock hours (sum over trials); " + (
        f"{device.sum():.2f} device-hours" if device.notna().any() else "device-hours not recorded"
    )


def arm_settings(search: dict) -> dict:
    """The arms of an ablation, each with the settings it changes (a list value)."""
    pairs = [("baseline", "the study as written")]
    for arm in search.get("arms") or []:
        if isinstance(arm, dict):
            changes = io.flatten(arm["set"]) if isinstance(arm.get("set"), dict) else {}
            pairs.append(
                (str(arm.get("name", "?")), ", ".join(f"{k} = {v}" for k, v in changes.items()) or "no change")
            )
    return B.items(pairs)


def overview(results: io.Results, name: str, knobs: list[str]) -> list[B.Block]:
    """What was run (study, method, dataset, design, trial counts, compute, conventions), the
    best configuration by validation Dice and the failed trials with their errors."""
    study, trials = results.study, results.trials
    search, dataset = study.get("search") or {}, study.get("dataset") or {}
    method = (study.get("method") or {}).get("name")
    if not method and "method" in trials.columns:
        method = ", ".join(str(m) for m in pd.unique(trials["method"].dropna()))
    status = trials["status"].astype(str).value_counts() if "status" in trials.columns else pd.Series(dtype=int)
    rows: list[tuple[str, Any]] = [("Study", name)]
    if study.get("description"):
        rows.append(("Description", str(study["description"])))
    rows += [
        ("Method", method or "—"),
        ("Dataset", f"layout {dataset.get('layout', '—')}, labeled ratio {dataset.get('labeled_ratio', '—')}"),
        ("Design", _design_text(search)),
        ("Arm settings", arm_settings(search))
        if search.get("design") == "ablation"
        else ("Searched knobs", ", ".join(knobs) if knobs else "—"),
        ("Trials", f"{len(trials)} in all" + "".join(f"; {s}: {n}" for s, n in status.items())),
        ("Compute", _compute_text(trials)),
        ("Metric conventions", conventions_text(results.conventions)),
    ]
    out = [B.kv(rows), B.heading("Best configuration (selected by validation Dice)"), *best(trials, knobs)]
    failed = trials.loc[trials["status"] == "failed"] if "status" in trials.columns else trials.iloc[0:0]
    if len(failed):
        out += [
            B.heading("Failed trials"),
            B.failed([(str(r.trial_id), str(r.error or "")[:500]) for r in failed.itertuples()]),
        ]
    return out


def best(trials: pd.DataFrame, knobs: list[str]) -> list[B.Block]:
    """The trial with the best validation Dice: its knobs, validation and test metrics."""
    try:
        top = select_best(trials, METRIC, MODE)
    except ValueError:
        return [B.note("No completed trial with a validation Dice yet.")]
    group = group_labels(trials.loc[[top.name]]).iloc[0]
    rows: list[tuple[str, Any]] = [("Trial", B.code(top["trial_id"]))]
    if group != top.get("cell"):  # a search cell is shown knob by knob below
        rows.append(("Group", group))
    rows.append(("Seed", top.get("seed")))
    rows += [(k, top.get(f"config.{k}")) for k in knobs]
    rows += [
        ("Best validation Dice", f"{_num(top.get('best_val_dice'))} at iteration {top.get('best_iteration')}"),
        ("Final validation Dice", _num(top.get("final_val_dice"))),
        ("Test Dice / Jaccard", f"{_num(top.get('test_dice'))} / {_num(top.get('test_jaccard'))}"),
        ("Test HD95 / ASSD (mm)", f"{_num(top.get('test_hd95_mm'), '.2f')} / {_num(top.get('test_assd_mm'), '.2f')}"),
    ]
    return [
        B.kv(rows),
        B.note(
            "Selection uses validation metrics only; the test metrics of the selected trial "
            "are reported, never used to choose."
        ),
    ]


def search(storage: str | None, results: io.Results, knobs: list[str]) -> list[B.Section]:
    """Optimisation history, parallel coordinates, slices, contour and importance: Optuna's
    figures of the stored study when it has completed trials, else of a study built from
    the trials; the slices (mean ± std over seeds) from the trials."""
    trials, spec = results.trials, results.study.get("search") or {}
    study, reason = stored_study(storage, str(results.study.get("name") or "")) if storage else (None, "")
    if study is not None and completed(study):
        target = f"search metric {spec.get('metric', '?')}"
        source = (
            f"the stored Optuna study: one trial per configuration, its value the {target} "
            f"({spec.get('aggregate', 'mean')} over seeds) as the searcher saw it; x = Optuna's trial number"
        )
    else:
        study, target = trials_study(trials, knobs, METRIC, MODE, spec.get("space") or {}), METRIC
        source = (
            f"an in-memory Optuna study of the trials ({METRIC}, one point per trial, early-stopped ones "
            "with their value when stopped), in the order of trials.parquet"
            + (f"; the stored study is not used: {reason}" if reason else "")
        )
    imp, evaluator = evaluate(study)
    out = [
        B.Section(
            "history",
            "Optimisation history",
            [B.note(f"Optuna's figures draw {source}."), B.figure(F.optimisation_history(study, target))],
        ),
        B.Section("parallel", "Parallel coordinates", [B.figure(F.parallel_coordinates(study, target))]),
        B.Section("slices", "Slices", [B.figure(F.slices(trials, knobs, METRIC))]),
    ]
    moving = varying(study)
    if len(moving) >= 2:
        ranked = sorted(moving, key=lambda k: -imp.get(k, -1.0)) if imp else moving
        what = "most important" if imp else "first"
        out.append(
            B.Section(
                "contour",
                "Contour",
                [
                    B.note(
                        f"The two {what} varying knobs; each grid point is the best trial there, Optuna's contour "
                        "interpolates between them (a guide to the eye)."
                    ),
                    B.figure(F.contour(study, ranked[0], ranked[1], target)),
                ],
            )
        )
    text = f"Evaluator: {evaluator}; objective: {target}." if imp else f"Not computed: {evaluator}."
    out.append(
        B.Section(
            "importance",
            "Hyperparameter importance",
            [B.note(text), *([B.figure(F.importance(study, target))] if imp else [])],
        )
    )
    return out


def table_blocks(table: AblationTable) -> B.Block:
    """The ablation tables of one :class:`AblationTable`, one per :meth:`AblationTable.sections`:
    the headline first (verdict columns leftmost), then the case-level view, per-class Dice
    and empty-mask counts; best values bold."""
    return B.table(
        [
            (
                s,
                [
                    [(col.kind == "text", text, bold) for col, (text, bold) in zip(s.columns, row)]
                    for row in table.cells(s.columns, s.arms_only)
                ],
            )
            for s in table.sections()
        ]
    )


def ablation(tables: list[AblationTable], results: io.Results) -> list[B.Section]:
    """The ablation tables, the per-class Dice heatmaps (per dataset-axis setting) and the
    per-case Dice boxes."""
    body: list[B.Block] = []
    maps: list[B.Block] = []
    for t in tables:
        heading = [B.heading(t.slice)] if t.slice else []
        body += heading + [table_blocks(t)]
        maps += heading + [B.figure(F.class_heatmap(t.frame, t.classes))]
    return [
        B.Section("ablation", "Ablation table", body),
        B.Section("classes", "Per-class Dice", maps),
        B.Section("cases", "Per-case Dice", [B.figure(F.case_boxes(results.trials, results.cases, "test"))]),
    ]
