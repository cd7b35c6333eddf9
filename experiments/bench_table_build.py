"""Building the quick search's latency table (the 7 per-op networks, then the 6-network
calibration, as ``nasfuse search --budget quick`` builds it) with a full garbage
collection before every measurement (the code before) and with the young generations
only (the current ``pause_collector``), in alternating rounds of one run.

The quick search builds its table in a process that holds the trained supernet; pass
``--hold-supernet`` to keep one alive here too, which makes each full collection dearer.

Run (about a minute):

    python experiments/bench_table_build.py
    python experiments/bench_table_build.py --rounds 3 --hold-supernet
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import warnings
from unittest import mock

from _compare import print_comparison

import nasfuse.latency.measure as measure_module
import nasfuse.latency.ratio as ratio_module
from nasfuse.latency import BuildOptions, LatencyTable
from nasfuse.spaces import load_space

QUICK_OPTIONS = {
    "width_mult": 0.25,
    "input_size": 16,
    "stages.0.modules": 1,
    "stages.1.modules": 1,
    "stages.2.modules": 1,
}


def full_collection_then_pause() -> None:
    """The code before: a collection of every generation."""
    gc.collect()
    gc.disable()


def build_seconds(space: object) -> float:
    # The quick budget's settings (nasfuse/search/_artifacts.py: ensure_latency_table).
    light = {"runs": 10, "rounds": 1}
    started = time.perf_counter()
    table = LatencyTable.build(space, BuildOptions(batch_size=1, threads=1, **light))
    table.calibrate(space, samples=6, seed=1, **light)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--hold-supernet", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="cmgm")
    load = os.getloadavg()
    space = load_space("hrnet_lite", QUICK_OPTIONS)
    held = None
    if args.hold_supernet:
        from nasfuse.supernet import Supernet

        held = Supernet(space, num_classes=10, in_chans=1)
    times: dict[str, list[float]] = {"full collection": [], "young generations": []}
    for _ in range(args.rounds):
        with (
            mock.patch.object(measure_module, "pause_collector", full_collection_then_pause),
            mock.patch.object(ratio_module, "pause_collector", full_collection_then_pause),
        ):
            times["full collection"].append(build_seconds(space))
        times["young generations"].append(build_seconds(space))
    print_comparison(
        load,
        f"hrnet_lite at the quick budget, 7 + 6 measurements; supernet held: {held is not None}",
        times,
        "full collection",
        "young generations",
    )


if __name__ == "__main__":
    main()
