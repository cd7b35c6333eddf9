"""One search trial's scoring on the quick search's supernet, the way it was and the way it
is now, in alternating rounds of one run, on one thread (as a trial runs):

- before: BN recalibration, validation in batches of the training size (64), and FLOPs
  counted by running ``count_flops`` on the supernet;
- now: the same recalibration, validation in batches twice that size
  (``EVAL_BATCH_FACTOR``), and FLOPs summed from the per-site table the driver counts once
  (``site_flop_table``, whose one-off cost is printed too).

Both paths score the same architectures and must agree on accuracy and FLOPs (checked).
The supernet is untrained: the time of a forward pass does not depend on the weights.

Run (about a minute):

    python experiments/bench_trial_scoring.py
    python experiments/bench_trial_scoring.py --rounds 7 --archs 6
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import time

import torch
from _compare import print_comparison


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="hrnet_lite")
    parser.add_argument("--budget", default="quick")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--archs", type=int, default=4, help="architectures scored a round")
    args = parser.parse_args()

    from nasfuse.data import build_loaders
    from nasfuse.profile import count_flops
    from nasfuse.search import SearchConfig, resolve_plan
    from nasfuse.search._driver import search_space_options
    from nasfuse.search._supernet_eval import site_flop_table
    from nasfuse.spaces import load_space
    from nasfuse.supernet import Supernet
    from nasfuse.training import evaluate_arch

    torch.set_num_threads(1)
    load = os.getloadavg()
    cfg = SearchConfig(space=args.space, budget=args.budget)
    plan = resolve_plan(cfg)
    space = load_space(cfg.space, search_space_options(cfg, plan))
    bundle = build_loaders(cfg.dataset, space.input_size, cfg.batch_size, seed=0)
    supernet = Supernet(space, bundle.num_classes, bundle.in_chans).eval()
    image = torch.zeros(1, bundle.in_chans, space.input_size, space.input_size)
    started = time.perf_counter()
    shared, table = site_flop_table(supernet, image)
    table_s = time.perf_counter() - started
    training_sized = torch.utils.data.DataLoader(bundle.val.dataset, batch_size=cfg.batch_size)
    before_bundle = dataclasses.replace(bundle, val=training_sized)
    rng = random.Random(0)
    archs = [supernet.sample_arch(rng) for _ in range(args.archs)]

    def before(arch: dict[str, str]) -> tuple[float, int]:
        accuracy = evaluate_arch(supernet, arch, before_bundle, plan.calib_batches)
        return accuracy, count_flops(supernet, image)

    def now(arch: dict[str, str]) -> tuple[float, int]:
        accuracy = evaluate_arch(supernet, arch, bundle, plan.calib_batches)
        return accuracy, shared + sum(table[site][op] for site, op in arch.items())

    paths = {
        "before (val batch 64, FLOPs counted)": before,
        "now (val batch 128, FLOPs table)": now,
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    results: dict[str, list[tuple[float, int]]] = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, score in paths.items():
            started = time.perf_counter()
            results[name] = [score(arch) for arch in archs]
            times[name].append((time.perf_counter() - started) / len(archs))
    old, new = paths
    if results[old] != results[new]:
        raise SystemExit(f"the two paths disagree: {results[old]} vs {results[new]}")
    print_comparison(
        load,
        f"{space.name} at the {args.budget} budget, {len(space.sites)} sites; s per trial, "
        f"{args.archs} archs a round; the same accuracies and FLOPs both ways",
        times,
        old,
        new,
    )
    print(f"  the FLOPs table, counted once per search: {table_s:.3f} s")


if __name__ == "__main__":
    main()
