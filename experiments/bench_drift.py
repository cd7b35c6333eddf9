"""How much a network's measured time drifts, alone and as a ratio to a reference network.

Six random hrnet_lite networks (32×32, batch 32, 1 thread) are each measured in three
passes; every measurement alternates the network with the all-``add`` network
(``R M R M ... M R``). For 3 and for 8 timed runs, the script prints how far the three
measurements of a network lie apart (median and max over all pairs, in %) for four
estimates: the median time, the minimum time, the median of each run's ratio to its
neighbouring reference runs (what ``measure_ratio`` returns), and the ratio of medians.

Run (about 4 minutes on a 2-core CPU):

    python experiments/bench_drift.py
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import random
import statistics
import time
from collections.abc import Callable

import torch

from nasfuse.latency import random_arch
from nasfuse.runtime import device_name
from nasfuse.spaces import load_space
from nasfuse.supernet import build_model

Runs = tuple[list[float], list[float]]  # (model times, reference times), ms


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="hrnet_lite")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--networks", type=int, default=6)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--runs", type=int, default=8, help="timed runs per measurement")
    parser.add_argument("--seed", type=int, default=11)
    return parser.parse_args()


def spread(measurements: list[list[Runs]], estimate: Callable[[Runs], float]) -> str:
    """Median and max over networks and pairs of passes of |a - b| / b, in %."""
    values = [[estimate(runs) for runs in one_pass] for one_pass in measurements]
    gaps = [
        abs(a[net] - b[net]) / b[net] * 100
        for a, b in itertools.combinations(values, 2)
        for net in range(len(values[0]))
    ]
    return f"{statistics.median(gaps):5.2f}% (max {max(gaps):5.2f}%)"


def main() -> int:
    args = parse_args()
    torch.set_num_threads(1)
    space = load_space(args.space)
    rng = random.Random(args.seed)
    models = [build_model(space, random_arch(space, rng)).eval() for _ in range(args.networks)]
    reference = build_model(space, {name: "add" for name in space.sites}).eval()
    x = torch.randn(args.batch_size, space.in_chans, space.input_size, space.input_size)
    print(
        f"{args.networks} random {space.name} networks, input {tuple(x.shape)}, on "
        f"{device_name('cpu')}, torch {torch.__version__}, python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )

    def timed(model: torch.nn.Module) -> float:
        start = time.perf_counter()
        model(x)
        return (time.perf_counter() - start) * 1e3

    measurements: list[list[Runs]] = []
    started = time.perf_counter()
    with torch.inference_mode():
        for _ in range(args.passes):
            one_pass = []
            for model in models:
                model(x)  # warm-up
                reference(x)
                model_ms, reference_ms = [], [timed(reference)]
                for _ in range(args.runs):
                    model_ms.append(timed(model))
                    reference_ms.append(timed(reference))
                one_pass.append((model_ms, reference_ms))
            measurements.append(one_pass)

    for runs in sorted({min(3, args.runs), args.runs}):
        estimates: dict[str, Callable[[Runs], float]] = {
            "median time": lambda r, n=runs: statistics.median(r[0][:n]),
            "minimum time": lambda r, n=runs: min(r[0][:n]),
            "median of run ratios": lambda r, n=runs: statistics.median(
                r[0][i] / ((r[1][i] + r[1][i + 1]) / 2) for i in range(n)
            ),
            "ratio of medians": lambda r, n=runs: (
                statistics.median(r[0][:n]) / statistics.median(r[1][: n + 1])
            ),
        }
        print(f"{runs} runs per measurement, {args.passes} passes: measurements lie apart by")
        for name, estimate in estimates.items():
            print(f"  {name:22s} {spread(measurements, estimate)}")
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
