"""Driver overhead per trial of the search: everything a trial costs besides its evaluation.

Runs the real search loop (Optuna's NSGA-II inside Ray Tune, the SQLite study, constraints,
TensorBoard, the baselines) over a space's real sites, with the synthetic evaluator in
place of the supernet, so that what is left is the driver's share: Optuna's ask and tell,
storage writes, constraints, Ray's scheduling and reporting. Prints the search summary's
split (``SearchStats.describe``) and the driver time per evaluation against the target
(<= 0.2 s; Ray Tune's own benchmark reaches about 0.14 s per trial).

Run (about a minute on a 2-core CPU):

    python experiments/bench_driver.py
    python experiments/bench_driver.py --space resnet20 --trials 100 --eval-seconds 0.5
"""

from __future__ import annotations

import argparse
import os
import tempfile

TARGET_S = 0.2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="hrnet_lite")
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--population-size", type=int, default=10)
    parser.add_argument(
        "--eval-seconds", type=float, default=0.2, help="each synthetic evaluation sleeps this"
    )
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()

    from nasfuse.runtime import device_name
    from nasfuse.search import local_ray, search_architectures
    from nasfuse.search._trial import SyntheticCosts, SyntheticEvaluator
    from nasfuse.spaces import load_space

    load = os.getloadavg()
    space = load_space(args.space)
    sites = {name: list(site.ops) for name, site in space.sites.items()}
    ops = list(space.config["ops"])
    with tempfile.TemporaryDirectory() as run_dir, local_ray(num_cpus=args.concurrency):
        stats = search_architectures(
            sites=sites,
            evaluator=SyntheticEvaluator(ops, seconds=args.eval_seconds),
            costs=SyntheticCosts(ops),
            run_dir=run_dir,
            n_trials=args.trials,
            population_size=args.population_size,
            concurrency=args.concurrency,
            progress=False,
        )
    print(f"machine: {device_name('cpu')}, {os.cpu_count()} cores")
    print(f"load average before (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in load)}")
    print(
        f"space {space.name}: {len(sites)} sites; {args.trials} trials, NSGA-II population "
        f"{args.population_size}, {args.concurrency} at a time, synthetic evaluation "
        f"sleeping {args.eval_seconds} s; SQLite study"
    )
    print(stats.describe())
    per_trial = stats.driver_seconds_per_trial()
    if per_trial is not None:
        verdict = "meets" if per_trial <= TARGET_S else "misses"
        print(
            f"driver time per evaluation {per_trial:.3f} s ({verdict} the target <= {TARGET_S} s); "
            f"searcher alone {stats.searcher_seconds / max(stats.evaluations_started, 1):.3f} s"
        )


if __name__ == "__main__":
    main()
