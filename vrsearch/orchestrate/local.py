"""A local Ray instance that listens on the loopback interface only.

Ray resolves a loopback ``_node_ip_address`` to the machine's address unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is set *before* ``import ray``; with
it every Ray process (GCS, raylet, workers, dashboard and agents) binds
127.0.0.1. ``GLOO_SOCKET_IFNAME=lo`` keeps gloo's DDP connections there too,
and the Train rendezvous uses :mod:`vrsearch.orchestrate.ddp`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "GLOO_SOCKET_IFNAME": "lo", "VRSEARCH_LOCAL_RAY": "1"}


def loopback_env() -> None:
    """Must run before ``ray`` is imported (it reads the variable at import)."""
    if "ray" in sys.modules and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
        import ray._private.ray_constants as rc

        rc.ENABLE_RAY_CLUSTER = False
    os.environ.update(LOCAL_ENV)


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


def loopback_init(temp_dir: Path, num_cpus: int | None = None, resources: dict[str, float] | None = None) -> None:
    """Start Ray on 127.0.0.1 with its temp files (sessions, sockets, logs) in ``temp_dir``
    and the custom ``resources`` the study's trials ask for."""
    loopback_env()
    import ray

    temp_dir.mkdir(parents=True, exist_ok=True)
    reap_stale(temp_dir)
    ray.init(
        num_cpus=num_cpus or os.cpu_count(),
        resources=resources or None,
        _node_ip_address="127.0.0.1",
        dashboard_host="127.0.0.1",
        include_dashboard=False,
        _temp_dir=str(temp_dir),
        log_to_driver=False,
        logging_level=logging.ERROR,
    )
    node_ip = ray.util.get_node_ip_address()
    if node_ip != "127.0.0.1":  # never run a study on a Ray that is reachable from outside
        ray.shutdown()
        raise RuntimeError(f"local Ray came up on {node_ip}, not 127.0.0.1")
