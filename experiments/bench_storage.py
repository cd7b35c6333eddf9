"""The searcher's storage cost per trial, alone: NSGA-II asking one categorical parameter
per site (Optuna writes each in its own commit) and telling two objectives, on the
search's default SQLite study and on a journal file (``--storage runs/x/study.log``).

Run (about 20 seconds):

    python experiments/bench_storage.py
    python experiments/bench_storage.py --sites 27 --trials 100
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import optuna

from nasfuse.runtime import device_name
from nasfuse.search._study import open_storage

OPS = ("add", "concat", "dwff", "aff", "iaff", "cmgm", "dynconv", "pmfs")


def per_trial_ms(url: str, sites: int, trials: int) -> tuple[float, float]:
    """Mean ms per trial of (ask + every suggest, tell)."""
    study = optuna.create_study(
        storage=open_storage(url),
        directions=["maximize", "minimize"],
        sampler=optuna.samplers.NSGAIISampler(population_size=10, seed=0),
    )
    rng = random.Random(0)
    ask = tell = 0.0
    for _ in range(trials):
        started = time.perf_counter()
        trial = study.ask()
        for site in range(sites):
            trial.suggest_categorical(f"site{site}", OPS)
        asked = time.perf_counter()
        trial.set_user_attr("status", "evaluated")
        study.tell(trial, [rng.random(), rng.random()])
        ask += asked - started
        tell += time.perf_counter() - asked
    return ask / trials * 1e3, tell / trials * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=72, help="hrnet_lite: 72; quick: 27")
    parser.add_argument("--trials", type=int, default=60)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        urls = {
            "SQLite (the default)": f"sqlite:///{Path(scratch) / 'study.db'}",
            "journal file": str(Path(scratch) / "study.log"),
        }
        results = {name: per_trial_ms(url, args.sites, args.trials) for name, url in urls.items()}
    print(f"machine: {device_name('cpu')}, {os.cpu_count()} cores, optuna {optuna.__version__}")
    print(f"load average before (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in load)}")
    print(f"{args.sites} sites, {args.trials} trials, NSGA-II population 10")
    for name, (ask_ms, tell_ms) in results.items():
        print(f"  {name:22s} ask + suggests {ask_ms:6.1f} ms, tell {tell_ms:5.1f} ms a trial")


if __name__ == "__main__":
    main()
