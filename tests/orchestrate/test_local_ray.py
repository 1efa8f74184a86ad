"""The local Ray's dashboard agent takes any free port: a second Ray on the machine (another
study, the other test process) does not wait in the agent's bind retries for port 52365."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from vrsearch.orchestrate.local import any_agent_port

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


@pytest.mark.slow
def test_a_local_ray_starts_beside_one_that_holds_the_agent_port():
    """Port 52365 taken (by this test, or by another Ray already): the local Ray's agent
    binds elsewhere at once; without the free port its log shows the failed binds."""
    held = socket.socket()
    try:
        held.bind(("127.0.0.1", RAY_AGENT_PORT))
        held.listen()
    except OSError:
        pass  # someone else's Ray holds it: the same situation
    code = (
        "import sys; from pathlib import Path; from vrsearch.orchestrate.local import loopback_init; "
        "loopback_init(Path(sys.argv[1]), num_cpus=1); import ray; "
        "print(ray._private.worker.global_worker.node.dashboard_agent_listen_port); ray.shutdown()"
    )
    temp = Path(tempfile.mkdtemp(prefix="vrs-t-", dir="/tmp"))  # short: Unix socket paths
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(temp)], capture_output=True, timeout=180)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        logs = list(temp.glob("session_*/logs/dashboard_agent.log"))
        assert logs, "no dashboard agent log"
        text = logs[0].read_text()
    finally:
        held.close()
        shutil.rmtree(temp, ignore_errors=True)
    assert "Failed to bind" not in text and "failed to bind" not in text, text[-2000:]
    bound = re.search(r"Dashboard agent http address: 127\.0\.0\.1:(\d+)", text)
    assert bound, text[-2000:]  # the agent's HTTP server is up, on the loopback interface
    port = int(bound.group(1))
    assert port != RAY_AGENT_PORT and proc.stdout.decode().split()[-1] == str(port)  # the node knows it
