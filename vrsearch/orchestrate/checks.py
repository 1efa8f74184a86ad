"""Checks a study can only fail as a whole, run before anything is written and
before Ray starts: the storage URI parses, the data are readable and complete,
and (for a local Ray) every trial's CPUs and GPUs fit this machine. (The rules of
the study itself — metric, scheduler — are checked when it is validated:
:mod:`vrsearch.study.rules`.)
"""

from __future__ import annotations

import os

from vrsearch.core.config import Echo
from vrsearch.data.intensity import saturation_warnings
from vrsearch.data.prepare import PreparedData
from vrsearch.engine.allocator import mode as malloc_mode
from vrsearch.engine.prepare import prepare_for
from vrsearch.errors import VrsearchError
from vrsearch.results import storage
from vrsearch.study.rules import check_rules
from vrsearch.study.schema import Study


def check_study(
    study: Study, address: str | None = None, *, data: bool = True, warn: Echo | None = None
) -> PreparedData | None:
    """Everything ``vrsearch run`` refuses before Ray starts (``vrsearch validate`` calls
    it too): the study's rules, the storage URI, the data (``data``: read and check every
    volume; ``warn`` gets a line for each doubtful setting, e.g. a clip that saturates
    the images) and, for a local Ray (no ``address``), the resources a trial needs.
    Returns the prepared data (None without ``data``)."""
    check_rules(study)
    malloc_mode()  # VRSEARCH_MALLOC is kept or system (the trials' processes get it)
    if study.output.storage:  # a bad URI fails before Ray starts
        storage.parse(storage.location(study.output.storage, study.name))
    prepared = None
    for line in timing_warnings(study):
        (warn or print)(line)
    if data:
        prepared = prepare_for(study)
        for line in saturation_warnings(prepared.index, prepared.dataset):
            (warn or print)(line)
    if not address:
        check_local_resources(study)
    return prepared


def timing_warnings(study: Study) -> list[str]:
    """What makes a rerun of the study with the same seeds choose differently: with several
    trials at once the order in which they report follows timing, and a scheduler compares a
    trial at a rung with the trials that reached it before, while a model-based searcher
    proposes from the trials finished when it is asked (measured on the quickstart, README step
    1: two runs with two trials at a time trained 4 and 2 of 8 trials to the end; one at a time,
    identical results on CPU)."""
    from vrsearch.study.design import n_trials

    s, at_once = study.search, study.resources.concurrent_trials
    if at_once == 1 or n_trials(study) <= 1:
        return []
    what = [f"which trials search.scheduler: {s.scheduler} stops"] if s.scheduler != "none" else []
    if s.design == "search" and s.searcher != "random" and s.num_samples > s.n_startup_trials:
        what.append(
            f"what search.searcher: {s.searcher} proposes after its {s.n_startup_trials} start-up configurations"
        )
    if not what:
        return []
    verb = "depends" if len(what) == 1 else "depend"
    return [
        f"resources.concurrent_trials: {at_once}: {' and '.join(what)} {verb} on the order in which trials "
        "report, so a rerun with the same seeds may stop or propose differently; with "
        "resources.concurrent_trials: 1 that order is fixed"
    ]


_RESOURCE_FIELDS = ("workers_per_trial", "cpus_per_worker", "gpus_per_worker", "custom_per_worker")
_CUSTOM = "custom_per_worker."


def _trial_resources(study: Study) -> list[dict]:
    """The (workers, CPUs, GPUs, custom resources per worker) settings the study's trials
    can ask for: its own, each fixed-design cell's, or for a search the largest value its
    space can give."""
    from vrsearch.study.design import design_cells

    base = {f: getattr(study.resources, f) for f in _RESOURCE_FIELDS}

    def of(cell: dict) -> dict:
        res = {**base, **{f: v for f, v in (cell.get("resources") or {}).items() if f in base}}
        res.update({f: cell[f"resources.{f}"] for f in base if f"resources.{f}" in cell})
        custom = {
            k.removeprefix(f"resources.{_CUSTOM}"): v for k, v in cell.items() if k.startswith(f"resources.{_CUSTOM}")
        }
        return {**res, "custom_per_worker": {**res["custom_per_worker"], **custom}}

    if study.search.design != "search":
        return [base, *(of(cell) for cell in design_cells(study))]
    top = {**base, "custom_per_worker": dict(base["custom_per_worker"])}
    for key, dim in study.search.space.items():
        field = key.removeprefix("resources.")
        values = dim.options() if dim.type == "categorical" else [dim.bounds()[1]]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if field.startswith(_CUSTOM) and numbers:
            top["custom_per_worker"][field.removeprefix(_CUSTOM)] = max(numbers)
        elif field in top and numbers:
            top[field] = max(numbers)
    return [base, top]


def local_custom_resources(study: Study) -> dict[str, float]:
    """The custom resources a local Ray (one machine, no node types to choose from)
    advertises so that trials asking for them run: each in the amount that
    ``concurrent_trials`` of the most demanding trials hold at once."""
    out: dict[str, float] = {}
    for res in _trial_resources(study):
        for name, amount in res["custom_per_worker"].items():
            need = amount * res["workers_per_trial"] * study.resources.concurrent_trials
            out[name] = max(out.get(name, 0.0), need)
    return out


def check_local_resources(study: Study) -> None:
    """A local Ray (no ``--address``) has only this machine: every trial's CPUs and GPUs
    must fit on it, else Ray would wait for resources forever (its custom resources are
    advertised by the local Ray itself: :func:`local_custom_resources`)."""
    cpus = os.cpu_count() or 1
    gpus = None
    for res in _trial_resources(study):
        workers = res["workers_per_trial"]
        if workers * res["cpus_per_worker"] > cpus:
            raise VrsearchError(
                f"resources.cpus_per_worker: a trial needs {workers} worker(s) x {res['cpus_per_worker']:g} CPUs, "
                f"more than the {cpus} CPUs of this machine (local Ray); lower resources.cpus_per_worker or "
                "resources.workers_per_trial, or join a cluster with --address"
            )
        if res["gpus_per_worker"] > 0:
            if gpus is None:
                import torch

                gpus = torch.cuda.device_count()
            if workers * res["gpus_per_worker"] > gpus:
                raise VrsearchError(
                    f"resources.gpus_per_worker: a trial needs {workers} worker(s) x {res['gpus_per_worker']:g} "
                    f"GPUs, but this machine has {gpus} visible GPU(s) (local Ray); lower "
                    "resources.gpus_per_worker, or join a cluster with --address"
                )
