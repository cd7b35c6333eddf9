"""Saving and loading the quick search's supernet checkpoint: packed tensors against one
``torch.save`` record per tensor.

The checkpoint is the one the supernet's training writes after every epoch (the weights,
the optimiser's momentum, the scheduler, the RNG), taken after two epochs of the quick
budget's supernet so that most candidate ops have momentum. Both ways write through the
same fsync'd atomic write; the old way is ``torch.save`` of the dict as it is, the new
:func:`nasfuse.files.save_checkpoint` packs the tensors first. Rounds alternate, and the
loaded checkpoints are checked to be equal.

Run (about half a minute on a 2-core CPU):

    python experiments/bench_checkpoint.py
    python experiments/bench_checkpoint.py --rounds 10
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from profile_quick import quick_trainer_config, train_steps

from nasfuse.files import atomic_write_bytes, load_checkpoint, save_checkpoint
from nasfuse.runtime import device_name


def save_plain(state: dict, path: Path) -> None:
    """The checkpoint as written before packing: one record per tensor."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def tensors_of(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for value in obj.values() for t in tensors_of(value)]
    if isinstance(obj, (list, tuple)):
        return [t for value in obj for t in tensors_of(value)]
    return []


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    load = os.getloadavg()
    train_cfg, _ = quick_trainer_config("hrnet_lite", "quick", args.threads)
    from nasfuse.training.supernet_training import SupernetTrainer

    with tempfile.TemporaryDirectory() as out:
        trainer = SupernetTrainer(train_cfg, out)
        for epoch in range(2):
            trainer.bundle.set_epoch(epoch)
            train_steps(trainer, trainer.bundle.train)
        state = trainer.state()
        plain, packed = Path(out) / "plain.pt", Path(out) / "packed.pt"
        times: dict[str, list[float]] = {"save plain": [], "save packed": []}
        times.update({"load plain": [], "load packed": []})
        for _ in range(args.rounds):
            times["save plain"].append(timed(save_plain, state, plain))
            times["save packed"].append(timed(save_checkpoint, state, packed))
            times["load plain"].append(timed(load_checkpoint, plain, "supernet"))
            times["load packed"].append(timed(load_checkpoint, packed, "supernet"))
        a, b = load_checkpoint(plain, "supernet"), load_checkpoint(packed, "supernet")
        pairs = zip(tensors_of(a), tensors_of(b), strict=True)
        assert all(x.dtype == y.dtype and torch.equal(x, y) for x, y in pairs), "not equal"
        sizes = plain.stat().st_size, packed.stat().st_size

    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"device: {device_name('cpu')}, torch {torch.__version__}")
    print(f"load average before (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in load)}")
    print(
        f"the quick supernet's checkpoint after 2 epochs: {len(tensors_of(state))} tensors, "
        f"{sizes[0] / 1e6:.1f} MB plain, {sizes[1] / 1e6:.1f} MB packed; loaded back equal"
    )
    print(f"\nmedian of {args.rounds} alternating rounds:")
    print("| | plain | packed | ratio |")
    print("|---|---:|---:|---:|")
    for what in ("save", "load"):
        old, new = median[f"{what} plain"], median[f"{what} packed"]
        print(f"| {what} | {old * 1e3:.1f} ms | {new * 1e3:.1f} ms | {new / old:.2f} |")


if __name__ == "__main__":
    main()
