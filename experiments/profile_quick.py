"""Where the README's quick search spends its time: one supernet epoch split into its
parts (training steps, the fixed archs' validation, the checkpoint) and one trial's
scoring, timed without a profiler; then torch.profiler tables of a few training steps and
of one scoring.

The supernet is the one ``nasfuse search --space hrnet_lite --budget quick`` trains
(width 0.25, 16x16, one module per HRNet stage, batch 64 on digits, two fixed validation
architectures with BN recalibration), built through the same code. The per-step phases are
the ``record_function`` labels of the training loop (``train/data``, ``train/set_path``,
``train/forward``, ``train/backward``, ``train/optimizer``); the op tables are sorted by
self CPU time, so overhead (many tiny kernels, Python dispatch) shows as call counts. The
profiler slows tiny ops a lot: read its tables for shares, the first table for seconds.

Run (about a minute on an idle 2-core CPU):

    python experiments/profile_quick.py
    python experiments/profile_quick.py --rows 25 --threads 1 --steps 5
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from nasfuse.runtime import device_name

PHASES = (
    "train/data",
    "train/set_path",
    "train/forward",
    "train/backward",
    "train/optimizer",
    "epoch/after_epoch",
    "epoch/checkpoint",
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="hrnet_lite")
    parser.add_argument("--budget", default="quick")
    parser.add_argument("--rows", type=int, default=15, help="rows of each op table")
    parser.add_argument("--steps", type=int, default=3, help="training steps profiled")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    return parser.parse_args()


def quick_trainer_config(space: str, budget: str, threads: int | None):
    """The SupernetTrainConfig a search with this budget trains, and the budget's plan."""
    from nasfuse.search import SearchConfig
    from nasfuse.search._artifacts import supernet_train_config
    from nasfuse.search._config import resolve_plan
    from nasfuse.search._driver import search_space_options

    cfg = SearchConfig(space=space, budget=budget, threads=threads)
    plan = resolve_plan(cfg)
    train_cfg = supernet_train_config(cfg, plan, search_space_options(cfg, plan))
    return dataclasses.replace(train_cfg, progress=False), plan


def search_table_setup(space: str, budget: str, seed: int = 0):
    """The space a search with this budget searches, and how it measures that space's
    latency table: ``(space, BuildOptions, calibration keyword arguments)``."""
    from nasfuse.search import SearchConfig
    from nasfuse.search._artifacts import latency_table_settings
    from nasfuse.search._config import resolve_plan
    from nasfuse.search._driver import search_space_options
    from nasfuse.spaces import load_space

    cfg = SearchConfig(space=space, budget=budget, seed=seed)
    plan = resolve_plan(cfg)
    options, calibration = latency_table_settings(cfg, plan)
    return load_space(space, search_space_options(cfg, plan)), options, calibration


def phase_times(prof: profile) -> dict[str, tuple[float, int]]:
    """``{label: (total CPU seconds, calls)}`` of the loop's record_function labels."""
    found = {}
    for event in prof.key_averages():
        if event.key in PHASES:
            found[event.key] = (event.cpu_time_total / 1e6, event.count)
    return found


def train_steps(trainer, batches) -> float:
    """Wall seconds of ``train_one_epoch`` over ``batches`` with the trainer's own pieces."""
    from nasfuse.training._loop import train_one_epoch

    started = time.perf_counter()
    train_one_epoch(
        trainer.epoch_parts,
        batches,
        global_step=0,
        before_step=trainer.before_step,
        progress=False,
    )
    return time.perf_counter() - started


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def main() -> None:
    args = parse_args()
    from nasfuse.files import save_checkpoint
    from nasfuse.training import evaluate_arch
    from nasfuse.training.supernet_training import SupernetTrainer

    load = os.getloadavg()
    train_cfg, plan = quick_trainer_config(args.space, args.budget, args.threads)
    with tempfile.TemporaryDirectory() as out:
        trainer = SupernetTrainer(train_cfg, out)
        bundle = trainer.bundle
        steps = len(bundle.train)
        arch = trainer.space.random_arch(0)
        # Wall time of one epoch's parts, without a profiler (it slows tiny ops a lot).
        bundle.set_epoch(0)
        train_s = train_steps(trainer, bundle.train)
        data_s = timed(lambda: [None for _ in bundle.train])
        after_s = timed(trainer.after_epoch, 0)
        checkpoint_s = timed(save_checkpoint, trainer.state(), Path(out) / "supernet.pt")
        trial_s = timed(evaluate_arch, trainer.net, arch, bundle, plan.calib_batches)
        # The op tables: a few steps and one trial's scoring under the profiler.
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            train_steps(trainer, itertools.islice(bundle.train, args.steps))
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as trial_prof:
            evaluate_arch(trainer.net, arch, bundle, plan.calib_batches)

    epoch_s = train_s + after_s + checkpoint_s
    print(
        f"device: {device_name('cpu')}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"load average before (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in load)}")
    print(
        f"{plan.describe()}\nspace options {train_cfg.space_options}; {steps} steps of batch "
        f"{train_cfg.batch_size} per epoch"
    )
    print(f"\none supernet epoch, {epoch_s:.2f} s wall:")
    print("| part | s | share |")
    print("|---|---:|---:|")
    for name, seconds in (
        (f"{steps} training steps", train_s),
        ("  of which loading the batches alone", data_s),
        (f"validation of {train_cfg.eval_archs} archs (BN recal. + val)", after_s),
        ("checkpoint", checkpoint_s),
    ):
        print(f"| {name} | {seconds:.2f} | {seconds / epoch_s:.0%} |")
    print(f"one trial's scoring (BN recal. on {plan.calib_batches} batches + val): {trial_s:.2f} s")

    print(f"\n{args.steps} training steps under torch.profiler, phases:")
    for label, (seconds, calls) in phase_times(prof).items():
        print(f"  {label:<16} {seconds * 1e3 / args.steps:8.1f} ms per step ({calls} calls)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    print("one trial's scoring under torch.profiler:")
    print(trial_prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
