"""GPU only: 3D UNet training throughput and model-FLOPs utilisation with and
without bf16 autocast and channels_last_3d, side by side in one process, and
an nccl DDP step. On a machine without CUDA it writes ``{"skipped": ...}``.

The model is the FLARE studies' 3D UNet (MONAI, channels 16-256, 2 residual
units) on a batch of 2 × 1 × 96³ patches with 14 classes. FLOPs of one
forward+backward are counted with ``torch.utils.flop_counter`` (in fp32, so
autocast does not change the count); MFU = FLOPs / step time / the device's
dense peak for the arm's math (bf16 tensor cores for bf16, TF32 for fp32).
Arms run round-robin, median step time reported.
    .venv/bin/python benchmarks/gpu_throughput.py [--steps 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

#: dense peak FLOP/s by device-name fragment: (bf16, tf32)
PEAKS = {
    "H200": (989e12, 494e12),
    "H100": (989e12, 494e12),
    "A100": (312e12, 156e12),
    "L4": (121e12, 60e12),
    "A10G": (70e12, 35e12),
}
ARMS = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]


def build(channels_last: bool):
    from monai.networks.nets import UNet

    net = UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=14,
        channels=(16, 32, 64, 128, 256),
        strides=(2, 2, 2, 2),
        num_res_units=2,
    ).cuda()
    return net.to(memory_format=torch.channels_last_3d) if channels_last else net


def step(net, opt, x, y, precision: str) -> None:
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = torch.nn.functional.cross_entropy(net(x).float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def count_flops(net, x, y) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
    net.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def nccl_ddp_step() -> dict:
    """A one-rank nccl process group and one DDP training step on this GPU."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("MASTER_PORT", "29533"))
    dist.init_process_group("nccl", rank=0, world_size=1)
    try:
        net = DDP(build(False), device_ids=[0], gradient_as_bucket_view=True)
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        x = torch.randn(1, 1, 64, 64, 64, device="cuda")
        y = torch.randint(0, 14, (1, 64, 64, 64), device="cuda")
        t0 = time.perf_counter()
        step(net, opt, x, y, "bf16")
        torch.cuda.synchronize()
        return {
            "backend": dist.get_backend(),
            "nccl_version": ".".join(map(str, torch.cuda.nccl.version())),
            "step_s": time.perf_counter() - t0,
            "ok": True,
        }
    finally:
        dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        result = {"skipped": "no CUDA device on this machine"}
        print(result["skipped"])
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name(0)
    peak = next((v for k, v in PEAKS.items() if k in name), None)
    p = args.patch
    x = torch.randn(2, 1, p, p, p, device="cuda")
    y = torch.randint(0, 14, (2, p, p, p), device="cuda")
    flops = count_flops(build(False), x, y)
    nets = {arm: build(arm[1]) for arm in ARMS}
    opts = {arm: torch.optim.Adam(n.parameters(), 1e-3) for arm, n in nets.items()}
    inputs = {arm: (x.to(memory_format=torch.channels_last_3d) if arm[1] else x) for arm in ARMS}
    times: dict = {arm: [] for arm in ARMS}
    for i in range(args.steps + 3):
        for arm in ARMS:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            step(nets[arm], opts[arm], inputs[arm], y, arm[0])
            torch.cuda.synchronize()
            if i >= 3:  # warm-up: cudnn autotuning
                times[arm].append(time.perf_counter() - t0)
    rows = []
    base = statistics.median(times[ARMS[0]])
    for arm in ARMS:
        t = statistics.median(times[arm])
        mfu = flops / t / (peak[0] if arm[0] == "bf16" else peak[1]) if peak else None
        rows.append(
            {
                "precision": arm[0],
                "channels_last": arm[1],
                "step_ms": 1e3 * t,
                "voxels_per_s": 2 * p**3 / t,
                "speedup_vs_fp32": base / t,
                "mfu": mfu,
            }
        )
    result = {
        "device": name,
        "patch": p,
        "batch": 2,
        "flops_per_step": flops,
        "rows": rows,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
        "nccl_ddp": nccl_ddp_step(),
    }
    print(f"{name}: UNet 3D, 2 × {p}³, {flops / 1e12:.2f} TFLOP per step")
    print(f"{'precision':>9} {'ch_last':>7} {'step ms':>8} {'Mvox/s':>7} {'× fp32':>6} {'MFU':>6}")
    for r in rows:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        print(
            f"{r['precision']:>9} {str(r['channels_last']):>7} {r['step_ms']:>8.1f} "
            f"{r['voxels_per_s'] / 1e6:>7.1f} {r['speedup_vs_fp32']:>6.2f} {mfu:>6}"
        )
    print(f"nccl DDP step: {result['nccl_ddp']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
