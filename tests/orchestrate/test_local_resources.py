"""A local Ray has only this machine: a study whose trials cannot fit is refused before Ray starts."""

from __future__ import annotations

import pytest
import torch

from vrsearch.errors import VrsearchError
from vrsearch.orchestrate import checks
from vrsearch.study.load import build_study

BASE = {"name": "r", "dataset": {"patch_size": [32, 32, 16]}, "model": {"channels": [8, 16]}}


def study(resources=None, search=None):
    return build_study({**BASE, "resources": resources or {}, "search": search or {}})


@pytest.fixture
def four_cpus_one_gpu(monkeypatch):
    monkeypatch.setattr(checks.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def refused(s, field: str) -> str:
    with pytest.raises(VrsearchError) as info:
        checks.check_local_resources(s)
    msg = str(info.value)
    assert msg.startswith(f"resources.{field}:") and "--address" in msg, msg
    return msg


def test_fitting_trials_pass(four_cpus_one_gpu):
    checks.check_local_resources(study())
    checks.check_local_resources(
        study({"workers_per_trial": 2, "cpus_per_worker": 2, "gpus_per_worker": 0.5, "concurrent_trials": 8})
    )  # concurrency is Ray's to queue


def test_too_many_cpus_or_gpus(four_cpus_one_gpu):
    assert "2 worker(s) x 3 CPUs" in refused(study({"workers_per_trial": 2, "cpus_per_worker": 3}), "cpus_per_worker")
    assert "1 visible GPU(s)" in refused(study({"workers_per_trial": 2, "gpus_per_worker": 1}), "gpus_per_worker")


def test_cells_and_search_spaces_are_checked(four_cpus_one_gpu):
    arms = {"design": "ablation", "arms": [{"name": "big", "set": {"resources.cpus_per_worker": 8}}]}
    refused(study(search=arms), "cpus_per_worker")
    nested = {"design": "ablation", "arms": [{"name": "gpu", "set": {"resources": {"gpus_per_worker": 2}}}]}
    refused(study(search=nested), "gpus_per_worker")
    grid = {"design": "grid", "space": {"resources.workers_per_trial": {"type": "categorical", "choices": [1, 4]}}}
    checks.check_local_resources(study(search=grid))  # 4 workers x 1 CPU fit
    refused(study({"cpus_per_worker": 2}, grid), "cpus_per_worker")
    space = {"design": "search", "space": {"resources.cpus_per_worker": {"type": "float", "low": 1, "high": 6}}}
    refused(study(search=space), "cpus_per_worker")


def test_custom_resources_are_advertised_by_a_local_ray(four_cpus_one_gpu):
    """A local Ray has no node types to choose from: it advertises what ``concurrent_trials``
    of the most demanding trials hold at once, so a study written for a cluster runs as is."""
    slot = {"custom_per_worker": {"trial_slot": 1}, "concurrent_trials": 3}
    assert checks.local_custom_resources(study()) == {}
    assert checks.local_custom_resources(study(slot)) == {"trial_slot": 3}
    grid = {"design": "grid", "space": {"resources.workers_per_trial": {"type": "categorical", "choices": [1, 2]}}}
    assert checks.local_custom_resources(study(slot, grid)) == {"trial_slot": 6}
    arms = {
        "design": "ablation",
        "arms": [
            {"name": "a", "set": {"resources.custom_per_worker.trial_slot": 2}},
            {"name": "b", "set": {"resources": {"custom_per_worker": {"big": 0.5}}}},
        ],
    }
    assert checks.local_custom_resources(study(slot, arms)) == {"trial_slot": 6, "big": 1.5}
    space = {
        "design": "search",
        "space": {"resources.custom_per_worker.trial_slot": {"type": "float", "low": 1, "high": 4}},
    }
    assert checks.local_custom_resources(study(slot, space)) == {"trial_slot": 12}
    checks.check_local_resources(study(slot, arms))  # custom resources never refuse a local run


def test_trials_and_workers_ask_for_the_custom_resources():
    from vrsearch.orchestrate.trainable import trial_resources, worker_resources

    one = study({"custom_per_worker": {"trial_slot": 1}, "cpus_per_worker": 2}).model_dump(mode="json")
    assert trial_resources(one, {}) == {"CPU": 2, "trial_slot": 1}
    ddp = {**one, "resources": {**one["resources"], "workers_per_trial": 2, "gpus_per_worker": 1}}
    assert trial_resources(ddp, {}) == {"CPU": 0, "memory": 256 * 2**20}  # the coordinator holds nothing
    assert worker_resources(ddp["resources"]) == {"CPU": 2, "GPU": 1, "trial_slot": 1}
