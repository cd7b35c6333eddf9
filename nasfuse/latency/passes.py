"""Setting up and timing forward passes: the pieces every latency measurement shares.

:func:`measuring` sets up timed runs (thread count, device, eval mode, memory format,
``torch.inference_mode()``) and undoes it all afterwards; :func:`time_runs` times calls
with CUDA events on a GPU, else with the chosen CPU clock. :func:`~nasfuse.latency.measure
.measure_latency` and :func:`~nasfuse.latency.ratio.measure_ratio` are built from them.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from nasfuse.runtime import default_device, device_name, model_device

__all__ = [
    "CLOCKS",
    "ModelInputs",
    "check_options",
    "device_name_at",
    "example_inputs",
    "first_shape",
    "measuring",
    "pause_collector",
    "thread_count",
    "time_runs",
]

#: The clocks measure_latency can time with: elapsed time, or CPU time of the measuring thread.
CLOCKS = ("wall", "thread")

#: What a model is called with: one tensor, a list of tensors (a fusion op), or a factory
#: ``f(device) -> tensor or list`` that makes them on the device being measured.
ModelInputs = (
    torch.Tensor
    | Sequence[torch.Tensor]
    | Callable[[torch.device], torch.Tensor | Sequence[torch.Tensor]]
)


@contextlib.contextmanager
def thread_count(threads: int | None) -> Iterator[int]:
    """Run the block with ``torch.set_num_threads(threads)``; restore the old count after.

    Yields the thread count in force (the current one when ``threads`` is None).
    """
    previous = torch.get_num_threads()
    if threads is None:
        yield previous
        return
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(previous)


def device_name_at(device: str | torch.device | None, threads: int | None) -> str:
    """``device_name(device)`` as it reads with ``threads`` torch threads (CPU names carry it)."""
    with thread_count(threads):
        return device_name(device)


def _to_device(
    value: torch.Tensor | Sequence[torch.Tensor], device: torch.device, channels_last: bool
) -> torch.Tensor | list[torch.Tensor]:
    def move(tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.to(device)
        if channels_last and tensor.dim() == 4:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    if isinstance(value, torch.Tensor):
        return move(value)
    return [move(tensor) for tensor in value]


def _time_runs_cpu(forward: Callable[[], Any], runs: int, clock: str) -> list[float]:
    now = time.perf_counter_ns if clock == "wall" else time.thread_time_ns
    times_ms = []
    for _ in range(runs):
        start = now()
        forward()
        times_ms.append((now() - start) / 1e6)
    return times_ms


def _time_runs_cuda(forward: Callable[[], Any], runs: int, device: torch.device) -> list[float]:
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
    torch.cuda.synchronize(device)
    for start, end in zip(starts, ends, strict=True):
        start.record()
        forward()
        end.record()
    torch.cuda.synchronize(device)
    return [start.elapsed_time(end) for start, end in zip(starts, ends, strict=True)]


def time_runs(
    forward: Callable[[], Any], runs: int, device: torch.device, clock: str
) -> list[float]:
    """``runs`` timed calls of ``forward`` (ms): CUDA events on a GPU, else ``clock``."""
    if device.type == "cuda":
        return _time_runs_cuda(forward, runs, device)
    return _time_runs_cpu(forward, runs, clock)


def check_options(
    runs: int, warmup: int, device: str | torch.device | None, clock: str
) -> torch.device:
    """The target device, after refusing options that cannot be measured."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    target = torch.device(device) if device is not None else default_device()
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    if clock == "thread" and target.type != "cpu":
        raise ValueError(f"clock='thread' times CPU work only; the device is {target}")
    if target.type == "cuda" and target.index is None:
        target = torch.device("cuda", torch.cuda.current_device())
    return target


def pause_collector() -> None:
    """Before timed runs: collect the young generations (the warm-up's garbage), then pause
    the garbage collector (:func:`measuring` restores it).

    Not a full collection: that walks every object the process holds (0.27 s each on the
    quick search's table, built 13 times, longer with a supernet loaded), and with the
    collector paused no collection can fall inside the timing either way.
    """
    gc.collect(1)
    gc.disable()


@contextlib.contextmanager
def measuring(
    models: Sequence[nn.Module],
    target: torch.device,
    threads: int | None,
    channels_last: bool,
    clock: str,
) -> Iterator[int]:
    """Set up timed runs of ``models`` on ``target``; undo everything afterwards.

    Inside: the thread count is ``threads``, each model is on ``target`` in eval mode (and
    channels_last if asked), cuDNN autotunes on CUDA, and the block runs under
    ``torch.inference_mode()``. Afterwards every model is back on its device and in its
    train/eval mode, and the garbage collector as it was (callers pause it while timing).
    Yields the thread count in force.
    """
    homes = [(model, model_device(model), model.training) for model in models]
    cudnn_benchmark = torch.backends.cudnn.benchmark
    gc_was_enabled = gc.isenabled()
    with thread_count(threads) as used_threads:
        if clock == "thread" and used_threads != 1:
            raise ValueError(
                f"clock='thread' needs threads=1 (all work in the timed thread), got {used_threads}"
            )
        try:
            if target.type == "cuda":
                # Fixed shapes: let cuDNN pick its fastest kernels during the warm-up.
                torch.backends.cudnn.benchmark = True
            for model, _, _ in homes:
                model.to(target)
                if channels_last:
                    model.to(memory_format=torch.channels_last)
                model.eval()
            with torch.inference_mode():
                yield used_threads
        finally:
            if gc_was_enabled:
                gc.enable()
            torch.backends.cudnn.benchmark = cudnn_benchmark
            for model, home, was_training in homes:
                if channels_last:
                    model.to(memory_format=torch.contiguous_format)
                model.to(home)
                model.train(was_training)
            if target.type == "cuda":
                torch.cuda.empty_cache()


def example_inputs(
    input_shape: Sequence[int] | None,
    inputs: ModelInputs | None,
    dtype: torch.dtype,
    target: torch.device,
    channels_last: bool,
) -> torch.Tensor | list[torch.Tensor]:
    """The inputs to time with, on ``target``: made from ``input_shape`` or given."""
    if (input_shape is None) == (inputs is None):
        raise ValueError("give exactly one of input_shape and inputs")
    if inputs is None:
        value = torch.randn(tuple(int(side) for side in input_shape), dtype=dtype)
    else:
        value = inputs(target) if callable(inputs) else inputs
    return _to_device(value, target, channels_last)


def first_shape(example: torch.Tensor | Sequence[torch.Tensor]) -> tuple[int, ...]:
    first = example if isinstance(example, torch.Tensor) else example[0]
    return tuple(first.shape)
