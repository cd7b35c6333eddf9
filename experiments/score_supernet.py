"""How well a trained supernet scores random architectures with inherited weights.

For N architectures drawn uniformly from the supernet's space (seeds 1000, 1001, ...),
prints the validation accuracy with the supernet's running BatchNorm statistics as they
are and after BN recalibration on the training images (what the search does), then the
mean, min and max of each, with the machine. The supernet's own statistics are restored
after every architecture, so the N scores are independent of their order.

Run (about a minute for resnet20 on a 2-core CPU, after training the supernet):

    nasfuse train-supernet --space resnet20 --epochs 20 --out runs/sn-resnet20
    python experiments/score_supernet.py runs/sn-resnet20/supernet.pt --archs 10
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from nasfuse.data import build_loaders
from nasfuse.files import load_checkpoint
from nasfuse.runtime import device_name
from nasfuse.training import evaluate_arch, load_supernet, preserved_bn_stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a supernet.pt written by nasfuse train-supernet")
    parser.add_argument("--archs", type=int, default=10, help="random architectures (10)")
    parser.add_argument("--calib-batches", type=int, default=20, help="BN recalibration batches")
    parser.add_argument("--batch-size", type=int, default=64, help="evaluation batch size")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    supernet = load_supernet(args.checkpoint)
    dataset = load_checkpoint(args.checkpoint, kind="supernet")["dataset"]
    bundle = build_loaders(dataset, supernet.space.input_size, batch_size=args.batch_size)
    started = time.perf_counter()
    as_trained, recalibrated = [], []
    for index in range(args.archs):
        arch = supernet.sample_arch(rng=1000 + index)
        with preserved_bn_stats(supernet):
            as_trained.append(evaluate_arch(supernet, arch, bundle, recalibrate=False))
        with preserved_bn_stats(supernet):
            recalibrated.append(
                evaluate_arch(supernet, arch, bundle, calib_batches=args.calib_batches)
            )
        print(
            f"arch {index}: as trained {as_trained[-1]:.4f}  recalibrated {recalibrated[-1]:.4f}",
            flush=True,
        )
    print(f"\nsupernet {args.checkpoint} ({supernet.space.name}, {dataset}, val split)")
    for name, values in (("as trained", as_trained), ("BN recalibrated", recalibrated)):
        print(
            f"{name:>16}: mean {statistics.mean(values):.4f}  "
            f"min {min(values):.4f}  max {max(values):.4f}"
        )
    print(
        f"{args.archs} archs in {time.perf_counter() - started:.0f} s on "
        f"{device_name('cpu')}; torch {torch.__version__}; python {platform.python_version()}"
    )


if __name__ == "__main__":
    main()
