"""Every shipped space trains without corrupting native memory, at the smallest sizes too.

Issue 19: cmgm at a 4-channel site aborted training with ``double free or corruption``
(a oneDNN kernel fed a channels-last tensor; see experiments/repro_cmgm_crash.py). Each
shipped space runs here at width 0.25 and 0.125 with 16x16 and 8x8 inputs, through a few
training steps of every uniform architecture (standalone, ``build_model``) and of random
ones (in the supernet), in a subprocess with

- ``MALLOC_CHECK_=3``: glibc aborts at the first heap corruption it sees, instead of later
  or never;
- ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN's AVX2 kernels, the ones that corrupted the heap, as
  on any CPU without AVX-512 (on an AVX2-only CPU this changes nothing).

The subprocess prints a line before each architecture, so a crash names where it happened.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

from nasfuse import list_spaces

WIDTHS = (0.25, 0.125)
SIZES = (16, 8)
STEPS = 2
RANDOM_ARCHS = 2
BATCH = 4


def train_steps(model, steps: int, size: int, in_chans: int) -> float:
    """``steps`` SGD steps on random data; the last loss."""
    import torch

    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(steps):
        images = torch.randn(BATCH, in_chans, size, size)
        labels = torch.randint(0, 10, (BATCH,))
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return float(loss)


def sweep_space(name: str) -> None:
    """Train every uniform and a few random architectures of ``name`` at every size."""
    import torch

    from nasfuse import Supernet, load_space
    from nasfuse.supernet import build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    warnings.simplefilter("ignore")  # narrow sites: cmgm falls back to fewer heads
    for width in WIDTHS:
        for size in SIZES:
            space = load_space(name, {"width_mult": width, "input_size": size})
            where = f"{name} width {width} {size}x{size}"
            for op in space.config["ops"]:
                try:
                    arch = space.uniform_arch(op)
                except ValueError:  # not allowed everywhere (a restrict rule)
                    continue
                print(f"start {where} all-{op}", flush=True)
                model = build_model(space, arch, num_classes=10, in_chans=1)
                loss = train_steps(model, STEPS, size, in_chans=1)
                assert loss == loss, f"{where} all-{op}: loss is NaN"
            supernet = Supernet(space, num_classes=10, in_chans=1)
            for seed in range(RANDOM_ARCHS):
                print(f"start {where} random arch {seed} (supernet)", flush=True)
                supernet.set_arch(supernet.sample_arch(rng=seed))
                train_steps(supernet, STEPS, size, in_chans=1)
    print("sweep done", flush=True)


@pytest.mark.filterwarnings("ignore:cmgm")
@pytest.mark.parametrize("name", list_spaces())
def test_no_layer_of_any_uniform_network_turns_channels_last(name):
    # The crash needed a channels-last tensor inside a contiguous CPU network; with none,
    # the oneDNN kernel at fault is never reached, whatever the CPU.
    import torch

    from nasfuse import load_space
    from nasfuse.supernet import build_model

    space = load_space(name, {"width_mult": 0.125, "input_size": 8})
    for op in space.config["ops"]:
        try:
            arch = space.uniform_arch(op)
        except ValueError:
            continue
        model = build_model(space, arch, num_classes=10, in_chans=1).train()
        leaks = []

        def record(module, _inputs, output, leaks=leaks):
            if (
                isinstance(output, torch.Tensor)
                and output.dim() == 4
                and not output.is_contiguous()
            ):
                leaks.append(f"{type(module).__name__} strides {output.stride()}")

        hooks = [m.register_forward_hook(record) for m in model.modules()]
        model(torch.randn(2, 1, 8, 8)).sum().backward()
        for hook in hooks:
            hook.remove()
        assert not leaks, f"{name} all-{op}: non-contiguous outputs: {leaks[:3]}"


@pytest.mark.slow
@pytest.mark.parametrize("name", list_spaces())
def test_every_size_of_a_shipped_space_trains_without_heap_corruption(name):
    env = {
        **os.environ,
        "MALLOC_CHECK_": "3",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(
            [
                os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                os.environ.get("PYTHONPATH", ""),
            ]
        ),
    }
    done = subprocess.run(
        [sys.executable, os.path.abspath(__file__), name],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    started = [line for line in done.stdout.splitlines() if line.startswith("start ")]
    last = started[-1] if started else "before the first architecture"
    assert done.returncode == 0, f"exit code {done.returncode} at '{last}'\n{done.stderr[-2000:]}"
    assert done.stdout.rstrip().endswith("sweep done")
    # Every size ran: an all-add network at each width and input size.
    for width in WIDTHS:
        for size in SIZES:
            assert f"start {name} width {width} {size}x{size} all-add" in done.stdout


if __name__ == "__main__":
    sweep_space(sys.argv[1])
