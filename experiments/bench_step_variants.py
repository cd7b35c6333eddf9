"""Supernet training steps of a search budget under other code paths, timed interleaved.

Each variant gets its own supernet of the budget's space (same seed, same random paths in
the same order) and steps of forward, backward and SGD on one random batch; blocks of
``--steps`` steps of every variant alternate for ``--rounds`` rounds, so load from other
processes falls on all of them alike. Printed: the machine, the load average before the
start, each variant's median seconds per step and its ratio to ``baseline``.

Variants:
    baseline       the budget's space, contiguous tensors, oneDNN on (torch's default)
    onednn-off     torch.backends.mkldnn.enabled = False during its blocks
    channels-last  the 4-D weights and the input in channels_last memory format
    input-8        the space at 8x8 input (digits' own size) instead of the budget's

Run (about a minute on 2 cores):

    python experiments/bench_step_variants.py
    python experiments/bench_step_variants.py --variants baseline input-8 --rounds 6
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
import warnings

import torch

VARIANTS = ("baseline", "onednn-off", "channels-last", "input-8")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="hrnet_lite")
    parser.add_argument("--budget", default="quick")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=4, help="blocks per variant")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    return parser.parse_args()


class Variant:
    """One code path: a supernet, its optimiser, its batch and how to enter its setting."""

    def __init__(self, name: str, net: torch.nn.Module, side: int, batch_size: int) -> None:
        self.name = name
        self.net = net
        self.optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(batch_size, 1, side, side, generator=generator)
        self.labels = torch.randint(0, 10, (batch_size,), generator=generator)
        if name == "channels-last":
            for param in net.parameters():
                if param.dim() == 4:
                    param.data = param.data.contiguous(memory_format=torch.channels_last)
            self.images = self.images.contiguous(memory_format=torch.channels_last)
        self.paths = random.Random(0)

    def block(self, steps: int) -> float:
        """Seconds per step over ``steps`` steps."""
        torch.backends.mkldnn.enabled = self.name != "onednn-off"
        try:
            started = time.perf_counter()
            for _ in range(steps):
                self.net.set_arch(self.net.sample_arch(self.paths))
                self.optimizer.zero_grad(set_to_none=True)
                loss = torch.nn.functional.cross_entropy(self.net(self.images), self.labels)
                loss.backward()
                self.optimizer.step()
            return (time.perf_counter() - started) / steps
        finally:
            torch.backends.mkldnn.enabled = True


def build_variants(args: argparse.Namespace) -> list[Variant]:
    from nasfuse.search import SearchConfig
    from nasfuse.search._config import resolve_plan
    from nasfuse.search._driver import search_space_options
    from nasfuse.spaces import load_space
    from nasfuse.supernet import Supernet

    cfg = SearchConfig(space=args.space, budget=args.budget)
    options = search_space_options(cfg, resolve_plan(cfg))
    variants = []
    for name in args.variants:
        space_options = {**options, "input_size": 8} if name == "input-8" else options
        space = load_space(args.space, space_options)
        torch.manual_seed(0)
        net = Supernet(space, num_classes=10, in_chans=1)
        variants.append(Variant(name, net, space.input_size, args.batch_size))
    return variants


def main() -> None:
    from nasfuse.runtime import default_device, device_name

    args = parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="cmgm: .* heads")
    load = os.getloadavg()
    print(
        f"machine: {device_name(default_device())}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, {args.threads} thread(s); load average before: "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"{args.space}, budget {args.budget}, batch {args.batch_size}")
    variants = build_variants(args)
    for variant in variants:
        variant.block(2)  # warm-up: first-call allocations and kernel choices
    times: dict[str, list[float]] = {variant.name: [] for variant in variants}
    for _ in range(args.rounds):
        for variant in variants:
            times[variant.name].append(variant.block(args.steps))
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians.get("baseline")
    for name, median in medians.items():
        ratio = f"{median / base:.2f}x baseline" if base else ""
        spread = ", ".join(f"{value:.3f}" for value in times[name])
        print(f"{name:14s} {median:.4f} s/step  {ratio}  (blocks: {spread})")


if __name__ == "__main__":
    main()
