"""Latency of every fusion op at sizes typical of hrnet_lite sites, on this machine.

For each registered op, K=2 inputs of (B, C, H, W) at C=40 32x32, C=80 16x16 and
C=160 8x8 (hrnet_lite's first three branch widths at a 32x32 input), batch 32, eval mode,
``torch.inference_mode``: the median of ``--runs`` timed runs after ``--warmup`` runs
(``nasfuse.latency.measure_latency``), repeated in ``--rounds`` interleaved rounds; the
table shows the lowest round median, since other processes on a shared machine only
ever add time. The same run times the two reference paths, cmgm's plain softmax formula
(``attn_impl="math"``) and dynconv's per-sample conv (``conv_impl="per_sample"``), and
prints the ratios. A last block splits dynconv's time into its parts, to show where it
goes.

Run (about 3-7 minutes on 2 CPU cores; cmgm's math path at 32x32 dominates):

    python experiments/bench_ops.py

On a CPU shared with other busy processes, elapsed times mostly measure their load; add
``--clock thread`` to time the CPU time of the (single) timing thread instead.

Targets (issue 2): dynconv within 2x of concat at the same size; cmgm's SDPA path no
slower than the plain formula.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable

import torch
from torch import nn

from nasfuse.latency import measure_latency
from nasfuse.ops import create_op, list_ops
from nasfuse.runtime import default_device, device_name

SIZES = ((40, 32), (80, 16), (160, 8))
#: Reference paths timed next to the fast ones: label -> (op, options).
REFERENCES = {
    "cmgm[math]": ("cmgm", {"attn_impl": "math"}),
    "dynconv[per_sample]": ("dynconv", {"conv_impl": "per_sample"}),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--inputs", type=int, default=2, help="K")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=8, help="timed runs per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument(
        "--clock",
        choices=("wall", "thread"),
        default="wall",
        help="'thread': CPU time of the timing thread (needs --threads 1), for a busy shared CPU",
    )
    parser.add_argument("--ops", nargs="*", default=None, help="default: every registered op")
    return parser.parse_args()


class _Call(nn.Module):
    """A function of the inputs as a module, so measure_latency can time a part of an op."""

    def __init__(self, function: Callable[[list[torch.Tensor]], torch.Tensor]) -> None:
        super().__init__()
        self.function = function

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.function(xs)


def dynconv_parts(channels: int, batch: int, num_inputs: int, size: int) -> dict[str, nn.Module]:
    """dynconv's stages, and the shared-weight 1x1 conv of concat, as timeable modules."""
    op = create_op("dynconv", channels, num_inputs)
    op.eval()
    in_channels = num_inputs * channels

    def kernels_and_input(xs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        stacked = torch.cat(xs, dim=1)
        return op.aggregated_kernels(stacked), stacked

    with torch.inference_mode():
        example = [torch.randn(batch, channels, size, size) for _ in range(num_inputs)]
        kernels, stacked = kernels_and_input(example)
        kernels = kernels.view(batch, channels, in_channels)
        columns = stacked.reshape(batch, in_channels, size * size)
    shared = nn.Conv2d(in_channels, channels, 1, bias=False)
    return {
        "  cat + attention + aggregation": _Call(lambda xs: kernels_and_input(xs)[0]),
        "  per-sample matmul alone": _Call(lambda xs: torch.bmm(kernels, columns)),
        "  shared-weight 1x1 conv alone": _Call(lambda xs: shared(stacked)),
    }


def main() -> int:
    args = parse_args()
    names = args.ops or list_ops()
    device = default_device()
    torch.set_num_threads(args.threads)
    print(f"command: python {shlex.join(['experiments/bench_ops.py', *sys.argv[1:]])}")
    print(f"machine: {device_name(device)}; torch {torch.__version__}; threads {args.threads}")
    print(
        f"K={args.inputs}, batch {args.batch}, eval, inference_mode; median of {args.runs} runs "
        f"after {args.warmup} warm-up, lowest of {args.rounds} interleaved rounds; ms "
        f"({'elapsed' if args.clock == 'wall' else 'CPU time of the timing thread'})"
    )

    variants: dict[str, tuple[str, dict]] = {name: (name, {}) for name in names}
    variants.update({label: ref for label, ref in REFERENCES.items() if ref[0] in names})
    results: dict[str, dict[tuple[int, int], float]] = {label: {} for label in variants}
    parts: dict[str, dict[tuple[int, int], float]] = {}
    for channels, size in SIZES:
        torch.manual_seed(0)
        xs = [torch.randn(args.batch, channels, size, size) for _ in range(args.inputs)]
        modules = {
            label: create_op(name, channels, args.inputs, **options)
            for label, (name, options) in variants.items()
        }
        if "dynconv" in names:
            modules.update(dynconv_parts(channels, args.batch, args.inputs, size))
        for round_index in range(args.rounds):
            for label, module in modules.items():
                stats = measure_latency(
                    module,
                    inputs=xs,
                    device=device,
                    warmup=args.warmup,
                    runs=args.runs,
                    clock=args.clock,
                )
                table = results if label in results else parts
                best = table.setdefault(label, {}).get((channels, size), float("inf"))
                table[label][(channels, size)] = min(best, stats.median_ms)
            print(
                f"measured C={channels} {size}x{size}, round {round_index + 1}/{args.rounds}",
                file=sys.stderr,
                flush=True,
            )

    columns = [f"C={c} {s}x{s}" for c, s in SIZES]
    print()
    print(f"{'op':<32}" + "".join(f"{col:>16}" for col in columns))
    for label in [*results, *parts]:
        row = results.get(label) or parts[label]
        print(f"{label:<32}" + "".join(f"{row[size]:>16.3f}" for size in SIZES))

    def ratio_row(label: str, top: str, bottom: str, target: str) -> None:
        if top in results and bottom in results:
            ratios = [results[top][size] / results[bottom][size] for size in SIZES]
            print(f"{label:<32}" + "".join(f"{r:>15.2f}x" for r in ratios) + f"   {target}")

    print()
    ratio_row("dynconv / concat", "dynconv", "concat", "target <= 2")
    ratio_row("cmgm sdpa / math", "cmgm", "cmgm[math]", "target <= 1")
    ratio_row("dynconv batched / loop", "dynconv", "dynconv[per_sample]", "(< 1: faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
