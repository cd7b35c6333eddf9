"""Compare the fronts of several search runs under one latency table.

Every search measures its own latency table, and on a shared host two tables of the same
space can differ by tens of percent, so each report's hypervolume moves with its table.
This reads each run's evaluated architectures and accuracies from its study, predicts
their latencies with one table (the first run's, or ``--table``), and prints each run's
front and its hypervolume in one box: accuracy 0 and the slowest architecture any of the
runs evaluated.

Run (seconds):

    python experiments/compare_fronts.py runs/a runs/b
    python experiments/compare_fronts.py runs/a runs/b --table runs/c/latency_table.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nasfuse.latency import LatencyTable
from nasfuse.search._pareto import hypervolume, pareto_front
from nasfuse.search._study import load_search_study, trial_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (with study.db)")
    parser.add_argument("--table", type=Path, help="default: the first run's latency_table.json")
    parser.add_argument("--study-name", default="nasfuse")
    args = parser.parse_args()

    table_path = args.table or args.runs[0] / "latency_table.json"
    table = LatencyTable.load(table_path)
    points = {}
    for run in args.runs:
        study = load_search_study(run, None, args.study_name)
        records = [r for r in trial_records(study) if r.on_objectives]
        # One point per architecture: a cached repeat scores what its first evaluation did.
        unique = {r.arch_hash: (r.accuracy, float(table.predict(r.arch))) for r in records}
        points[run] = list(unique.values())
    reference = max(latency for run_points in points.values() for _, latency in run_points)
    print(f"latencies from {table_path}; box: accuracy 0 to 1, latency 0 to {reference:.3f} ms")
    print("| run | architectures | front: val accuracy, % | hypervolume |")
    print("|---|---:|---|---:|")
    for run, run_points in points.items():
        front = sorted(100 * run_points[i][0] for i in pareto_front(run_points))
        listed = ", ".join(f"{accuracy:.2f}" for accuracy in front)
        volume = hypervolume(run_points, reference)
        print(f"| {run} | {len(run_points)} | {listed} | {volume:.4f} |")


if __name__ == "__main__":
    main()
