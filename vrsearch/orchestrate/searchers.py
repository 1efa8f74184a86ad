"""What proposes and stops a study's trials: the Tune scheduler (ASHA, the median
rule or none) and, for ``search`` designs, Optuna behind Ray's ``OptunaSearch``
(:class:`~vrsearch.orchestrate.resumable_optuna.ResumableOptunaSearch`,
persisted in an RDB storage — SQLite in the run directory by default — and
wrapped in :class:`~vrsearch.orchestrate.seeds.SeedRepeater` for several seeds
per configuration)."""

from __future__ import annotations

from pathlib import Path

from vrsearch.study.design import default_point, optuna_space
from vrsearch.study.rules import scheduler_plan
from vrsearch.study.schema import Study


def scheduler(study: Study):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule

    s = study.search
    plan = scheduler_plan(study)  # checked when the study was validated
    if plan is None:
        return FIFOScheduler()
    grace, max_t = plan
    if s.scheduler == "asha":
        return ASHAScheduler(time_attr="iteration", max_t=max_t, grace_period=grace,
                             reduction_factor=s.reduction_factor)
    return MedianStoppingRule(time_attr="iteration", grace_period=grace, min_samples_required=2)


def optuna_storage_url(study: Study, run_dir: Path) -> str:
    return study.search.storage or f"sqlite:///{run_dir / 'optuna.db'}"


def _optuna():
    """Optuna, without its INFO lines ("A new study created ...") in the study's console."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def searcher(study: Study, run_dir: Path, continuing: bool = False):
    """Optuna behind Tune; ``continuing``: a new experiment on an Optuna study that has
    results already (its start point, the study's defaults, was evaluated then)."""
    optuna = _optuna()
    from ray.tune.search import ConcurrencyLimiter

    from vrsearch.orchestrate.resumable_optuna import ResumableOptunaSearch

    s = study.search
    seed = s.seeds[0]
    sampler = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed),
    }[s.searcher]()
    storage = optuna.storages.RDBStorage(optuna_storage_url(study, run_dir))
    start = [default_point(study)] if s.start_from_defaults and not continuing else None
    algo = ResumableOptunaSearch(space=optuna_space(study), metric=s.metric, mode=s.mode, sampler=sampler,
                                 study_name=study.name, storage=storage, points_to_evaluate=start)
    if len(s.seeds) > 1:
        from vrsearch.orchestrate.seeds import SeedRepeater

        algo = SeedRepeater(algo, s.seeds, s.aggregate)
    return ConcurrencyLimiter(algo, max_concurrent=study.resources.concurrent_trials)


def close_orphans(study: Study, run_dir: Path) -> int:
    """Mark failed the Optuna trials still RUNNING when no Tune trial can finish them — at
    the end of a search, or before continuing one whose Tune state was lost: proposals
    whose Tune trial a killed driver never recorded (or lost). Left RUNNING they would
    read as in flight forever. Returns their count."""
    optuna = _optuna()

    try:
        ost = optuna.load_study(study_name=study.name, storage=optuna_storage_url(study, run_dir))
    except KeyError:  # no such study in the storage: nothing proposed
        return 0
    orphans = [t.number for t in ost.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]
    for number in orphans:
        ost.tell(number, state=optuna.trial.TrialState.FAIL)
    return len(orphans)
