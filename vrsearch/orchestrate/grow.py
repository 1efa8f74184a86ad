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

Also here: which Tune experiments a run holds, and whether the latest one
can be restored (:func:`restorable`) or must be replaced by a new one.
"""

from __future__ import annotations

import json
import pickletools
import re
import shutil
from pathlib import Path

from vrsearch.results import fragments, io
from vrsearch.study.design import SEED_KEY, apply_cell, config_hash
from vrsearch.study.schema import Study

FINISHED = ("completed", "failed", "stopped_early")
#: what a grown study may change: the design's extent, never what a cell measures
GROWABLE = {"description", "resources", "output", "search.seeds", "search.arms", "search.space",
            "search.axes", "search.num_samples"}
_EXPERIMENT = re.compile(r"^tune(?:-(\d+))?$")


def _growable(key: str) -> bool:
    return any(key == g or key.startswith(g + ".") for g in GROWABLE)


def growth_problem(old: Study, new: Study) -> str | None:
    """Why ``new`` cannot grow the run of ``old`` (None if it can)."""
    a, b = io.flatten(old.model_dump(mode="json")), io.flatten(new.model_dump(mode="json"))
    changed = sorted(k for k in set(a) | set(b) if not _growable(k) and a.get(k, "<unset>") != b.get(k, "<unset>"))
    if changed:
        shown = "; ".join(f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}" for k in changed[:3])
        more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
        return (f"{new.run_dir} holds a run of study {old.name!r} that this study cannot grow: it changes "
                f"{shown}{more}, so the finished trials would not be comparable; set output.dir elsewhere "
                "or pass --fresh to replace them")
    old_arms = {arm.name: arm.set for arm in old.search.arms}
    for arm in new.search.arms:
        if arm.name in old_arms and old_arms[arm.name] != arm.set:
            return (f"search.arms.{arm.name}: its settings changed since the trials in {new.run_dir} ran; "
                    "give the changed arm a new name (or pass --fresh)")
    if new.search.design == "search":
        return ("a 'search' study cannot be grown in place (Optuna's history belongs to the old space); "
                f"set output.dir elsewhere, pass --fresh, or continue it with 'vrsearch resume {new.run_dir}'")
    return None


def finished_metas(run_dir: Path) -> list[dict]:
    """``meta.json`` of every trial in ``run_dir`` that ended (its fragments say so)."""
    done = []
    for d in sorted((Path(run_dir) / fragments.TRIALS_DIR).glob("*/")):
        meta = fragments.read_json(d / "meta.json") or {}
        ended = fragments.read_json(d / "result.json") or fragments.read_json(d / "status.json") or {}
        if meta.get("config_hash") and ended.get("status") in FINISHED:
            done.append(meta)
    return done


def finished_hashes(run_dir: Path) -> set[str]:
    """Identities of the trials in ``run_dir`` that ended."""
    return {meta["config_hash"] for meta in finished_metas(run_dir)}


def pending_cells(base: dict, cells: list[dict], done: set[str]) -> list[dict]:
    """The cells (with ``train.seed``) whose trial identity is not in ``done``."""
    out = []
    for cell in cells:
        knobs = {k: v for k, v in cell.items() if k != SEED_KEY}
        if config_hash(apply_cell(base, knobs, cell.get(SEED_KEY))) not in done:
            out.append(cell)
    return out


def remove_unfinished(run_dir: Path) -> int:
    """Drop fragments and checkpoints of trials that never ended (an interrupted
    experiment's leftovers, which a new experiment runs again under new ids)."""
    n = 0
    for d in sorted((Path(run_dir) / fragments.TRIALS_DIR).glob("*/")):
        if not ((d / "result.json").exists() or (d / "status.json").exists()):
            shutil.rmtree(d, ignore_errors=True)
            shutil.rmtree(Path(run_dir) / "checkpoints" / d.name, ignore_errors=True)
            n += 1
    return n


def experiments(run_dir: Path) -> list[str]:
    """Tune experiment directories of a run, oldest first."""
    found = [(int(m.group(1) or 1), p.name) for p in Path(run_dir).glob("tune*")
             if p.is_dir() and (m := _EXPERIMENT.match(p.name))]
    return [name for _, name in sorted(found)]


def next_experiment(run_dir: Path) -> str:
    done = experiments(run_dir)
    return "tune" if not done else f"tune-{int(_EXPERIMENT.match(done[-1]).group(1) or 1) + 1}"


def restorable(experiment_dir: Path) -> bool:
    """Whether Tune can resume this experiment. ``Tuner.can_restore`` only looks for
    ``tuner.pkl``, written before the first ``experiment_state-*.json``, and Tune copies
    its state files in place (a kill can truncate one); when restoring fails, Tune logs
    it and starts a new experiment from the bare study. So: an experiment state, every
    one parsing as JSON, and every pickled state file (tuner, searcher, callbacks)
    complete — checked opcode by opcode with ``pickletools``, nothing is unpickled."""
    states = sorted(experiment_dir.glob("experiment_state-*.json"))
    pickles = [p for p in experiment_dir.glob("*") if p.is_file() and p not in states
               and (p.suffix == ".pkl" or p.name.startswith("basic-variant-state-"))]
    if not states or not any(p.name == "tuner.pkl" for p in pickles):
        return False
    try:
        for path in states:
            json.loads(path.read_text(encoding="utf-8"))
        for path in pickles:
            for _ in pickletools.genops(path.read_bytes()):
                pass
    except (OSError, ValueError):
        return False
    return True
