"""``vrsearch train``: one trial in this process, results in the run directory.

The run directory gets the resolved ``study.yaml`` first, checkpoints while
training, and the three parquet files (atomically) at the end. Starting the
same study again continues from the last checkpoint; a different study in
the same directory is refused rather than overwritten, and so is a directory
that holds a study run by ``vrsearch run`` (its trials.parquet would be
replaced by this one trial's) or that another vrsearch process is using.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

from vrsearch.engine.trainer import Trainer
from vrsearch.engine.trial import TrialOutput, run_trial
from vrsearch.errors import VrsearchError
from vrsearch.results import io
from vrsearch.results.claim import claim_run_dir, refuse_other_study
from vrsearch.results.fragments import write_cases
from vrsearch.results.lock import run_lock
from vrsearch.results.rundir import RunDir
from vrsearch.study import Study, load_study, study_to_yaml

TRIAL_ID = "train"


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def train_single(
    study_path: Path, overrides: Iterable[str], *, fresh: bool = False, echo: Callable[[str], None] = print
) -> TrialOutput:
    study = load_study(study_path, overrides)
    run_dir, run = study.run_dir, RunDir(study.run_dir)
    # refused before the trainer prepares data into the directory's cache/ ...
    _refuse_a_study_run(run)
    refuse_other_study(run_dir, study_to_yaml(study), fresh)
    with run_lock(run_dir):  # one process per run directory, as 'vrsearch run' (results/lock.py)
        _refuse_a_study_run(run)
        trainer = Trainer(study, run.checkpoint(TRIAL_ID))  # ... and all data checked before anything is written
        claim_run_dir(run_dir, study_to_yaml(study), fresh)
        return _train(study, trainer, run.checkpoint(TRIAL_ID), echo)


def _refuse_a_study_run(run: RunDir) -> None:
    """A directory with a ``vrsearch run`` study: this trial's trials.parquet would replace the study's."""
    if run.experiments() or run.fragments.exists():
        raise VrsearchError(
            f"{run.path} holds a study run by 'vrsearch run' (--fresh too would replace its results); "
            "train this trial in a directory of its own: --set output.dir=DIR"
        )


def _train(study: Study, trainer: Trainer, ckpt: Path, echo: Callable[[str], None]) -> TrialOutput:
    run_dir = study.run_dir
    total = study.train.iterations
    best = [-math.inf]

    def report(r: dict) -> None:
        best[0] = max(best[0], r.get("val_dice", -math.inf)) if r["iteration"] > 0 else best[0]
        loss = f"loss {r['loss']:.4f}  " if "loss" in r else ""
        echo(
            f"it {r['iteration']:>6}/{total}  {loss}val dice {_fmt(r.get('val_dice'))}  "
            f"(best {_fmt(best[0] if best[0] > -math.inf else None)})  {r.get('time_s', 0):.0f}s"
        )

    out = run_trial(study, TRIAL_ID, ckpt, report=report, trainer=trainer)
    io.write_frame(run_dir / io.TRIALS_FILE, io.frame([out.trial], io.TRIAL_COLUMNS))
    io.write_frame(run_dir / io.HISTORY_FILE, io.frame(out.history, io.HISTORY_COLUMNS))
    write_cases(run_dir / io.CASES_FILE, io.frame(out.cases, io.CASE_COLUMNS), io.trial_conventions(out.trial))
    t = out.trial
    start = next((r.get("val_dice") for r in out.history if r["iteration"] == 0 and "val_dice" in r), None)
    echo(
        f"{t['status']}: best val dice {_fmt(t['best_val_dice'])} at iteration {t['best_iteration']} "
        f"(untrained {_fmt(start)}); test dice {_fmt(t['test_dice'])}; {t['wall_time_s']:.0f}s"
    )
    echo(f"results in {run_dir}")
    return out
