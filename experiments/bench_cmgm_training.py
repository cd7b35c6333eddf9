"""cmgm in training (forward + backward) at the quick search's sizes, with its attention
through ``scaled_dot_product_attention`` and through the plain softmax formula.

At width 0.25 hrnet_lite's branches have 10, 20 and 40 channels; cmgm falls back to 5
heads there (head width 2 and 4), and its cost grows with heads x N^2. Prints the median
ms per forward + backward of each path, alternating, and their largest difference.

Run (about 30 seconds):

    python experiments/bench_cmgm_training.py
    python experiments/bench_cmgm_training.py --batch 64 --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import torch

from nasfuse.ops import create_op
from nasfuse.runtime import device_name

SIZES = ((10, 16), (20, 8), (40, 4))  # (channels, side) of the quick supernet's branches


def step_ms(op: torch.nn.Module, xs: list[torch.Tensor], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        op(xs).sum().backward()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128, help="the quick supernet's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="cmgm")
    load = os.getloadavg()
    rows = []
    for channels, side in SIZES:
        xs = [torch.randn(args.batch, channels, side, side, requires_grad=True) for _ in "xy"]
        op = create_op("cmgm", channels, 2).train()
        times: dict[str, list[float]] = {"sdpa": [], "math": []}
        step_ms(op, xs, 2)  # warm-up
        for _ in range(args.rounds):
            for impl in times:
                op.attn_impl = impl
                times[impl].append(step_ms(op, xs, args.runs))
        with torch.no_grad():
            outs = []
            for impl in times:
                op.attn_impl = impl
                outs.append(op.eval()(xs))
        gap = float((outs[0] - outs[1]).abs().max())
        rows.append((channels, side, op.heads, times, gap))
    print(f"machine: {device_name('cpu')}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(f"load average before (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in load)}")
    print(f"batch {args.batch}, {args.threads} threads, K = 2; ms per forward + backward")
    for channels, side, heads, times, gap in rows:
        sdpa, plain = (statistics.median(times[impl]) for impl in ("sdpa", "math"))
        print(
            f"  C={channels:3d} {side:2d}x{side:<2d} {heads} heads: sdpa {sdpa:7.1f}, "
            f"math {plain:7.1f} (sdpa / math {sdpa / plain:.2f}x; outputs differ by {gap:.1e})"
        )


if __name__ == "__main__":
    main()
