"""A local Ray instance that listens on the loopback interface only."""

from __future__ import annotations

import os
from pathlib import Path


def loopback_init(temp_dir: Path, num_cpus: int | None = None) -> None:
    """Start Ray on 127.0.0.1 with its temp files (sessions, sockets, logs) in ``temp_dir``."""
    import ray

    temp_dir.mkdir(parents=True, exist_ok=True)
    ray.init(
        num_cpus=num_cpus or os.cpu_count(),
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        dashboard_host="127.0.0.1",
        _temp_dir=str(temp_dir),
        log_to_driver=False,
        configure_logging=True,
        logging_level="ERROR",
    )
