"""Growing a finished (or interrupted) study in place.

``vrsearch run`` on a run directory that holds an earlier version of the same
study — more seeds, new arms, new grid values, new dataset axes — runs only
the cells whose trial identity (:func:`~vrsearch.study.design.config_hash`
of the resolved method/dataset/model/train sections, seed included) has no
finished trial yet, in a new Tune experiment (``tune``, ``tune-2``, ...) next
to the earlier ones. Finished means ``completed``, ``failed`` (a diverged
configuration fails again) or ``stopped_early``.

An edit that changes what the old cells measured — the data, the model, the
schedule, the method's baseline settings, the metric, or the settings of an
arm that keeps its name — is refused: old and new trials would sit in one
table without being comparable.

Also here: which trials of a run directory ended (:func:`finished_metas`), and
the clean-up before a new experiment (:func:`remove_unfinished`).
"""

from __future__ import annotations

import shutil

from vrsearch.results import fragments, io
from vrsearch.results.rundir import META_FILE, RunDir
from vrsearch.study.design import SEED_KEY, apply_cell, config_hash
from vrsearch.study.schema import Study

#: what a grown study may change: the design's extent, never what a cell measures
GROWABLE = {
    "description",
    "resources",
    "output",
    "search.seeds",
    "search.arms",
    "search.space",
    "search.axes",
    "search.num_samples",
}


def _growable(key: str) -> bool:
    return any(key == g or key.startswith(g + ".") for g in GROWABLE)


def growth_problem(old: Study, new: Study) -> str | None:
    """Why ``new`` cannot grow the run of ``old`` (None if it can)."""
    a, b = io.flatten(old.model_dump(mode="json")), io.flatten(new.model_dump(mode="json"))
    changed = sorted(k for k in set(a) | set(b) if not _growable(k) and a.get(k, "<unset>") != b.get(k, "<unset>"))
    if changed:
        shown = "; ".join(f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}" for k in changed[:3])
        more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
        return (
            f"{new.run_dir} holds a run of study {old.name!r} that this study cannot grow: it changes "
            f"{shown}{more}, so the finished trials would not be comparable; set output.dir elsewhere "
            "or pass --fresh to replace them"
        )
    old_arms = {arm.name: arm.set for arm in old.search.arms}
    for arm in new.search.arms:
        if arm.name in old_arms and old_arms[arm.name] != arm.set:
            return (
                f"search.arms.{arm.name}: its settings changed since the trials in {new.run_dir} ran; "
                "give the changed arm a new name (or pass --fresh)"
            )
    if new.search.design == "search":
        return (
            "a 'search' study cannot be grown in place (Optuna's history belongs to the old space); "
            f"set output.dir elsewhere, pass --fresh, or continue it with 'vrsearch resume {new.run_dir}'"
        )
    return None


def finished_metas(run: RunDir) -> list[dict]:
    """``meta.json`` of every trial in ``run`` that ended (its fragments say so)."""
    done = []
    for d in sorted(run.fragments.glob("*/")):
        meta = fragments.read_json(d / META_FILE) or {}
        if meta.get("config_hash") and fragments.ended(d) is not None:
            done.append(meta)
    return done


def finished_hashes(run: RunDir) -> set[str]:
    """Identities of the trials in ``run`` that ended."""
    return {meta["config_hash"] for meta in finished_metas(run)}


def pending_cells(base: dict, cells: list[dict], done: set[str]) -> list[dict]:
    """The cells (with ``train.seed``) whose trial identity is not in ``done``."""
    out = []
    for cell in cells:
        knobs = {k: v for k, v in cell.items() if k != SEED_KEY}
        if config_hash(apply_cell(base, knobs, cell.get(SEED_KEY))) not in done:
            out.append(cell)
    return out


def remove_unfinished(run: RunDir) -> int:
    """Drop the fragments of trials that never ended (an interrupted experiment's
    leftovers): their configurations run again under new trial ids and continue from
    their checkpoints, which are kept (keyed by configuration, not by trial)."""
    n = 0
    for d in sorted(run.fragments.glob("*/")):
        if fragments.ended(d) is None:
            shutil.rmtree(d, ignore_errors=True)
            n += 1
    return n
