"""Checks a study can only fail as a whole, run before anything is written and
before Ray starts: the search metric is reported, the data are readable and
complete, and (for a local Ray) every trial's resources fit this machine.
"""

from __future__ import annotations

import os

from vrsearch.data.prepare import prepare_data
from vrsearch.errors import VrsearchError
from vrsearch.orchestrate.trainable import REPORTED
from vrsearch.registry import get_method
from vrsearch.results import storage
from vrsearch.study.schema import Study


def check_runnable(study: Study) -> None:
    """Errors a study can only have as a whole (before Ray starts)."""
    s = study.search
    if s.metric not in REPORTED or s.metric in ("lr",):
        raise VrsearchError(f"search.metric: {s.metric!r} is not reported; use one of {', '.join(REPORTED[:5])}")
    if study.output.storage:  # a bad URI fails before Ray starts
        storage.parse(storage.location(study.output.storage, study.name))
    spec = get_method(study.method.name)
    prepare_data(study.dataset, method=spec.name, needs_unlabeled=spec.needs_unlabeled,
                 all_labels=bool(study.method.params.get("all_labels", False)))


_RESOURCE_FIELDS = ("workers_per_trial", "cpus_per_worker", "gpus_per_worker")


def _trial_resources(study: Study) -> list[dict]:
    """The (workers, CPUs, GPUs per worker) settings the study's trials can ask for: its
    own, each fixed-design cell's, or for a search the largest value its space can give."""
    from vrsearch.study.design import design_cells

    base = {f: getattr(study.resources, f) for f in _RESOURCE_FIELDS}

    def of(cell: dict) -> dict:
        res = {**base, **{f: v for f, v in (cell.get("resources") or {}).items() if f in base}}
        return {**res, **{f: cell[f"resources.{f}"] for f in base if f"resources.{f}" in cell}}

    if study.search.design != "search":
        return [base, *(of(cell) for cell in design_cells(study))]
    top = dict(base)
    for key, dim in study.search.space.items():
        field = key.removeprefix("resources.")
        values = dim.choices if dim.type == "categorical" else [dim.high]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if field in top and numbers:
            top[field] = max(numbers)
    return [base, top]


def check_local_resources(study: Study) -> None:
    """A local Ray (no ``--address``) has only this machine: every trial must fit on it,
    else Ray would wait for resources forever."""
    cpus = os.cpu_count() or 1
    gpus = None
    for res in _trial_resources(study):
        workers = res["workers_per_trial"]
        if workers * res["cpus_per_worker"] > cpus:
            raise VrsearchError(
                f"resources.cpus_per_worker: a trial needs {workers} worker(s) x {res['cpus_per_worker']:g} CPUs, "
                f"more than the {cpus} CPUs of this machine (local Ray); lower resources.cpus_per_worker or "
                "resources.workers_per_trial, or join a cluster with --address")
        if res["gpus_per_worker"] > 0:
            if gpus is None:
                import torch

                gpus = torch.cuda.device_count()
            if workers * res["gpus_per_worker"] > gpus:
                raise VrsearchError(
                    f"resources.gpus_per_worker: a trial needs {workers} worker(s) x {res['gpus_per_worker']:g} "
                    f"GPUs, but this machine has {gpus} visible GPU(s) (local Ray); lower "
                    "resources.gpus_per_worker, or join a cluster with --address")
