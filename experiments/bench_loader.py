"""One epoch of the quick search's training loader, the current code against an old way,
in alternating rounds of the same run; checks that both yield the same batches.

The old ways (``--old``): ``torchvision``, the shift and normalisation done by
``torchvision.transforms.v2`` (before ``nasfuse.data._augment``); ``fork_rng``, each
image's augmentation seeded with ``fork_rng`` + ``torch.manual_seed`` (before seeding the
CPU generator alone).

Run (a few seconds):

    python experiments/bench_loader.py
    python experiments/bench_loader.py --old fork_rng --batch-size 64 --rounds 7
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from unittest import mock

import torch
from _compare import print_comparison

from nasfuse.data import _loaders, build_loaders

OLDS = {
    "torchvision": "torchvision.transforms.v2",
    "fork_rng": "fork_rng + torch.manual_seed",
}


def seeded_with_fork_rng(
    transform: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, seed: int
) -> torch.Tensor:
    """The code before: fork every device's RNG and seed them all."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transform(image)


def torchvision_transforms(bundle, input_size: int):
    """The training set's augmentation and finish as torchvision's v2 transforms."""
    from torchvision.transforms import v2

    augment = v2.Compose([v2.RandomCrop(input_size, padding=max(1, input_size // 8))])
    return augment, v2.Compose([v2.Normalize(list(bundle.mean), list(bundle.std))])


def epoch_batches(loader: torch.utils.data.DataLoader) -> tuple[float, list[torch.Tensor]]:
    started = time.perf_counter()
    batches = [images for images, _ in loader]
    return time.perf_counter() - started, batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128, help="the quick budget's")
    parser.add_argument("--input-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--old", choices=sorted(OLDS), default="torchvision")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    bundle = build_loaders("digits", input_size=args.input_size, batch_size=args.batch_size, seed=1)
    images = len(bundle.train) * args.batch_size
    old_name = OLDS[args.old]
    times: dict[str, list[float]] = {old_name: [], "current": []}
    train_set = bundle.train.dataset
    current = train_set.augment, train_set.finish
    for _ in range(args.rounds):
        if args.old == "fork_rng":
            with mock.patch.object(_loaders, "_seeded", seeded_with_fork_rng):
                old_s, old = epoch_batches(bundle.train)
        else:
            train_set.augment, train_set.finish = torchvision_transforms(bundle, args.input_size)
            try:
                old_s, old = epoch_batches(bundle.train)
            finally:
                train_set.augment, train_set.finish = current
        new_s, new = epoch_batches(bundle.train)
        if not all(torch.equal(a, b) for a, b in zip(old, new, strict=True)):
            raise SystemExit(f"{old_name} and the current code gave different batches")
        times[old_name].append(old_s)
        times["current"].append(new_s)
    print_comparison(
        load,
        f"digits, {args.input_size}x{args.input_size}, batch {args.batch_size}: "
        f"{len(bundle.train)} batches ({images} images) an epoch, the same batches both ways",
        times,
        old_name,
        "current",
        unit="s an epoch",
    )


if __name__ == "__main__":
    main()
