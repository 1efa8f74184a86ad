"""Named fault points, armed only by the fault-injection tests.

``VRSEARCH_FAULT=<action>:<point>[:<n>]`` makes the process that reaches
``point(<point>[, n])`` either SIGKILL itself (``kill``), SIGKILL the study's
driver (``kill-driver``: a Ray worker taking the driver down with it, as a
lost head node would), fail as a full disk would (``enospc``), stop there
until something kills it (``hang``, at most :data:`HANG_S`: a test kills the
node it runs on) or wait :data:`PAUSE_S` and go on (``pause``: a window in
which a test can act on a trial known to be mid-training). With
``VRSEARCH_FAULT_ONCE=<marker file>`` the fault fires once across all
processes (whoever creates the marker first, and writes its pid into it), so
a resumed or retried run goes through; with ``VRSEARCH_FAULT_SKIP=<k>`` as
well, the first ``k`` arrivals at the point pass (each claims a
``<marker>.pass<i>`` file) and the next one fires, so a test can pick "the
third trial to reach step 4" without racing the study (the pass files stay:
re-arming a marker means deleting them as well as the marker). With
``VRSEARCH_FAULT_WORLD=<w>`` only a training process of a ``w``-rank trial
fires at ``step`` or ``final`` (the points that know the world size; any other
point, or a trial of another size, passes), so a test can stop the DDP trial
of a study whose other trials train alone. Unset (always, outside tests) a
point costs one environment lookup.

Points: ``write`` (any atomic write, between the temporary file and the
rename), ``tuner`` (the driver after Tune wrote ``tuner.pkl`` and before its
first experiment state), ``compact`` (the driver rebuilding the top-level
parquet files: its history.parquet, after trials.parquet was replaced),
``report`` (the driver writing report.html), ``step`` (a training worker
after optimizer step ``n``) and ``final`` (a training worker after the final
checkpoint, before the trial's result is written).
"""

from __future__ import annotations

import errno
import os
import signal
import time

ENV, ONCE, SKIP, WORLD = "VRSEARCH_FAULT", "VRSEARCH_FAULT_ONCE", "VRSEARCH_FAULT_SKIP", "VRSEARCH_FAULT_WORLD"
#: how long ``hang`` waits to be killed before it goes on
HANG_S = 600
#: how long ``pause`` waits before it goes on
PAUSE_S = 60
#: the driver's pid, exported by the driver for ``kill-driver`` (inherited by Ray's workers)
DRIVER = "VRSEARCH_FAULT_DRIVER"


def point(name: str, index: int | None = None, world: int | None = None) -> None:
    """Fire the armed fault if this is its point (``index``: e.g. the step; ``world``: the
    number of ranks of the trial that reaches it, for ``VRSEARCH_FAULT_WORLD``)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    action, _, where = spec.partition(":")
    target, _, n = where.partition(":")
    if target != name or (n and (index is None or int(n) != index)):
        return
    only = os.environ.get(WORLD)
    if only and world != int(only):
        return
    marker = os.environ.get(ONCE)
    if marker and not _claim(marker, int(os.environ.get(SKIP) or 0)):
        return
    _fire(action)


def _create(path: str) -> bool:
    """Create ``path`` holding this pid unless it exists (atomic across processes)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def _claim(marker: str, skip: int) -> bool:
    """Whether this arrival fires: not once the marker exists (fired or disarmed), not
    while one of the ``skip`` pass slots is free (this arrival takes it)."""
    if os.path.exists(marker):
        return False
    if any(_create(f"{marker}.pass{i}") for i in range(skip)):
        return False
    return _create(marker)


def _fire(action: str) -> None:
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "kill-driver":  # and this worker with it: nothing more of the trial is written
        os.kill(int(os.environ[DRIVER]), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    elif action == "hang":
        time.sleep(HANG_S)
    elif action == "pause":
        time.sleep(PAUSE_S)
