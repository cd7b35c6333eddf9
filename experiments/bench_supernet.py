"""Training-step cost of the single-path supernet against its extracted subnet.

Both take SGD steps (forward, cross-entropy, backward, update) on the same batch with the
same architecture; steps alternate supernet, subnet, supernet, ... so that load from other
jobs on the machine hits both alike. Prints the median step time of each and their ratio
(target: supernet / subnet <= 1.15), with the device, torch version, threads and the load
average.

Run (a few minutes on a 2-core CPU with the defaults: 28 steps of each model at batch 32;
about 4.5 minutes with one thread on a machine shared with other jobs):

    python experiments/bench_supernet.py
    python experiments/bench_supernet.py --batch-size 64 --set width_mult=0.5 --arch aff
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

from nasfuse.arch import arch_from_argument, arch_hash
from nasfuse.config import parse_overrides
from nasfuse.profile import count_params
from nasfuse.runtime import device_name, seed_everything
from nasfuse.spaces import load_space
from nasfuse.supernet import Supernet

TARGET_RATIO = 1.15


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="hrnet_lite")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--arch",
        default="random",
        help="'random' (seeded), an op name for every site, or an architecture file",
    )
    parser.add_argument("--steps", type=int, default=12, help="timed steps of each model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each model first")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: current)"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor
) -> float:
    """One SGD step; returns its wall time in seconds."""
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    space = load_space(args.space, parse_overrides(args.overrides))
    supernet = Supernet(space, num_classes=10)
    arch = (
        space.random_arch(args.seed)
        if args.arch == "random"
        else arch_from_argument(args.arch, space)
    )
    supernet.set_arch(arch)
    subnet = supernet.extract()
    supernet.train()
    subnet.train()
    size = space.input_size
    images = torch.randn(args.batch_size, space.in_chans, size, size)
    labels = torch.randint(0, 10, (args.batch_size,))
    # Both optimizers see every parameter of their model, as in training: candidates off
    # the path have no gradient and SGD skips them.
    optimizers = {
        "supernet": torch.optim.SGD(supernet.parameters(), lr=0.01, momentum=0.9),
        "subnet": torch.optim.SGD(subnet.parameters(), lr=0.01, momentum=0.9),
    }
    models = {"supernet": supernet, "subnet": subnet}
    times: dict[str, list[float]] = {"supernet": [], "subnet": []}
    for step in range(args.warmup + args.steps):
        for name, model in models.items():
            elapsed = train_step(model, optimizers[name], images, labels)
            if step >= args.warmup:
                times[name].append(elapsed)

    median = {name: statistics.median(values) for name, values in times.items()}
    ratio = median["supernet"] / median["subnet"]
    params = {name: count_params(model) for name, model in models.items()}
    print(f"device: {device_name('cpu')}, torch {torch.__version__}")
    print(f"load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"space {space.name} (hash {space.hash}, options {space.options or '{}'}), "
        f"input {space.in_chans}x{size}x{size}, batch {args.batch_size}, "
        f"arch {args.arch} (hash {arch_hash(arch)}), {args.steps} timed steps after {args.warmup}"
    )
    for name in models:
        values = sorted(times[name])
        print(
            f"{name:<9} params {params[name] / 1e6:7.2f} M  step median {median[name] * 1e3:8.1f} ms"
            f"  (min {values[0] * 1e3:.1f}, max {values[-1] * 1e3:.1f})"
        )
    verdict = "meets" if ratio <= TARGET_RATIO else "misses"
    print(f"ratio supernet / subnet: {ratio:.3f} ({verdict} the target <= {TARGET_RATIO})")


if __name__ == "__main__":
    main()
