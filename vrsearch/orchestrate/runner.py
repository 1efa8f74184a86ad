"""``vrsearch run`` / ``vrsearch resume``: a study on Ray Tune.

The driver validates the study and checks every data file *before* Ray
starts, claims the run directory (refusing one that holds another study),
starts a loopback-only local Ray (or joins ``--address``), and runs a Tuner:
Optuna (TPE / random / CMA-ES, persisted in an RDB storage — SQLite in the
run directory by default; several seeds per configuration through
:class:`~vrsearch.orchestrate.seeds.SeedRepeater`) or a fixed design (grid /
random / ablation / none) crossed with dataset axes and seeds, under ASHA,
the median rule or no scheduler. An edited fixed-design study grows its run
directory in place (:mod:`vrsearch.orchestrate.grow`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from pathlib import Path

from vrsearch.engine.single import claim_run_dir
from vrsearch.errors import VrsearchError
from vrsearch.orchestrate import grow
from vrsearch.orchestrate.checks import check_study
from vrsearch.orchestrate.searchers import close_orphans, scheduler, searcher
from vrsearch.orchestrate.trainable import trial_resources, vrsearch_trial
from vrsearch.results import faults, fragments, io, storage
from vrsearch.results.lock import run_lock
from vrsearch.study import load_study, study_to_yaml
from vrsearch.study.design import cells_with_seeds, n_trials
from vrsearch.study.load import build_study, read_yaml
from vrsearch.study.schema import Study

TUNE_NAME = "tune"


def run_location(study: Study) -> str | None:
    """``<output.storage>/<study name>``, or None without storage."""
    return storage.location(study.output.storage, study.name) if study.output.storage else None


def push_results(run_dir: Path, where: str | None, echo=print, *, final: bool = False) -> None:
    """Mirror the run dir to its storage; a failed push warns (retried at the next one),
    a failed final push raises (naming the URI)."""
    if where is None:
        return
    try:
        storage.push(run_dir, where)
    except VrsearchError as exc:
        if final:
            raise VrsearchError(f"{exc}; the results are complete locally in {run_dir}") from None
        echo(f"warning: results not stored ({exc}); retrying at the next push")


def ray_temp_dir(run_dir: Path, configured: Path | None = None) -> Path:
    """Ray's temp dir: ``resources.ray_temp_dir`` if set, else in the run dir when that is
    short enough for Unix socket paths (≤107 bytes), else /tmp/vrs-<hash of run dir>."""
    if configured is not None:
        return Path(configured).expanduser().absolute()
    inside = run_dir / "ray"
    if len(str(inside)) <= 28:
        return inside
    return Path("/tmp") / f"vrs-{hashlib.sha1(str(run_dir).encode()).hexdigest()[:8]}"


def init_ray(run_dir: Path, address: str | None, temp_dir: Path | None = None) -> None:
    if not address:
        from vrsearch.orchestrate.local import loopback_env

        loopback_env()  # before ray is imported
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    if address:
        ray.init(address=address, log_to_driver=False)
        return
    from vrsearch.orchestrate.local import loopback_init

    loopback_init(ray_temp_dir(run_dir, temp_dir))


def tune_setup(study: Study, run_dir: Path, cells: list[dict] | None, samples: int | None, total: int):
    """Tune's param space and ``TuneConfig`` of a new experiment: the fixed design's
    ``cells`` as a grid, or Optuna (``samples`` set: continuing a search) for ``total`` trials."""
    from ray import tune

    if study.search.design == "search":
        param_space, search_alg, n = {}, searcher(study, run_dir, continuing=samples is not None), total
    else:
        param_space, search_alg, n = {"cell": tune.grid_search(cells)}, None, 1
    return param_space, tune.TuneConfig(
        metric=study.search.metric, mode=study.search.mode, search_alg=search_alg, scheduler=scheduler(study),
        num_samples=n, max_concurrent_trials=study.resources.concurrent_trials,
    )


def _tuner(study: Study, run_dir: Path, restore: bool, echo, experiment: str, cells: list[dict] | None,
           where: str | None = None, samples: int | None = None):
    from ray import tune

    from vrsearch.orchestrate.callbacks import ResultsCallback

    base = study.model_dump(mode="json")
    res = study.resources
    if study.search.design == "search":
        base["train"]["seed"] = study.search.seeds[0]
    trainable = tune.with_parameters(vrsearch_trial, base=base, run_dir=str(run_dir))
    trainable = tune.with_resources(trainable, functools.partial(trial_resources, base))
    total = len(cells) if cells is not None else samples if samples is not None else n_trials(study)
    callback = ResultsCallback(run_dir, total, echo, storage=where)
    path = run_dir / experiment
    if restore:
        return tune.Tuner.restore(str(path), trainable, resume_unfinished=True, resume_errored=True), callback
    param_space, tune_config = tune_setup(study, run_dir, cells, samples, total)
    run_config = tune.RunConfig(
        name=experiment, storage_path=str(run_dir), verbose=0, callbacks=[callback],
        failure_config=tune.FailureConfig(max_failures=res.max_failures),
    )
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config), callback


def _pending(study: Study, run_dir: Path) -> list[dict]:
    """Cells (with seeds) of a fixed design that have no finished trial in ``run_dir``."""
    return grow.pending_cells(study.model_dump(mode="json"), cells_with_seeds(study), grow.finished_hashes(run_dir))


def _execute(study: Study, run_dir: Path, address: str | None, restore: bool, echo, *,
             experiment: str = TUNE_NAME, cells: list[dict] | None = None, where: str | None = None,
             samples: int | None = None) -> Path:
    import ray

    fixed = study.search.design != "search"
    if fixed and cells is None and not restore:
        cells = _pending(study, run_dir)
    if not restore and ((fixed and not cells) or samples == 0):  # grid_search([]) would run the bare study
        fragments.compact(run_dir)
        push_results(run_dir, where or run_location(study), echo, final=True)
        echo(f"nothing to run: all {n_trials(study)} trials of {study.name} are already in {run_dir}")
        return run_dir
    where = where or run_location(study)
    if where is not None:  # before Ray starts: an unwritable storage fails now, not after the study
        storage.push(run_dir, where)
        echo(f"storing results at {where}")
    init_ray(run_dir, address, study.resources.ray_temp_dir)
    try:
        tuner, callback = _tuner(study, run_dir, restore, echo, experiment, cells, where, samples)
        if restore:  # the restored experiment keeps its own callbacks list; ours must be there too
            tuner._local_tuner._run_config.callbacks = [callback]
        echo(f"study {study.name}: {callback.total} trials, design {study.search.design}, run dir {run_dir}")
        try:
            faults.point("tuner")  # tuner.pkl is written, Tune's experiment state not yet
            tuner.fit()
        except VrsearchError:
            raise
        except Exception as exc:  # noqa: BLE001 - a Tune/Ray failure: one line, the traceback in a file
            raise _driver_error(run_dir, exc) from None
    finally:
        trials, _, _ = fragments.compact(run_dir)
        ray.shutdown()
    counts = trials.status.value_counts().to_dict() if len(trials) else {}
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no trials"
    if fixed:
        ended = n_trials(study) - len(_pending(study, run_dir))
    else:
        ended = sum(v for k, v in counts.items() if k in grow.FINISHED)
    if ended < n_trials(study):
        push_results(run_dir, where, echo, final=True)
        raise VrsearchError(f"stopped after {ended} of {n_trials(study)} trials ({summary}); results so far are in "
                            f"{run_dir}; continue with 'vrsearch resume {run_dir}'")
    if not fixed and (orphans := close_orphans(study, run_dir)):
        echo(f"{orphans} Optuna proposals left running by an interrupted driver marked failed")
    from vrsearch.orchestrate.callbacks import refresh_report

    report = refresh_report(run_dir, echo)
    push_results(run_dir, where, echo, final=True)
    echo(f"finished: {summary}; results in {run_dir}" + (f" and {where}" if where else ""))
    if report is not None:
        echo(f"report: {report}")
    best = trials.dropna(subset=["best_val_dice"]).sort_values("best_val_dice", ascending=False).head(1)
    if len(best):
        b = best.iloc[0]
        echo(f"best: trial {b.trial_id}, val dice {b.best_val_dice:.4f} at iteration {int(b.best_iteration)}, "
             f"cell {b.cell}")
    return run_dir


def _driver_error(run_dir: Path, exc: Exception) -> VrsearchError:
    import traceback

    log = run_dir / "driver-error.log"
    io.write_text_atomic(log, "".join(traceback.format_exception(exc)))
    text = " ".join(str(exc).split())[:200]
    return VrsearchError(f"the study stopped on {type(exc).__name__}: {text} (traceback in {log}); results so far "
                         f"are in {run_dir}; continue with 'vrsearch resume {run_dir}'")


def discard_trial_state(run_dir: Path) -> None:
    """Remove Tune's state, trial fragments, checkpoints and Train worker dirs of a run."""
    for name in (*grow.experiments(run_dir), fragments.TRIALS_DIR, "checkpoints", "ray_train"):
        shutil.rmtree(run_dir / name, ignore_errors=True)


def _grow(study: Study, run_dir: Path, address: str | None, echo) -> Path:
    """Run the cells of an edited fixed-design study that the run directory lacks."""
    io.write_text_atomic(run_dir / io.STUDY_FILE, study_to_yaml(study))
    grow.remove_unfinished(run_dir)
    cells = _pending(study, run_dir)
    if cells:
        echo(f"growing {run_dir}: {len(cells)} new trials, {n_trials(study) - len(cells)} finished trials reused")
    return _execute(study, run_dir, address, restore=False, echo=echo,
                    experiment=grow.next_experiment(run_dir), cells=cells)


def _prior_study(run_dir: Path) -> tuple[str, Study] | None:
    path = run_dir / io.STUDY_FILE
    if not path.exists():
        return None
    try:
        return path.read_text(encoding="utf-8"), build_study(read_yaml(path))
    except VrsearchError:
        return None


def run_study(study_path: Path, overrides, *, address: str | None = None, fresh: bool = False, echo=print) -> Path:
    study = load_study(study_path, overrides)
    check_study(study, address, warn=lambda line: echo(f"warning: {line}"))
    run_dir = study.run_dir
    prior = None if fresh else _prior_study(run_dir)
    started = bool(grow.experiments(run_dir)) or (run_dir / fragments.TRIALS_DIR).exists()
    if prior is not None and started:
        text, old = prior
        if text == study_to_yaml(study):
            raise VrsearchError(f"{run_dir} already holds a run of this study; continue it with "
                                f"'vrsearch resume {run_dir}' or start over with --fresh")
        problem = grow.growth_problem(old, study)
        if problem:
            raise VrsearchError(problem)
        with run_lock(run_dir):
            return _grow(study, run_dir, address, echo)
    where = run_location(study)
    if where is not None and not fresh and not storage.synced_with(run_dir, where) \
            and storage.read_bytes(where, io.STUDY_FILE, must_exist=False) is not None:
        raise VrsearchError(f"{where} already holds a run of study {study.name!r}; continue it with "
                            f"'vrsearch resume {where}' or start over with --fresh")
    claim_run_dir(run_dir, study_to_yaml(study), fresh)
    with run_lock(run_dir):
        if fresh:
            discard_trial_state(run_dir)
            (run_dir / "optuna.db").unlink(missing_ok=True)
            storage.forget(run_dir)
            if where is not None:
                storage.remove(where)
        return _execute(study, run_dir, address, restore=False, echo=echo)


def _pull_run(uri: str, into: Path | None, echo) -> Path:
    """Bring the run stored at ``uri`` into ``into`` or the local dir its study names."""
    import yaml

    text = storage.read_bytes(uri, io.STUDY_FILE)
    if text is None:
        raise VrsearchError(f"{uri}: not a vrsearch run (no {io.STUDY_FILE})")
    try:
        stored = build_study(yaml.safe_load(text.decode("utf-8")), check_design=False)
    except (VrsearchError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise VrsearchError(f"{uri}/{io.STUDY_FILE}: {' '.join(str(exc).split())[:300]}") from None
    run_dir = Path(into if into is not None else stored.run_dir).expanduser().absolute()
    prior = _prior_study(run_dir)
    if prior is not None and prior[1].name != stored.name:
        raise VrsearchError(f"{run_dir} holds a run of study {prior[1].name!r}, not {stored.name!r}; "
                            "pass --into DIR to resume elsewhere")
    n = storage.pull(uri, run_dir)
    echo(f"pulled {n} changed files from {uri} into {run_dir}" if n else f"{run_dir} is up to date with {uri}")
    return run_dir


def resume_study(run_dir: Path | str, *, address: str | None = None, echo=print, into: Path | None = None) -> Path:
    """Continue an interrupted study in ``run_dir`` — or, given a storage URI, in the local
    copy pulled from it (``into``, else the study's ``output.dir``), storing results back there."""
    where = None
    if storage.is_uri(run_dir):
        where = str(run_dir)
        run_dir = _pull_run(where, into, echo)
    run_dir = Path(run_dir).absolute()
    study_file = run_dir / io.STUDY_FILE
    if not study_file.exists():
        raise VrsearchError(f"{run_dir}: not a vrsearch run directory (no {io.STUDY_FILE})")
    study = build_study(read_yaml(study_file))
    check_study(study, address, warn=lambda line: echo(f"warning: {line}"))
    with run_lock(run_dir):
        return _resume_locked(study, run_dir, address, echo, where)


def _resume_locked(study: Study, run_dir: Path, address: str | None, echo, where: str | None) -> Path:
    if not address:
        from vrsearch.orchestrate.local import loopback_env

        loopback_env()
    names = grow.experiments(run_dir)
    experiment = names[-1] if names else TUNE_NAME
    if grow.restorable(run_dir / experiment):
        return _execute(study, run_dir, address, restore=True, echo=echo, experiment=experiment, where=where)
    why = "no saved experiment state"
    if names:  # killed before (or while) Tune saved its state: what it holds cannot be restored
        if any((run_dir / experiment).glob("experiment_state-*.json")):
            why = f"the experiment state in {run_dir / experiment} is unreadable"
        shutil.rmtree(run_dir / experiment, ignore_errors=True)
    grow.remove_unfinished(run_dir)  # finished trials are in trials/; the rest run again under new ids
    if study.search.design != "search":
        echo(f"{why}; running the trials that have not finished")
        return _execute(study, run_dir, address, restore=False, echo=echo,
                        experiment=grow.next_experiment(run_dir), where=where)
    done = len(grow.finished_metas(run_dir))
    if done:  # keep them: Optuna's study (loaded again) already knows their results
        close_orphans(study, run_dir)  # the lost experiment's proposals in flight
        seeds = len(study.search.seeds)
        left = -(-max(n_trials(study) - done, 0) // seeds) * seeds  # whole configurations
        echo(f"{why}; continuing the search: {done} finished trials kept, {left} to run")
        return _execute(study, run_dir, address, restore=False, echo=echo,
                        experiment=grow.next_experiment(run_dir), where=where, samples=left)
    discard_trial_state(run_dir)
    if not study.search.storage:  # Optuna's history must start over with Tune's
        (run_dir / "optuna.db").unlink(missing_ok=True)
    echo(f"{why}; starting the study from the beginning")
    return _execute(study, run_dir, address, restore=False, echo=echo, where=where)

