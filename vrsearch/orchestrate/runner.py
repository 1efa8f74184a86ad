"""``vrsearch run`` / ``vrsearch resume``: a study on Ray Tune.

The driver validates the study and checks every data file *before* Ray
starts, claims the run directory (refusing one that holds another study),
starts a loopback-only local Ray (or joins ``--address``) and runs what the
study still needs in a new Tune experiment (:mod:`vrsearch.orchestrate.experiment`).

Running, resuming and growing (an edited fixed-design study,
:mod:`vrsearch.orchestrate.grow`) are one path: the experiment runs what the
run directory's trial fragments (and Optuna's study) say is still missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from vrsearch.core.config import Echo
from vrsearch.errors import VrsearchError, flat
from vrsearch.orchestrate import grow
from vrsearch.orchestrate.checks import check_study
from vrsearch.orchestrate.experiment import execute, plan, reap_leftovers
from vrsearch.orchestrate.mirror import run_location
from vrsearch.orchestrate.searchers import delete_optuna_study
from vrsearch.results import io, storage
from vrsearch.results.claim import claim_run_dir, refuse_other_study
from vrsearch.results.lock import run_lock
from vrsearch.results.rundir import RunDir
from vrsearch.study import load_study, study_to_yaml
from vrsearch.study.design import n_trials
from vrsearch.study.load import build_study, read_yaml
from vrsearch.study.schema import Study


def discard_trial_state(study: Study, run: RunDir) -> None:
    """Forget a run's trials: Tune's experiments, fragments, checkpoints, Train's folders
    and the Optuna study (``--fresh``)."""
    for name in (*run.experiments(), run.fragments.name, run.checkpoints.name, run.ray_train.name):
        shutil.rmtree(run / name, ignore_errors=True)
    delete_optuna_study(study, run)


def start_over(study: Study, run: RunDir, where: str | None) -> None:
    """``run --fresh``: forget the run here and in its mirror ``where``. Both study.yaml files
    go first, so a command cut off midway leaves no run that ``resume`` (of the directory or
    of the mirror) would take up, and a plain ``run`` refuses the trials left behind: only
    another ``run --fresh`` goes on, and it starts over."""
    run.study.unlink(missing_ok=True)
    if where is not None:
        storage.remove(where)
    discard_trial_state(study, run)
    storage.forget(run.path)


def _refuse_a_stale_copy(study: Study, run: RunDir, where: str | None = None) -> None:
    """One line, before anything here or in the mirror changes, for a copy of the run whose
    mirror another copy took up since (:mod:`vrsearch.results.storage_owner`)."""
    if (mirror := where or run_location(study)) is not None:
        storage.check_owner(run.path, mirror)


def _prior_study(run: RunDir) -> tuple[str, Study] | None:
    path = run.study
    if not path.exists():
        return None
    try:
        return path.read_text(encoding="utf-8"), build_study(read_yaml(path))
    except VrsearchError:
        return None


def run_study(
    study_path: Path, overrides: Iterable[str], *, address: str | None = None, fresh: bool = False, echo: Echo = print
) -> Path:
    study = load_study(study_path, overrides)
    check_study(study, address, warn=lambda line: echo(f"warning: {line}"))
    run = RunDir(study.run_dir)
    prior = None if fresh else _prior_study(run)
    started = bool(run.experiments()) or run.fragments.exists()
    if prior is None and started and not fresh:  # e.g. a 'run --fresh' cut off (start_over)
        raise VrsearchError(f"{run.path} holds trials but no readable {io.STUDY_FILE}; start over with --fresh")
    if prior is not None and started:
        text, old = prior
        if text == study_to_yaml(study):
            raise VrsearchError(
                f"{run.path} already holds a run of this study; continue it with "
                f"'vrsearch resume {run.path}' or start over with --fresh"
            )
        problem = grow.growth_problem(old, study)
        if problem:
            raise VrsearchError(problem)
        with run_lock(run.path):
            reap_leftovers(study, run, address)
            _refuse_a_stale_copy(study, run)
            io.write_text_atomic(run.study, study_to_yaml(study))
            grow.remove_unfinished(run)
            new = plan(study, run).trials
            echo(f"growing {run.path}: {new} new trials, {n_trials(study) - new} finished trials reused")
            return execute(study, run, address, echo)
    where = run_location(study)
    if (
        where is not None
        and not fresh
        and not storage.synced_with(run.path, where)
        and storage.read_bytes(where, io.STUDY_FILE, must_exist=False) is not None
    ):
        raise VrsearchError(
            f"{where} already holds a run of study {study.name!r}; continue it with "
            f"'vrsearch resume {where}' or start over with --fresh"
        )
    refuse_other_study(run.path, study_to_yaml(study), fresh)
    with run_lock(run.path):  # before anything is written or emptied: a live run refuses us first
        reap_leftovers(study, run, address)
        if fresh:
            start_over(study, run, where)
        else:
            _refuse_a_stale_copy(study, run)
        claim_run_dir(run.path, study_to_yaml(study), fresh)
        return execute(study, run, address, echo)


def _pull_target(uri: str, into: Path | None) -> tuple[Path, Study]:
    """Where the run stored at ``uri`` is resumed (``into``, else the local dir its study
    names) and its stored study; nothing is written."""
    import yaml

    text = storage.read_bytes(uri, io.STUDY_FILE)
    if text is None:
        raise VrsearchError(f"{uri}: not a vrsearch run (no {io.STUDY_FILE})")
    try:
        stored = build_study(yaml.safe_load(text.decode("utf-8")), check_design=False)
    except (VrsearchError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise VrsearchError(f"{uri}/{io.STUDY_FILE}: {flat(exc, 300)}") from None
    run_dir = Path(into if into is not None else stored.run_dir).expanduser().absolute()
    prior = _prior_study(RunDir(run_dir))
    if prior is not None and prior[1].name != stored.name:
        raise VrsearchError(
            f"{run_dir} holds a run of study {prior[1].name!r}, not {stored.name!r}; "
            "pass --into DIR to resume elsewhere"
        )
    return run_dir, stored


def resume_study(
    run_dir: Path | str, *, address: str | None = None, echo: Echo = print, into: Path | None = None
) -> Path:
    """Continue an interrupted study in ``run_dir`` — or, given a storage URI, in the local
    copy pulled from it (``into``, else the study's ``output.dir``), storing results back there.

    One path, whatever the interruption: a new Tune experiment runs what the run directory's
    fragments (and, for a search, Optuna's study) say is missing; finished trials are kept,
    unfinished ones continue from their configurations' checkpoints."""
    where = str(run_dir) if storage.is_uri(run_dir) else None
    stored = _pull_target(str(run_dir), into) if where is not None else None
    run = RunDir(stored[0] if stored is not None else Path(run_dir).absolute())
    if stored is None and not run.path.is_dir():
        raise VrsearchError(f"{run.path}: not a vrsearch run directory (no {io.STUDY_FILE})")
    # the lock before anything is read or written: a live run (even one that has not yet written
    # its study.yaml) refuses us first, and the pull writes nothing beside it
    with run_lock(run.path):
        if stored is not None and where is not None:
            reap_leftovers(stored[1], run, address)
            n = storage.pull(where, run.path, take_up=True)  # a live copy elsewhere pushes no more
            pulled = f"pulled {n} changed files from {where} into {run.path}"
            echo(pulled if n else f"{run.path} is up to date with {where}")
        if not run.study.exists():
            raise VrsearchError(f"{run.path}: not a vrsearch run directory (no {io.STUDY_FILE})")
        study = build_study(read_yaml(run.study))
        if stored is None:
            reap_leftovers(study, run, address)
        check_study(study, address, warn=lambda line: echo(f"warning: {line}"))
        _refuse_a_stale_copy(study, run, where)
        kept = len(grow.finished_metas(run))
        echo(f"resuming {run.path}: {kept} finished trials kept")
        return execute(study, run, address, echo, where)
