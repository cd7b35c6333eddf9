"""How much the quick search's latency table moves from one build to the next.

Builds the table of the quick search's space (hrnet_lite, width 0.25, 16x16, one module per
stage, batch 1, one thread) several times back to back, with the quick budget's light
settings and with the table's defaults, and predicts the same random architectures with
each build. A search compares architectures by these predictions, so what matters is how
an architecture's latency relative to all-add moves between builds: for each architecture,
its largest ratio to all-add over the builds divided by its smallest.

Run (about 1.5 minutes with 4 builds of each):

    python experiments/bench_table_stability.py
    python experiments/bench_table_stability.py --builds 6 --archs 50
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import torch

from nasfuse.latency import BuildOptions, LatencyTable
from nasfuse.runtime import device_name
from nasfuse.spaces import load_space

QUICK_SPACE = {
    "width_mult": 0.25,
    "input_size": 16,
    "stages.0.modules": 1,
    "stages.1.modules": 1,
    "stages.2.modules": 1,
}
# What nasfuse.search._artifacts.ensure_latency_table passes for the quick budget.
SETTINGS = {"quick": ({"runs": 10, "rounds": 1}, 6), "default": ({}, 20)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--builds", type=int, default=4)
    parser.add_argument("--archs", type=int, default=30, help="random architectures predicted")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="cmgm:")

    load = os.getloadavg()
    space = load_space("hrnet_lite", QUICK_SPACE)
    archs = [space.random_arch(100 + i) for i in range(args.archs)]
    all_add = {site: "add" for site in space.sites}
    print(f"machine: {device_name('cpu')}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(f"load average before (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in load)}")
    print(f"the quick space, batch 1, 1 thread; {args.archs} random architectures\n")
    print("| settings | build | s | all-add, ms | median ratio to all-add | largest |")
    print("|---|---:|---:|---:|---:|---:|")
    spreads = {}
    for name, (light, samples) in SETTINGS.items():
        ratios = []
        for build in range(args.builds):
            started = time.perf_counter()
            table = LatencyTable.build(
                space, BuildOptions(batch_size=1, threads=1, progress=False, **light)
            )
            table.calibrate(space, samples=samples, seed=0, progress=False, **light)
            seconds = time.perf_counter() - started
            base = float(table.predict(all_add))
            ratios.append([float(table.predict(arch)) / base for arch in archs])
            print(
                f"| {name} | {build + 1} | {seconds:.1f} | {base:.2f} | "
                f"{statistics.median(ratios[-1]):.3f} | {max(ratios[-1]):.3f} |"
            )
        per_arch = [
            max(r[i] for r in ratios) / min(r[i] for r in ratios) for i in range(len(archs))
        ]
        spreads[name] = (statistics.median(per_arch), max(per_arch))
    print("\nan architecture's ratio to all-add, largest over smallest across the builds:")
    for name, (median, largest) in spreads.items():
        print(f"  {name:8s} median {median:.3f}, largest {largest:.3f}")


if __name__ == "__main__":
    main()
