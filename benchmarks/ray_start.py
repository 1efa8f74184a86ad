"""Start-up of vrsearch's local Ray beside another Ray (issue 20): ``loopback_init`` with the
dashboard agent on any free port against the same call with Ray's fixed agent port 52365,
while that port is taken (as another Ray on the machine takes it; here a plain listening
socket, or whoever already holds it). Arms alternate, each start in a fresh process; the
time is ``loopback_init`` alone (imports excluded).

    .venv/bin/python benchmarks/ray_start.py [--repeats 4] [--json benchmarks/results/ray_start.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

START = (
    "import sys, time, contextlib; from pathlib import Path; from vrsearch.orchestrate import local; import ray\n"
    "if sys.argv[2] == 'fixed': local.any_agent_port = contextlib.nullcontext\n"
    "t = time.perf_counter(); local.loopback_init(Path(sys.argv[1]), num_cpus=1); print(time.perf_counter() - t)\n"
    "ray.shutdown()"
)
ARMS = {"any free port": "any", "fixed port 52365": "fixed"}


def start_once(arm: str) -> float:
    temp = tempfile.mkdtemp(prefix="vrs-rs-", dir="/tmp")  # short: Unix socket paths
    try:
        out = subprocess.run([sys.executable, "-c", START, temp, arm], capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        return float(out.stdout.split()[-1])
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    held, by_script = socket.socket(), True
    try:
        held.bind(("127.0.0.1", 52365))
        held.listen()
    except OSError:
        by_script = False  # another process (a Ray's agent) holds it already
    times: dict[str, list[float]] = {name: [] for name in ARMS}
    try:
        for _ in range(args.repeats):
            for name, arm in ARMS.items():
                times[name].append(start_once(arm))
    finally:
        held.close()
    rows = {name: {"median_s": statistics.median(t), "all_s": t} for name, t in times.items()}
    for name, r in rows.items():
        print(f"{name:>18}: median {r['median_s']:.1f} s  ({', '.join(f'{x:.1f}' for x in r['all_s'])})")
    ratio = rows["fixed port 52365"]["median_s"] / rows["any free port"]["median_s"]
    print(f"fixed / any: {ratio:.2f}")
    if args.json:
        out = {"rows": rows, "ratio_fixed_over_any": ratio, "port_held_by_script": by_script}
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
