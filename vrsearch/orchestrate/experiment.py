"""One Tune experiment of a study: what it still has to run, how Tune is set up for it,
running it, and the lines that close it.

:func:`plan` reads what the run directory's trial fragments (and Optuna's study) say is
still missing — for a new study, an interrupted one and a grown one alike — and
:func:`execute` runs it in a new Tune experiment: Optuna (TPE / random / CMA-ES,
persisted in an RDB storage — SQLite in the run directory by default; several seeds
per configuration through :class:`~vrsearch.orchestrate.proposals.StudySearcher`) or a
fixed design (grid / random / ablation / none) crossed with dataset axes and seeds,
under ASHA, the median rule or no scheduler. Tune's own saved state is never restored.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from vrsearch.core.config import Echo
from vrsearch.engine.allocator import worker_env
from vrsearch.errors import VrsearchError, flat
from vrsearch.orchestrate import grow
from vrsearch.orchestrate.checks import local_custom_resources
from vrsearch.orchestrate.mirror import push_results, run_location
from vrsearch.orchestrate.proposals import Proposal, aggregate
from vrsearch.orchestrate.schedulers import recorded_curves, scheduler
from vrsearch.orchestrate.searchers import close_orphans, plan_search, restore_proposals, searcher, tell
from vrsearch.orchestrate.trainable import trial_resources, trial_study, vrsearch_trial
from vrsearch.results import faults, fragments, io, storage
from vrsearch.results.rundir import RunDir
from vrsearch.study.design import cells_with_seeds, n_trials
from vrsearch.study.rules import scheduler_plan
from vrsearch.study.schema import Study

if TYPE_CHECKING:
    from ray import tune

    from vrsearch.orchestrate.callbacks import ReportRefresh, ResultsCallback

REUSE_ENV = "VRSEARCH_REUSE_ACTORS"


def ray_temp_dir(run_dir: Path, configured: Path | None = None) -> Path:
    """Ray's temp dir: ``resources.ray_temp_dir`` if set, else in the run dir when that is
    short enough for Unix socket paths (≤107 bytes), else /tmp/vrs-<hash of run dir>."""
    if configured is not None:
        return Path(configured).expanduser().absolute()
    inside = RunDir(run_dir).ray_temp
    if len(str(inside)) <= 28:
        return inside
    return Path("/tmp") / f"vrs-{hashlib.sha1(str(run_dir).encode()).hexdigest()[:8]}"


#: set in the driver unless the user set them; a local Ray's processes inherit them, and Tune
#: hands Ray Train's variables (the poll interval) from the driver to every trainable itself
TRIAL_ENV = {
    # a reused actor waits this long for the stopped trial's thread to end (Tune's default 2 s
    # would fail the next trial if an early-stopped one takes longer to unwind)
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "120",
    # Ray Train's controller polls a DDP trial's workers this often (Ray's default 2 s), and the
    # trial's end waited for a poll before the next trial could start: 1-3 s less per DDP trial
    # at 0.25 s on a 2-core machine (benchmarks/RESULTS.md (a¹²))
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25",
}
#: what a cluster's actors get only through the job's runtime env (Tune does not pass it on)
CLUSTER_ENV = ("TUNE_FUNCTION_THREAD_TIMEOUT_S",)


def job_env(address: str | None) -> dict[str, str]:
    """Sets :data:`TRIAL_ENV` in this process (a user's values kept) and returns the
    environment of the job's runtime env: the allocator settings, which glibc reads when a
    trial's process starts (engine/allocator.py), and on a cluster, whose actors do not
    inherit this process's environment, :data:`CLUSTER_ENV` too.  (A key of the job's own
    runtime env, e.g. from ``ray job submit``, would clash with it in ``ray.init``; the poll
    interval stays out for that reason, and Tune passes it on.)"""
    for key, value in TRIAL_ENV.items():
        os.environ.setdefault(key, value)
    env = worker_env()
    if address:
        env.update({key: os.environ[key] for key in CLUSTER_ENV})
    return env


def init_ray(
    run_dir: Path,
    address: str | None,
    temp_dir: Path | None = None,
    resources: dict[str, float] | None = None,
    state_api: bool = False,
) -> None:
    """Join the cluster at ``address``, or start a loopback-only local Ray that advertises
    the custom ``resources`` (a cluster's come from its node types), with Ray's state API
    where ``state_api`` (a study with DDP trials: :func:`vrsearch.orchestrate.local.loopback_init`)."""
    os.environ[faults.DRIVER] = str(os.getpid())  # for a test's kill-driver fault (workers inherit it)
    if not address:
        from vrsearch.orchestrate.local import loopback_env

        loopback_env()  # before ray is imported
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    env = job_env(address)
    if address:
        ray.init(address=address, log_to_driver=False, runtime_env={"env_vars": env})
        return
    from vrsearch.orchestrate.local import loopback_init

    loopback_init(ray_temp_dir(run_dir, temp_dir), resources=resources, env_vars=env, state_api=state_api)


def reap_leftovers(study: Study, run: RunDir, address: str | None) -> list[int]:
    """Kill what a killed driver's local Ray left running (its trial processes hold files in
    the run's own Ray temp dir); called once the run's lock is held (no live driver uses the
    run) and before the run directory is read or emptied: a trial still training could
    otherwise write fragments and checkpoints after the unfinished trials are removed.
    Returns the pids killed. None on a cluster (``address``: Ray ends a lost driver's job),
    nor in a configured ``resources.ray_temp_dir``, which other studies may share (there
    the local Ray's start reaps, as before)."""
    if address or study.resources.ray_temp_dir is not None:
        return []
    from vrsearch.orchestrate.local import reap_stale

    return reap_stale(ray_temp_dir(run.path))


@dataclass
class Work:
    """What the next Tune experiment runs: a fixed design's pending ``cells`` (with seeds),
    or a search's ``interrupted`` proposals and ``new`` ones to ask."""

    cells: list[dict[str, Any]] | None = None
    interrupted: list[Proposal] = field(default_factory=list)
    new: int = 0
    seeds: int = 1

    @property
    def trials(self) -> int:
        if self.cells is not None:
            return len(self.cells)
        return sum(len(p.todo) for p in self.interrupted) + self.new * self.seeds


def plan(study: Study, run: RunDir) -> Work:
    """The trials the study still needs, from its fragments (and Optuna for a search)."""
    if study.search.design != "search":
        done = grow.finished_hashes(run)
        return Work(cells=grow.pending_cells(study.model_dump(mode="json"), cells_with_seeds(study), done))
    interrupted, new = plan_search(study, run)
    for p in [p for p in interrupted if not p.todo]:  # every seed ended; Optuna was not told
        tell(study, run, p.number, aggregate(list(p.scores.values()), study.search.aggregate, study.search.mode))
        interrupted.remove(p)
    return Work(interrupted=interrupted, new=new, seeds=len(study.search.seeds))


def reuse_actors(study: Study, work: Work) -> bool:
    """Warm actors: a finished trial's Tune actor (its imports, thread pools and the data it
    prepared) runs the next trial of the same resources; ``VRSEARCH_REUSE_ACTORS=0`` starts
    every trial in a fresh process. Each trial resets the process state it reads
    (:func:`vrsearch.engine.setup.seed_everything`, thread counts), so both give the same
    results (``tests/e2e/test_determinism.py``).

    A DDP trial's Tune actor only waits in Ray Train's ``fit()`` (2.60, Train V2: a new
    worker group in every ``fit()``, no reuse of it); reusing it saves its process start and
    imports. Only where no scheduler can stop a trial: a stopped DDP trial's thread waits
    inside ``fit()`` rather than in a report, so Tune could not reset its actor in time (the
    next trial would fail); with ASHA or the median rule, studies with DDP trials start each
    trial's actor fresh."""
    if os.environ.get(REUSE_ENV, "1") == "0":
        return False
    return scheduler_plan(study) is None or not ddp_trials(study, work)


def ddp_trials(study: Study, work: Work) -> bool:
    """Whether a trial of ``work`` may run a Ray Train worker group (``workers_per_trial`` > 1)."""
    if work.cells is not None:
        base = study.model_dump(mode="json")
        return any(trial_study(base, {"cell": c})[0].resources.workers_per_trial > 1 for c in work.cells)
    return study.resources.workers_per_trial > 1 or "resources.workers_per_trial" in study.search.space


def tune_setup(study: Study, run: RunDir, work: Work) -> tuple[dict[str, Any], tune.TuneConfig]:
    """Tune's param space and ``TuneConfig`` of a new experiment for ``work``; the
    scheduler first replays the reports of the trials that ended before."""
    from ray import tune

    sched = scheduler(study, recorded_curves(run, study.search.metric))
    param_space: dict[str, Any]
    if work.cells is not None:
        param_space, search_alg, n = {"cell": tune.grid_search(work.cells)}, None, 1
    else:
        param_space, search_alg, n = {}, searcher(study, run, work.interrupted, work.new), work.trials
    return param_space, tune.TuneConfig(
        metric=study.search.metric,
        mode=study.search.mode,
        search_alg=search_alg,
        scheduler=sched,
        num_samples=n,
        max_concurrent_trials=study.resources.concurrent_trials,
        reuse_actors=reuse_actors(study, work),
    )


def _tuner(
    study: Study, run: RunDir, work: Work, echo: Echo, where: str | None, report: ReportRefresh
) -> tuple[tune.Tuner, ResultsCallback]:
    from ray import tune

    from vrsearch.orchestrate.callbacks import ResultsCallback

    base = study.model_dump(mode="json")
    if study.search.design == "search":
        base["train"]["seed"] = study.search.seeds[0]
    trainable = tune.with_parameters(vrsearch_trial, base=base, run_dir=str(run.path))
    # Tune turns the resource dict the callable returns into a placement group (its annotation
    # says the callable returns one)
    trainable = tune.with_resources(trainable, functools.partial(trial_resources, base))  # type: ignore[arg-type]
    callback = ResultsCallback(run.path, work.trials, echo, storage=where, report=report)
    param_space, tune_config = tune_setup(study, run, work)
    run_config = tune.RunConfig(
        name=run.next_experiment(),
        storage_path=str(run.path),
        verbose=0,
        callbacks=[callback],
        failure_config=tune.FailureConfig(max_failures=study.resources.max_failures),
    )
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config), callback


def execute(study: Study, run: RunDir, address: str | None, echo: Echo, where: str | None = None) -> Path:
    """Run what the study still needs in a new Tune experiment: every trial of a new
    study; after an interruption or an edit, the trials without a finished fragment
    (continuing from their configurations' checkpoints) and a search's open proposals."""
    import ray

    where = where or run_location(study)  # a stale copy was refused by the caller (runner)
    if study.search.design == "search" and (restored := restore_proposals(study, run)):
        echo(f"Optuna's database was behind the trials: {restored} proposal(s) restored from their meta.json")
    grow.remove_unfinished(run)  # their configurations run again, from their checkpoints
    work = plan(study, run)
    if work.trials == 0:
        fragments.compact(run.path)
        push_results(run.path, where, echo, final=True)
        echo(f"nothing to run: all {n_trials(study)} trials of {study.name} are already in {run.path}")
        return run.path
    if where is not None:  # before Ray starts: an unwritable storage (or one another copy of the
        storage.push(run.path, where, take_up=True)  # run took up) fails now, not after the study
        echo(f"storing results at {where}")
    from vrsearch.orchestrate.callbacks import ReportRefresh

    init_ray(run.path, address, study.resources.ray_temp_dir, local_custom_resources(study), ddp_trials(study, work))
    report = ReportRefresh(run.path, echo)
    try:
        tuner, callback = _tuner(study, run, work, echo, where, report)
        echo(f"study {study.name}: {callback.total} trials, design {study.search.design}, run dir {run.path}")
        try:
            faults.point("tuner")  # the experiment is set up; no trial has started
            tuner.fit()
        except VrsearchError:
            raise
        except Exception as exc:  # noqa: BLE001 - a Tune/Ray failure: one line, the traceback in a file
            raise _driver_error(run, exc) from None
    finally:
        trials, _, _ = fragments.compact(run.path)
        ray.shutdown()
        if report.last is not None:  # a trial finished: however it ended, all of them in the report
            report(final=True)
    return _finish(study, run, trials, where, echo, report)


def _finish(
    study: Study, run: RunDir, trials: pd.DataFrame, where: str | None, echo: Echo, refresh: ReportRefresh
) -> Path:
    counts = trials.status.value_counts().to_dict() if len(trials) else {}
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no trials"
    if plan(study, run).trials:
        push_results(run.path, where, echo, final=True)
        ended = sum(v for k, v in counts.items() if k in fragments.FINISHED)
        raise VrsearchError(
            f"stopped after {ended} of {n_trials(study)} trials ({summary}); results so far are in "
            f"{run.path}; continue with 'vrsearch resume {run.path}'"
        )
    if study.search.design == "search" and (orphans := close_orphans(study, run)):
        echo(f"{orphans} Optuna proposals that no trial evaluated marked failed")
    report = refresh(final=True)  # rebuilt only if something changed since (e.g. proposals closed)
    push_results(run.path, where, echo, final=True)
    echo(f"finished: {summary}; results in {run.path}" + (f" and {where}" if where else ""))
    if report is not None:
        echo(f"report: {report}")
    best = trials.dropna(subset=["best_val_dice"]).sort_values("best_val_dice", ascending=False).head(1)
    if len(best):
        b = best.iloc[0]
        echo(
            f"best: trial {b.trial_id}, val dice {b.best_val_dice:.4f} at iteration {int(b.best_iteration)}, "
            f"cell {b.cell}"
        )
    return run.path


def _driver_error(run: RunDir, exc: Exception) -> VrsearchError:
    import traceback

    io.write_text_atomic(run.driver_log, "".join(traceback.format_exception(exc)))
    return VrsearchError(
        f"the study stopped on {type(exc).__name__}: {flat(exc, 200)} (traceback in {run.driver_log}); "
        f"results so far are in {run.path}; continue with 'vrsearch resume {run.path}'"
    )
