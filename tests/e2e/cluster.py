"""A simulated autoscaling Ray cluster on this machine, for the cluster tests.

Ray's own :class:`ray.cluster_utils.AutoscalingCluster` with its fake multi-node
provider: the real autoscaler (the head's monitor process) launches and
terminates worker "nodes" — each a raylet with its own resources and agents —
as the trials' resource demand comes and goes. Three things differ from Ray's
``start``/``shutdown``, for a machine that other people's Rays share:

* the configuration is built here (Ray's reads ``fake_multi_node/example.yaml``,
  which the ray wheel does not ship) and names the head's GCS address, so the
  provider's nodes join this head, not whatever listens on port 6379;
* every process listens on 127.0.0.1 only (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``,
  gloo on ``lo``) and keeps its files in a private temp dir;
* ``ray stop --force`` (which kills every Ray on the machine) is never run:
  shutting down kills the processes that hold files in that temp dir;
* it has its own authentication token (Ray's token mode, the default of a new
  cluster), in that temp dir, not the user's ``~/.ray/auth_token``: a driver
  joins it with :attr:`LoopbackAutoscalingCluster.env`.

All "nodes" share this machine's filesystem: the shared volume a real cluster
mounts at the same path on every node.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ray.cluster_utils import AutoscalingCluster

from vrsearch.orchestrate.local import reap_stale

HEAD_TYPE = "ray.head.default"
#: the fake provider starts a node's raylet with this variable set to the node's id
NODE_ID_ENV = "RAY_OVERRIDE_NODE_ID_FOR_TESTING"
#: what every process of the cluster (and a driver joining it) needs in its environment
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "GLOO_SOCKET_IFNAME": "lo"}
#: variables of our own local Ray (vrsearch.orchestrate.local.loopback_env) that must not reach the
#: cluster: the local DDP rendezvous, and settings for one machine only
LOCAL_ONLY_ENV = ("VRSEARCH_LOCAL_RAY", "RAY_prestart_worker_first_driver", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a cluster process or a driver: loopback, no local-Ray flags."""
    env = {k: v for k, v in os.environ.items() if k not in LOCAL_ONLY_ENV}
    return {**env, **LOOPBACK_ENV, **(extra or {})}


class LoopbackAutoscalingCluster(AutoscalingCluster):
    """``AutoscalingCluster`` on 127.0.0.1 with its own port and temp dir (see the module)."""

    def __init__(
        self,
        head_resources: dict,
        worker_node_types: dict,
        *,
        env: dict[str, str] | None = None,
        idle_timeout_minutes: float = 0.1,
    ):
        self.port = free_port()
        self.temp_dir = Path(tempfile.mkdtemp(prefix="vrs-ac-", dir="/tmp"))  # short: Unix socket paths
        token = self.temp_dir / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        #: the environment of the cluster's processes and of a driver that joins it
        self.env = clean_env({**(env or {}), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)})
        max_workers = sum(t.get("max_workers", 0) for t in worker_node_types.values())
        super().__init__(
            dict(head_resources), worker_node_types, max_workers=max_workers, idle_timeout_minutes=idle_timeout_minutes
        )

    def _generate_config(self, head_resources, worker_node_types, autoscaler_v2=False, **config_kwargs):
        node_types = {
            **worker_node_types,
            HEAD_TYPE: {"resources": head_resources, "node_config": {}, "max_workers": 0},
        }
        config = {
            "cluster_name": "vrsearch-test",
            "max_workers": 0,
            "upscaling_speed": 1.0,
            "idle_timeout_minutes": 0.1,
            "provider": {
                "type": "fake_multinode",
                "use_node_id_as_ip": True,
                "disable_node_updaters": True,
                "disable_launch_config_check": True,
                "gcs_address": f"127.0.0.1:{self.port}",
            },
            "available_node_types": node_types,
            "head_node_type": HEAD_TYPE,
            "auth": {},
            "docker": {},
            "file_mounts": {},
            "cluster_synced_files": [],
            "file_mounts_sync_continuously": False,
            "rsync_exclude": [],
            "rsync_filter": [],
            "initialization_commands": [],
            "setup_commands": [],
            "head_setup_commands": [],
            "worker_setup_commands": [],
            "head_start_ray_commands": [],
            "worker_start_ray_commands": [],
        }
        return {**config, **config_kwargs}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, _system_config=None, override_env=None) -> None:
        config = self.temp_dir / "autoscaling.json"
        config.write_text(json.dumps(self._config))
        head = dict(self._head_resources)
        cmd = [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--head",
            f"--port={self.port}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={head.pop('CPU', 0)}",
            f"--num-gpus={head.pop('GPU', 0)}",
            f"--temp-dir={self.temp_dir}",
            f"--autoscaling-config={config}",
            "--include-dashboard=false",
            f"--ray-client-server-port={free_port()}",
            "--dashboard-agent-listen-port=0",
            "--disable-usage-stats",
        ]
        if head:
            cmd.append(f"--resources={json.dumps(head)}")
        if _system_config:
            cmd.append(f"--system-config={json.dumps(_system_config, separators=(',', ':'))}")
        env = {**self.env, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1", **(override_env or {})}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        if proc.returncode != 0:
            self.shutdown()
            raise RuntimeError(f"ray start failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")

    def shutdown(self) -> None:
        for _ in range(3):  # a node the autoscaler was starting may open its files after the first pass
            if not reap_stale(self.temp_dir):
                break
            time.sleep(1)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    # --- what the tests look at ----------------------------------------

    def nodes(self) -> dict[str, dict]:
        """Every node the GCS has seen: ``{node id: {"alive": bool, "head": bool}}`` (asked
        from a subprocess: this process's Ray keeps its own authentication settings)."""
        code = (
            "import json, sys; from ray._raylet import GcsClient; "
            "infos = GcsClient(address=sys.argv[1]).get_all_node_info(timeout=30); "
            "print(json.dumps({k.hex(): {'alive': v.state == 0, 'head': v.is_head_node} "
            "for k, v in infos.items()}))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, self.address], env=self.env, capture_output=True, text=True, timeout=60
        )
        if out.returncode != 0:
            raise RuntimeError(f"cannot read the cluster's nodes: {out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    def workers(self) -> dict[str, bool]:
        """The worker nodes (every one launched by the autoscaler): ``{node id: alive}``."""
        return {k: v["alive"] for k, v in self.nodes().items() if not v["head"]}

    def wait_for(self, predicate, timeout: float, what: str):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(2)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; nodes: {self.workers()}")

    def node_of(self, pid: int) -> str:
        """The id of the node whose raylet started process ``pid`` (a Ray worker)."""
        return _environ(pid).get(NODE_ID_ENV, "")

    def kill_node(self, node_id: str) -> list[int]:
        """SIGKILL every process of one worker node (its raylet, agents and Ray workers), as
        a reclaimed spot instance would vanish; the autoscaler is not told."""
        pids = [pid for pid in _pids() if _environ(pid).get(NODE_ID_ENV) == node_id]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and int(p.name) != os.getpid()]


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
