"""The performance benchmark suite from one command: runs every benchmark (each
measures its ratios side by side inside its own process), prints one summary
table and writes ``benchmarks/results/<name>.json`` plus ``summary.json``
(date, machine, command, every headline number).

    .venv/bin/python benchmarks/run_all.py [--quick] [--only NAME ...]

(a) orchestration: study wall / bare engine, per-trial overhead with and
    without a worker group;  (b) per method: step time / its networks'
    forward+backward;  (b') DVCL step and memory;  (c) sampler time for 256
    anchors per class on a 64×128×128 batch;  (c') sampler bias per rounding
    and ARCO's L_contrast variance per sampler;  (d) data-loader stall
    fraction;  (e) search efficiency of TPE+ASHA vs a grid;  (f) on a GPU
    machine only: UNet throughput / MFU with and without bf16 and
    channels_last, and an nccl DDP step;  (g) phantom generation: cohort /
    classic population per subject and per dataset;  (h) per-case HD95/ASSD
    from one surface-distance pass against two.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"

#: name -> (script, full arguments, quick arguments)
SUITE = {
    "orchestration": ("orchestration.py", [], ["--trials", "2", "--iterations", "10"]),
    "ray_start": ("ray_start.py", [], ["--repeats", "1"]),
    "method_step": ("method_step.py", [], ["--repeats", "3"]),
    "dvcl_step": ("dvcl_step.py", [], ["--repeats", "3"]),
    "sampler_speed": ("sampler_speed.py", [], ["--repeats", "3"]),
    "metrics_speed": ("metrics_speed.py", [], ["--repeats", "2", "--size", "32", "32", "24"]),
    "sampler_variance": ("sampler_variance.py", [], ["--quick"]),
    "dataloader_stall": ("dataloader_stall.py", [], ["--iterations", "8"]),
    "search_efficiency": ("search_efficiency.py", [], ["--repeats", "2"]),
    "seed_policy": ("seed_policy.py", [], ["--sims", "500"]),
    "gpu": ("gpu_throughput.py", [], ["--steps", "5"]),
    "phantom_speed": ("phantom_speed.py", [], ["--subjects", "4", "--cases", "8", "--unlabeled", "0"]),
}


def machine() -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "cuda": torch.cuda.is_available(),
    }
    if info["cuda"]:
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def headline(name: str, data) -> str:
    """One line of the most telling numbers of a benchmark's JSON."""
    if data is None:
        return "no result"
    if name == "orchestration":
        return "; ".join(
            f"{w} worker(s)/trial {mode}: study/bare {r[mode]['ratio']:.2f}, "
            f"fixed {r[mode]['fixed_per_trial_s']:.1f}s/trial"
            for w, r in data["rows"].items()
            for mode in ("cold", "warm")
            if mode in r
        )
    if name == "ray_start":
        med = {k: v["median_s"] for k, v in data["rows"].items()}
        return ", ".join(f"{k} {v:.1f}s" for k, v in med.items()) + f" (fixed/any {data['ratio_fixed_over_any']:.2f})"
    if name == "method_step":
        return "step/floor " + ", ".join(f"{m} {r['ratio']:.2f}" for m, r in data.items())
    if name == "dvcl_step":
        steps = ", ".join(f"{k} step/floor {v['ratio']:.2f}" for k, v in data.get("step", {}).items())
        mem = data.get("memory", {}).get("rows", [])
        peaks = ", ".join(f"{r['unreliable']:.0e}: {r['dvcl_peak_mb']:.0f} MB" for r in mem)
        return f"{steps}; DVCL-term peak {peaks}" if peaks else steps
    if name == "sampler_speed":
        return ", ".join(f"{r['sampler']}/{r['grid']} {r['ms']:.1f} ms ({r['x_ns']:.2f}x NS)" for r in data["rows"])
    if name == "metrics_speed":
        return ", ".join(
            f"{'x'.join(map(str, r['size']))}: {r['one_pass_s']:.2f}s ({r['ratio']:.2f}x two passes)"
            for r in data["rows"]
        )
    if name == "sampler_variance":
        worst = {
            r: max(x["max_abs_bias_se"] for x in data["rounding"] if x["rounding"] == r) for r in ("largest", "auto")
        }
        arco = ", ".join(
            f"{r['sampler']}/{r['grid']} {r['var_vs_ns']:.2f}" for r in data["arco"] if r["sampler"] != "ns"
        )
        return (
            f"max |bias|/SE: largest {worst['largest']:.0f}, auto {worst['auto']:.1f}; ARCO L_contrast var × NS: {arco}"
        )
    if name == "dataloader_stall":
        return ", ".join(
            f"{k}: stall {v['stall']:.2f}" for k, v in data.items() if isinstance(v, dict) and "stall" in v
        )
    if name == "search_efficiency":
        top = min(data["settings"], key=lambda r: (r["fraction_median"], r["fraction_q3"]))
        return (
            f"best search ({top['search']}) needs {top['fraction_median']:.2f} of the exhaustive compute "
            f"(median of {data['repeats']}) to reach the table's best - {data['target']}"
        )
    if name == "seed_policy":
        sim = data["simulation"]
        ps = {pol: [100 * sim[m][pol]["p_within_target"] for m in sim] for pol in next(iter(sim.values()))}
        span = {pol: f"{min(v):.0f}-{max(v):.0f}" for pol, v in ps.items()}
        return f"seed noise sd {data['sigma']:.4f} vs spread {data['true_sd']:.4f}; P(within target) " + ", ".join(
            f"{pol} {p}%" for pol, p in span.items()
        )
    if name == "phantom_speed":
        return (
            f"cohort/classic {data['ratio_per_subject']:.2f} per subject, {data['ratio_dataset']:.2f} per dataset; "
            + ", ".join(f"{p} {s:.1f}s for {data['subjects']}" for p, s in data["dataset_s"].items())
        )
    if name == "gpu" and isinstance(data, dict) and data.get("skipped"):
        return f"not run: {data['skipped']}"
    text = json.dumps(data)
    return text if len(text) < 160 else text[:157] + "..."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, noisier numbers)")
    ap.add_argument("--only", nargs="*", choices=sorted(SUITE), default=None)
    args = ap.parse_args()
    RESULTS.mkdir(exist_ok=True)
    names = args.only or list(SUITE)
    summary = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "results": {},
    }
    for name in names:
        script, full, quick = SUITE[name]
        out = RESULTS / f"{name}.json"
        cmd = [sys.executable, str(HERE / script), *(quick if args.quick else full), "--json", str(out)]
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, text=True)
        took = time.perf_counter() - t0
        data = json.loads(out.read_text()) if proc.returncode == 0 and out.exists() else None
        summary["results"][name] = {"seconds": round(took, 1), "ok": proc.returncode == 0, "data": data}
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2))
    print(
        f"\nbenchmarks on {summary['machine']['platform']}, {summary['machine']['cpus']} CPUs, "
        f"{summary['machine'].get('gpu', 'no GPU')}, {summary['date']}"
    )
    for name, r in summary["results"].items():
        print(f"{name:>18}  {'ok ' if r['ok'] else 'FAILED'} {r['seconds']:>7.0f}s  {headline(name, r['data'])}")
    if not all(r["ok"] for r in summary["results"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
