"""DDP process groups whose rendezvous listens on the loopback interface only.

Ray Train's default torch backend starts torch's ``TCPStore`` rendezvous on
rank 0, and ``TCPStore`` binds every interface whatever host it is given.
For a local (single-machine) study that would expose a port to the network,
so :class:`LoopbackTorchConfig` binds a socket to 127.0.0.1 itself and hands
its descriptor to the store (``master_listen_fd``, libuv backend). Only for
local gloo (CPU) runs; clusters and nccl use Ray's own ``TorchConfig``.
Relies on ``ray.train.torch.config._TorchBackend`` (ray 2.60, pinned).

:class:`LeanTorchTrainer` is Ray Train's ``TorchTrainer`` without the dataset-manager
actor it starts for every worker group even when given no Ray Dataset (vrsearch's
workers read their cases themselves).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import ray
from ray.train import BackendConfig
from ray.train._internal.base_worker_group import BaseWorkerGroup
from ray.train.torch.config import TorchConfig, _set_torch_distributed_env_vars, _TorchBackend
from ray.train.v2._internal.callbacks import DatasetsCallback
from ray.train.v2.api.callback import RayTrainCallback
from ray.train.v2.torch.torch_trainer import TorchTrainer  # the V2 trainer, as ray.train.torch exports it in 2.60

_HELD: dict[str, Any] = {}  # keeps rank 0's listening socket and store alive in its worker process


def _start_store(world_size: int, timeout_s: int) -> int:
    import torch.distributed as dist

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    store = dist.TCPStore(
        "127.0.0.1",
        port,
        world_size,
        True,
        timeout=timedelta(seconds=timeout_s),
        wait_for_workers=False,
        master_listen_fd=sock.fileno(),
        use_libuv=True,
    )
    _HELD["store"], _HELD["socket"] = store, sock
    return port


def _join(backend: str, world_rank: int, world_size: int, port: int, timeout_s: int) -> None:
    import torch.distributed as dist

    t0 = time.perf_counter()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    store = _HELD.get("store") or dist.TCPStore(
        "127.0.0.1", port, world_size, False, timeout=timedelta(seconds=timeout_s)
    )
    dist.init_process_group(
        backend, store=store, rank=world_rank, world_size=world_size, timeout=timedelta(seconds=timeout_s)
    )
    _HELD["rendezvous_s"] = time.perf_counter() - t0


def rendezvous_seconds() -> float | None:
    """How long this worker's process-group rendezvous took (None: not through this backend)."""
    return _HELD.get("rendezvous_s")


class _LoopbackBackend(_TorchBackend):
    def on_start(self, worker_group: BaseWorkerGroup, backend_config: BackendConfig) -> None:
        if not isinstance(backend_config, TorchConfig):
            raise TypeError(f"the loopback backend needs a TorchConfig, not {type(backend_config).__name__}")
        n = len(worker_group)
        port = worker_group.execute_single(0, _start_store, world_size=n, timeout_s=backend_config.timeout_s)
        worker_group.execute(_set_torch_distributed_env_vars)
        backend = backend_config.backend or "gloo"
        ray.get(
            [  # type: ignore[arg-type]  # ray's async refs and ray.get's name two ObjectRef types
                worker_group.execute_single_async(
                    i, _join, backend=backend, world_rank=i, world_size=n, port=port, timeout_s=backend_config.timeout_s
                )
                for i in range(n)
            ]
        )


@dataclass
class LoopbackTorchConfig(TorchConfig):
    """``TorchConfig`` whose rendezvous store listens on 127.0.0.1 only."""

    @property
    def backend_cls(self) -> type[_LoopbackBackend]:
        return _LoopbackBackend


class LeanTorchTrainer(TorchTrainer):
    """``TorchTrainer`` whose ``fit()`` starts no ``DatasetManager`` actor when it has no datasets.

    Ray Train V2 (ray 2.60) gives every controller a ``DatasetsCallback``, which starts a
    dataset manager (a new Python process, Ray Data imported) at every worker-group start,
    retries included, whether or not there is a dataset to split; vrsearch passes none, and
    that process only competed with the workers' start for the CPUs (``benchmarks/RESULTS.md``
    (a¹⁶)). The placement-group cleaner stays: it frees a stopped trial's CPUs
    (:mod:`vrsearch.orchestrate.local`). Relies on ``DataParallelTrainer._create_default_callbacks``
    (ray 2.60, pinned); with datasets it is Ray's trainer unchanged.
    """

    def _create_default_callbacks(self) -> list[RayTrainCallback]:
        callbacks = super()._create_default_callbacks()
        if self.datasets:
            return callbacks
        return [c for c in callbacks if not isinstance(c, DatasetsCallback)]
