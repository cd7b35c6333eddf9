"""How much the quick search's latency table moves from one build to the next.

Builds the table of the quick search's space (hrnet_lite, width 0.25, 16x16, one module per
stage, batch 1, one thread) several times back to back, with the quick budget's light
settings and with the table's defaults (what the default budget measures with), through
the search's own ``latency_table_settings``, and predicts the same random architectures with
each build. A search compares architectures by these predictions, so what matters is how
an architecture's latency relative to all-add moves between builds: for each architecture,
its largest ratio to all-add over the builds divided by its smallest.

Run (about 1.5 minutes with 4 builds of each):

    python experiments/bench_table_stability.py
    python experiments/bench_table_stability.py --builds 6 --archs 50
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
import warnings

import torch
from profile_quick import search_table_setup

from nasfuse.latency import LatencyTable
from nasfuse.runtime import device_name

# The budgets whose table settings are compared, on the quick search's space.
BUDGETS = ("quick", "default")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--builds", type=int, default=4)
    parser.add_argument("--archs", type=int, default=30, help="random architectures predicted")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="cmgm:")

    load = os.getloadavg()
    space, _, _ = search_table_setup("hrnet_lite", "quick")
    archs = [space.random_arch(100 + i) for i in range(args.archs)]
    all_add = {site: "add" for site in space.sites}
    print(f"machine: {device_name('cpu')}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(f"load average before (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in load)}")
    print(f"the quick space, batch 1, 1 thread; {args.archs} random architectures\n")
    print("| settings | build | s | all-add, ms | median ratio to all-add | largest |")
    print("|---|---:|---:|---:|---:|---:|")
    spreads = {}
    for name in BUDGETS:
        _, options, calibration = search_table_setup("hrnet_lite", name)
        options = dataclasses.replace(options, progress=False)
        ratios = []
        for build in range(args.builds):
            started = time.perf_counter()
            table = LatencyTable.build(space, options)
            table.calibrate(space, progress=False, **calibration)
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
