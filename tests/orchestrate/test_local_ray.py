"""The local Ray: its dashboard agent takes any free port (a second Ray on the machine —
another study, the other test process — does not wait in the agent's bind retries for port
52365), its workers run at the driver's niceness, not Ray's +15, and it starts no autoscaler
monitor and no log monitor."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from vrsearch.orchestrate.local import (
    LOCAL_DEFAULTS,
    LOCAL_ENV,
    any_agent_port,
    loopback_env,
    no_monitors,
    reap_stale,
)

RAY_AGENT_PORT = 52365  # Ray's fixed default for every node's dashboard agent


def test_the_default_agent_port_is_any_port_inside_and_restored_after():
    from ray._private.parameter import RayParams

    assert RayParams().dashboard_agent_listen_port == RAY_AGENT_PORT
    with any_agent_port():
        assert RayParams().dashboard_agent_listen_port == 0
        assert RayParams(dashboard_agent_listen_port=1234).dashboard_agent_listen_port == 1234
    assert RayParams().dashboard_agent_listen_port == RAY_AGENT_PORT
    with pytest.raises(RuntimeError), any_agent_port():  # restored when ray.init raises too
        raise RuntimeError
    assert RayParams().dashboard_agent_listen_port == RAY_AGENT_PORT


def test_no_monitors_inside_and_ray_defaults_restored_after():
    from ray._private.parameter import RayParams

    assert (RayParams().no_monitor, RayParams().include_log_monitor) == (False, None)
    with no_monitors(), any_agent_port():
        params = RayParams()
        assert (params.no_monitor, params.include_log_monitor, params.dashboard_agent_listen_port) == (True, False, 0)
        assert RayParams(no_monitor=False).no_monitor is False
    assert (RayParams().no_monitor, RayParams().include_log_monitor) == (False, None)


@dataclass
class LocalRay:
    """What one loopback Ray, started in a fresh process, reported."""

    agent_log: str
    node_port: str
    driver_nice: int
    worker_nice: int
    processes: list[str]  # Ray's own process types on the node
    defaults: str  # ``RAY_prestart_worker_first_driver``, ``RAY_TRAIN_ENABLE_PREEMPTION_WATCHER`` of the raylet
    gcs: str  # the driver's GCS address
    worker_ray_address: str  # ``RAY_ADDRESS`` in a task's environment
    worker_api_server: str  # ``RAY_API_SERVER_ADDRESS`` in a task's environment ('empty' when empty)


@pytest.fixture(scope="module")
def local_ray() -> LocalRay:
    """A loopback Ray started (in a fresh process) while port 52365 is taken — by this
    fixture, or by another Ray already: the same situation — and one task run on it."""
    held = socket.socket()
    try:
        held.bind(("127.0.0.1", RAY_AGENT_PORT))
        held.listen()
    except OSError:
        pass
    code = (
        "import os, sys; from pathlib import Path; from vrsearch.orchestrate.local import loopback_init; "
        "loopback_init(Path(sys.argv[1]), num_cpus=1); import ray; "
        "raylet = ray._private.worker._global_node.all_processes['raylet'][0].process.pid; "
        "env = dict(e.split(b'=', 1) for e in Path(f'/proc/{raylet}/environ').read_bytes().split(bytes(1)) if b'=' in e); "
        "defaults = ','.join(env.get(k, b'unset').decode() for k in "
        "  (b'RAY_prestart_worker_first_driver', b'RAY_TRAIN_ENABLE_PREEMPTION_WATCHER')); "
        "nice, addr, api = ray.get(ray.remote(lambda: (os.nice(0), os.environ.get('RAY_ADDRESS', 'unset'), "
        "  os.environ.get('RAY_API_SERVER_ADDRESS', 'unset') or 'empty')).remote()); "
        "print(','.join(sorted(ray._private.worker._global_node.all_processes))); "
        "print(ray._private.worker.global_worker.node.dashboard_agent_listen_port, os.nice(0), nice, defaults, "
        "  ray.get_runtime_context().gcs_address, addr, api); ray.shutdown()"
    )
    temp = Path(tempfile.mkdtemp(prefix="vrs-t-", dir="/tmp"))  # short: Unix socket paths
    env = {k: v for k, v in os.environ.items() if k not in LOCAL_DEFAULTS}  # loopback_env's defaults, not a user's
    # a user's shell that names another Ray: the local Ray must neither join it nor tell its processes about it
    env |= {"RAY_ADDRESS": "127.0.0.1:9", "RAY_API_SERVER_ADDRESS": "http://127.0.0.1:9"}
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(temp)], capture_output=True, timeout=180, env=env)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        logs = list(temp.glob("session_*/logs/dashboard_agent.log"))
        assert logs, "no dashboard agent log"
        processes, port, driver, worker, defaults, gcs, addr, api = proc.stdout.decode().split()[-8:]
        return LocalRay(
            logs[0].read_text(), port, int(driver), int(worker), processes.split(","), defaults, gcs, addr, api
        )
    finally:  # everything is read: the port and the folder are released before the tests run
        held.close()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_a_local_ray_starts_beside_one_that_holds_the_agent_port(local_ray):
    """Port 52365 taken: the local Ray's agent binds elsewhere at once; without the free
    port its log shows the failed binds."""
    text = local_ray.agent_log
    assert "Failed to bind" not in text and "failed to bind" not in text, text[-2000:]
    bound = re.search(r"Dashboard agent http address: 127\.0\.0\.1:(\d+)", text)
    assert bound, text[-2000:]  # the agent's HTTP server is up, on the loopback interface
    port = int(bound.group(1))
    assert port != RAY_AGENT_PORT and local_ray.node_port == str(port)  # the node knows it


@pytest.mark.slow
def test_the_local_rays_workers_run_at_the_drivers_niceness(local_ray):
    """Ray's default starts workers at +15 (capped at 19): a trial's training would yield
    the CPU to every normal-priority process (RESULTS.md (a‴)). (Under a driver already at
    19 both are capped there and this cannot tell; at any lower niceness it can.)"""
    assert local_ray.worker_nice == local_ray.driver_nice


@pytest.mark.slow
def test_the_local_rays_processes_are_told_its_own_address(local_ray):
    """A task's ``RAY_ADDRESS`` is the GCS its driver started, whatever the user's shell names
    (a local Ray is started, not joined): Ray Train's placement-group cleaner asks the state
    API with no address, and Ray refuses to guess when the machine runs two Rays
    (orchestrate/local.py; the e2e test with a second Ray beside the study:
    tests/e2e/test_run.py::test_ddp_trials_go_on_after_asha_stops_one)."""
    assert local_ray.gcs.startswith("127.0.0.1:") and local_ray.gcs != "127.0.0.1:9"  # not the shell's Ray
    assert local_ray.worker_ray_address == local_ray.gcs
    assert local_ray.worker_api_server == "empty"  # the state API would read it before RAY_ADDRESS


@pytest.mark.slow
def test_a_gcs_port_taken_after_it_was_chosen_is_chosen_again():
    """The port ``free_loopback_port`` chose is taken (here: listened on) before the GCS binds
    it: the GCS cannot start, and the local Ray starts again on another port."""
    code = (
        "import socket, sys; from pathlib import Path; from vrsearch.orchestrate import local; "
        "held = socket.socket(); held.bind(('127.0.0.1', 0)); held.listen(); taken = held.getsockname()[1]; "
        "free, chosen = local.free_loopback_port, []; "
        "local.free_loopback_port = lambda: chosen.append(taken if not chosen else free()) or chosen[-1]; "
        "local.loopback_init(Path(sys.argv[1]), num_cpus=1); import ray; "
        "print(taken, len(chosen), ray.get_runtime_context().gcs_address); ray.shutdown()"
    )
    temp = Path(tempfile.mkdtemp(prefix="vrs-t-", dir="/tmp"))
    try:
        # ~45 s: the GCS dies at once, but Ray's client waits ~40 s for it before the start fails
        proc = subprocess.run([sys.executable, "-c", code, str(temp)], capture_output=True, timeout=180)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        taken, tries, gcs = proc.stdout.decode().split()[-3:]
        assert tries == "2" and gcs.startswith("127.0.0.1:") and gcs != f"127.0.0.1:{taken}", (taken, tries, gcs)
    finally:
        reap_stale(temp)
        shutil.rmtree(temp, ignore_errors=True)


def test_settings_the_user_made_are_kept(monkeypatch):
    for key, value in LOCAL_ENV.items():
        monkeypatch.setenv(key, value)  # what loopback_env sets; monkeypatch restores them after
    for key in LOCAL_DEFAULTS:
        monkeypatch.setenv(key, "7")
    loopback_env()
    assert {k: os.environ[k] for k in LOCAL_DEFAULTS} == dict.fromkeys(LOCAL_DEFAULTS, "7")
    for key in LOCAL_DEFAULTS:
        monkeypatch.delenv(key)
    loopback_env()
    assert set(LOCAL_DEFAULTS) == {
        "RAY_worker_niceness",
        "RAY_prestart_worker_first_driver",
        "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER",
    }
    assert {k: os.environ[k] for k in LOCAL_DEFAULTS} == dict.fromkeys(LOCAL_DEFAULTS, "0")


def test_the_settings_are_the_names_this_ray_reads():
    """A Ray upgrade that renamed Train's switch would leave the local setting without effect."""
    from ray.train.v2._internal.constants import ENABLE_PREEMPTION_WATCHER_ENV_VAR

    assert ENABLE_PREEMPTION_WATCHER_ENV_VAR == "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"


@pytest.mark.slow
def test_the_local_ray_runs_no_autoscaler_or_log_monitor(local_ray):
    """One machine has nothing to autoscale, and no driver reads streamed worker logs
    (``log_to_driver=False``): both monitors would only cost CPU (RESULTS.md (a⁗))."""
    assert {"gcs_server", "raylet"} <= set(local_ray.processes), local_ray.processes
    assert not {"monitor", "log_monitor"} & set(local_ray.processes), local_ray.processes


@pytest.mark.slow
def test_the_local_ray_prestarts_no_idle_worker_and_watches_no_preemption(local_ray):
    """The raylet, which reads the first and hands both to every worker, runs with
    ``RAY_prestart_worker_first_driver=0`` (Ray would prestart workers without a runtime env
    for the first driver, and no actor of a study, each with Tune's runtime env, can use one)
    and ``RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=0`` (RESULTS.md (a⁹))."""
    assert local_ray.defaults == "0,0"
