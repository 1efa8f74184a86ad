"""A local Ray instance that listens on the loopback interface only.

Ray resolves a loopback ``_node_ip_address`` to the machine's address unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is set *before* ``import ray``; with
it every Ray process (GCS, raylet, workers, dashboard and agents) binds
127.0.0.1. ``GLOO_SOCKET_IFNAME=lo`` keeps gloo's DDP connections there too,
and the Train rendezvous uses :mod:`vrsearch.orchestrate.ddp`.

The dashboard agent's HTTP port is the one port such a Ray does not choose
freely: ``ray.init`` has no option for it (ray-project/ray#37229) and every
node asks for 52365, so a second Ray on the machine — another study, the other
test process — spends ~3 s in the agent's bind retries before ``ray.init``
returns (the agent then runs without its HTTP server). :func:`loopback_init`
starts its node with port 0 (any free port), as ``ray start
--dashboard-agent-listen-port=0`` and Ray's own fake multi-node provider do.

Ray's workers renice themselves by ``worker_niceness`` (default +15, read from the
environment each inherits from the raylet), so a trial's training yields the CPU
to every normal-priority process — Ray's own GCS, raylet and agents, the driver,
anything else the user runs: on a 2-core machine that made a trial's training
13-18 % slower than the same training outside Ray (``benchmarks/RESULTS.md``
(a‴)). The local Ray starts its workers at the driver's niceness
(``RAY_worker_niceness=0``); a user who wants a study in the background runs
``nice vrsearch run …`` (workers inherit it) or sets ``RAY_worker_niceness`` (an
increment over the driver's niceness, capped at 19) in the environment, which is
kept.

It prestarts no idle workers when the driver connects (``RAY_prestart_worker_first_driver=0``,
kept if the user set it). Ray prestarts them without a runtime env, and no actor of a study can
use such a worker: Tune gives every trainable a runtime env of its own (``PL_DISABLE_FORK``),
Ray Train's controller and workers inherit it, and a worker is only handed to an actor whose
runtime env matches. They started (one per CPU) at the busiest moment of a study's start, then
idled or were reaped: ~0.7 CPU-s per study on 2 cores (RESULTS.md (a⁹)). Nor does Ray Train
start its preemption watcher (``RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=0``, kept if set): an actor
per DDP trial (~1.4 CPU-s in the sampler) that polls for nodes being drained, and a single
machine has none to drain.

It runs neither Ray's autoscaler monitor nor its log monitor (:func:`no_monitors`):
one machine has nothing to autoscale, and the driver does not stream worker logs
(``log_to_driver=False``; they stay in the session's ``logs``). Both cost CPU
(most of it at start-up, then polls throughout the study): a tiny study's
``vrsearch run`` took 15.3 s instead of 17.0 (six pairs, RESULTS.md (a⁗)).
It runs Ray's dashboard, and with it the state API (``ray.util.state``), only for a
study with DDP trials (``state_api``): Ray Train's placement-group cleaner needs it. When
Tune stops a DDP trial (ASHA), its actor and Train's controller die with the worker
group's placement group still reserved — Ray frees a group made by a non-detached actor
only when its job ends too — and only the cleaner, which asks the state API whether the
controller lives, removes it. Without it a 2-core study hung after its first stopped DDP
trial, the next one waiting for CPUs forever (``benchmarks/RESULTS.md`` (a¹⁶)). Other
studies skip the dashboard (``include_dashboard=False``: Ray keeps a trimmed dashboard
process that advertises a state-API address nothing serves).

The cleaner asks the state API of "the" Ray on the machine: with no address given, Ray
looks for running GCS processes and refuses when it finds more than one ("Found multiple
active Ray instances") — another study, the other test process, anyone's Ray — and the
cleaner then never frees anything: the same hang, seen in CI (RESULTS.md (a¹⁷)). So the
local Ray's GCS listens on a port chosen before it starts (:func:`free_loopback_port`;
chosen again, up to three times, if another process takes it first), and every process of
the job has ``RAY_ADDRESS`` set to it in its runtime env (and ``RAY_API_SERVER_ADDRESS``
emptied, which the state API would read first): whatever in a trial asks "which Ray?" gets
its own. A ``RAY_ADDRESS`` in the user's shell does not make the local Ray join that
cluster (``address="local"``); ``vrsearch run --address`` joins one.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "GLOO_SOCKET_IFNAME": "lo", "VRSEARCH_LOCAL_RAY": "1"}
#: set unless the user set them (module doc): workers at the driver's niceness, no idle workers that
#: no actor of a study can use, no preemption watcher (one machine has no node to be preempted)
LOCAL_DEFAULTS = {
    "RAY_worker_niceness": "0",
    "RAY_prestart_worker_first_driver": "0",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}


def loopback_env() -> None:
    """Must run before ``ray`` is imported (it reads the variable at import) and before
    the raylet starts (its workers inherit the niceness setting from it)."""
    if "ray" in sys.modules and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
        import ray._private.ray_constants as rc

        rc.ENABLE_RAY_CLUSTER = False
    os.environ.update(LOCAL_ENV)
    for key, value in LOCAL_DEFAULTS.items():
        os.environ.setdefault(key, value)


def reap_stale(temp_dir: Path) -> list[int]:
    """Kill processes left by an earlier local Ray of this run (a driver killed with
    SIGKILL can orphan Ray's agents, which keep fixed loopback ports). A process is
    ours when it holds a file open under ``temp_dir`` — never anyone else's Ray."""
    prefix = str(temp_dir.resolve()) + os.sep
    killed = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            fds = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:
            continue
        if any(f.startswith(prefix) for f in fds):
            try:
                os.kill(int(proc.name), signal.SIGKILL)
                killed.append(int(proc.name))
            except OSError:
                pass
    return killed


@contextlib.contextmanager
def ray_params_defaults(**defaults: Any) -> Iterator[None]:
    """While inside: nodes started by ``ray.init`` take these ``RayParams`` defaults (each
    only if this Ray version has it as a defaulted positional-or-keyword parameter, as 2.60
    has all of them; all restored on exit)."""
    from ray._private.parameter import RayParams

    init = RayParams.__init__
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [p.name for p in inspect.signature(init).parameters.values() if p.kind in positional]
    original = init.__defaults__
    if original is None:
        yield
        return
    defaulted = names[-len(original) :]
    patched = list(original)
    for name, value in defaults.items():
        if name in defaulted:  # a name this Ray version does not default is left alone
            patched[defaulted.index(name)] = value
    init.__defaults__ = tuple(patched)
    try:
        yield
    finally:
        init.__defaults__ = original


def any_agent_port() -> contextlib.AbstractContextManager[None]:
    """Nodes started inside let their dashboard agent listen on any free port."""
    return ray_params_defaults(dashboard_agent_listen_port=0)


def no_monitors() -> contextlib.AbstractContextManager[None]:
    """Nodes started inside run neither Ray's autoscaler monitor (one machine: nothing to
    scale) nor its log monitor (it streams worker logs to a driver; ours sets
    ``log_to_driver=False``): ~1.7 s of wall per study on 2 cores (RESULTS.md (a⁗))."""
    return ray_params_defaults(no_monitor=True, include_log_monitor=False)


def loopback_init(
    temp_dir: Path,
    num_cpus: int | None = None,
    resources: dict[str, float] | None = None,
    env_vars: dict[str, str] | None = None,
    state_api: bool = False,
) -> None:
    """Start Ray on 127.0.0.1 with its temp files (sessions, sockets, logs) in ``temp_dir``,
    the custom ``resources`` the study's trials ask for and ``env_vars`` in the environment
    of the processes it starts for this job (its runtime env; Ray's own daemons keep this one);
    with ``state_api``, its dashboard too (module doc)."""
    loopback_env()
    import ray

    temp_dir.mkdir(parents=True, exist_ok=True)
    reap_stale(temp_dir)
    for attempt in range(3):
        port = free_loopback_port()
        try:
            _start(port, num_cpus, resources, env_vars, state_api, temp_dir)
            break
        except Exception:  # the GCS could not bind: another process took the port since it was chosen
            ray.shutdown()
            reap_stale(temp_dir)
            if attempt == 2 or port_is_free(port):
                raise
    node_ip, at = ray.util.get_node_ip_address(), ray.get_runtime_context().gcs_address
    if node_ip != "127.0.0.1":  # never run a study on a Ray that is reachable from outside
        ray.shutdown()
        raise RuntimeError(f"local Ray came up on {node_ip}, not 127.0.0.1")
    if at != f"127.0.0.1:{port}":  # a Ray that ignored the port: its processes would be told another's address
        ray.shutdown()
        raise RuntimeError(f"local Ray's GCS came up at {at}, not at the chosen 127.0.0.1:{port}")


def _start(
    port: int,
    num_cpus: int | None,
    resources: dict[str, float] | None,
    env_vars: dict[str, str] | None,
    state_api: bool,
    temp_dir: Path,
) -> None:
    """``ray.init`` of a new local Ray (never one that ``RAY_ADDRESS`` in this process names)
    whose GCS listens on ``port``, every process of the job told that address: ``RAY_ADDRESS``,
    and an empty ``RAY_API_SERVER_ADDRESS``, which the state API would prefer (module doc)."""
    import ray

    told = {"RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_API_SERVER_ADDRESS": ""}
    with any_agent_port(), no_monitors(), ray_params_defaults(gcs_server_port=port):
        ray.init(
            address="local",
            num_cpus=num_cpus or os.cpu_count(),
            resources=resources or None,
            _node_ip_address="127.0.0.1",
            dashboard_host="127.0.0.1",
            include_dashboard=state_api,
            _temp_dir=str(temp_dir),
            log_to_driver=False,
            logging_level=logging.ERROR,
            runtime_env={"env_vars": {**(env_vars or {}), **told}},
        )


def port_is_free(port: int) -> bool:
    """Whether ``port`` can be bound on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's choice), for the local Ray's GCS."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
