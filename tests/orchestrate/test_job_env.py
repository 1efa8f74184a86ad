"""What a study's driver puts in its own environment and in the job's runtime env
(vrsearch.orchestrate.experiment.job_env): the trial settings reach a local Ray's processes by
inheritance and a cluster's through the runtime env, with a user's values kept, next to the
allocator settings every trial process needs at start."""

from __future__ import annotations

import os

import pytest

from vrsearch.engine.allocator import worker_env
from vrsearch.orchestrate.experiment import CLUSTER_ENV, TRIAL_ENV, job_env


@pytest.fixture
def clean(monkeypatch):
    """The keys unset, and restored (or removed) after the test, whatever job_env set."""
    for key in (*TRIAL_ENV, "VRSEARCH_MALLOC"):
        monkeypatch.setenv(key, "placeholder")  # recorded, so teardown restores the original state
        monkeypatch.delenv(key)
    return monkeypatch


def test_a_local_study_sets_the_trial_settings_in_the_drivers_environment(clean):
    env = job_env(None)
    assert {k: os.environ[k] for k in TRIAL_ENV} == {
        "TUNE_FUNCTION_THREAD_TIMEOUT_S": "120",
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25",
    }
    assert env == worker_env()  # the local Ray's processes inherit the rest from the driver
    assert not set(TRIAL_ENV) & set(env)


def test_a_cluster_study_passes_what_tune_does_not_and_keeps_a_users_values(clean):
    clean.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "1.5")
    env = job_env("127.0.0.1:6379")
    assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "1.5"  # Tune passes the driver's value on
    # not in the runtime env: a job submitted with it in its own runtime env would fail ray.init
    assert "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S" not in env
    assert env["TUNE_FUNCTION_THREAD_TIMEOUT_S"] == "120"
    assert worker_env().items() <= env.items()  # the allocator settings too


def test_the_settings_are_the_names_this_ray_reads():
    """A Ray upgrade that renamed them would leave the settings without effect."""
    from ray.train.v2._internal.constants import DEFAULT_HEALTH_CHECK_INTERVAL_S, HEALTH_CHECK_INTERVAL_S_ENV_VAR
    from ray.tune.constants import TUNE_ENV_VARS
    from ray.tune.execution.class_cache import ENV_VARS_TO_PROPAGATE  # what Tune hands each trainable

    assert HEALTH_CHECK_INTERVAL_S_ENV_VAR in TRIAL_ENV
    assert HEALTH_CHECK_INTERVAL_S_ENV_VAR in ENV_VARS_TO_PROPAGATE  # so a cluster's controller gets it
    assert "TUNE_FUNCTION_THREAD_TIMEOUT_S" in TUNE_ENV_VARS
    assert not set(CLUSTER_ENV) & ENV_VARS_TO_PROPAGATE
    assert float(TRIAL_ENV[HEALTH_CHECK_INTERVAL_S_ENV_VAR]) < DEFAULT_HEALTH_CHECK_INTERVAL_S
