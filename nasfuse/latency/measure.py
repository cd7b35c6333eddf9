"""Measuring how long one forward pass takes, the way a careful engineer would.

Eval mode, ``torch.inference_mode()``, warm-up runs first, then many timed runs whose
median and spread are reported. On CUDA each run is timed with a pair of CUDA events and
the device is synchronised before the times are read; on the CPU each run is timed with
the monotonic ``time.perf_counter_ns`` under a fixed, recorded thread count.

On a CPU shared with other busy processes, wall-clock times mostly measure the others'
load. ``clock="thread"`` times the CPU time of the measuring thread instead
(``time.thread_time_ns``; one torch thread only, so that all the work runs in it): not
the latency a user sees, but a far steadier estimate of the work, for comparing
predictions with measurements on a busy machine. Wall clock is the default everywhere.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nasfuse.runtime import default_device, device_name

__all__ = [
    "CLOCKS",
    "LatencyStats",
    "ModelInputs",
    "measure_latency",
    "thread_count",
    "device_name_at",
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


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one forward pass, over ``runs`` timed runs.

    Attributes:
        median_ms: median time of one forward pass, in milliseconds.
        p10_ms: 10th percentile (ms).
        p90_ms: 90th percentile (ms).
        mean_ms: mean (ms); pulled up by outliers, so prefer the median.
        runs: number of timed runs.
        batch_size: B of the input(s).
        input_shape: shape of the (first) input, ``(B, C, H, W)``.
        device: readable name of the hardware (``nasfuse.runtime.device_name``).
        threads: torch intra-op threads in use while measuring.
        clock: ``"wall"`` (elapsed time; CUDA events on a GPU) or ``"thread"`` (CPU time
            of the measuring thread).
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    runs: int
    batch_size: int
    input_shape: tuple[int, ...]
    device: str
    threads: int
    clock: str = "wall"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON/YAML."""
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        return data

    def __str__(self) -> str:
        return (
            f"{self.median_ms:.3f} ms median (p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f}; "
            f"{self.runs} runs, batch {self.batch_size}"
            f"{'' if self.clock == 'wall' else ', thread CPU time'}) on {self.device}"
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


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


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


def measure_latency(
    model: nn.Module,
    input_shape: Sequence[int] | None = None,
    device: str | torch.device | None = None,
    warmup: int = 10,
    runs: int = 50,
    channels_last: bool = False,
    threads: int | None = None,
    inputs: ModelInputs | None = None,
    dtype: torch.dtype = torch.float32,
    clock: str = "wall",
) -> LatencyStats:
    """Time ``model``'s forward pass on ``device``.

    The model is moved to ``device``, put in eval mode, run ``warmup`` times, then timed
    ``runs`` times under ``torch.inference_mode()``; afterwards it goes back to the device
    and train/eval mode it came with, so only one model occupies the target device at a
    time. Python's garbage collector is paused during the timed runs.

    Args:
        model: the module; called as ``model(x)``.
        input_shape: ``(B, C, H, W)`` of a random input, when ``inputs`` is not given.
        device: target device; default ``nasfuse.runtime.default_device()``.
        warmup: untimed runs first (allocator, caches, cuDNN autotuning).
        runs: timed runs.
        channels_last: run model and 4-D inputs in ``torch.channels_last`` memory format.
        threads: torch intra-op threads while measuring (restored afterwards); default the
            current count. Recorded in the result and in the device name on the CPU.
        inputs: instead of ``input_shape``: a tensor, a list of tensors (a fusion op
            takes K tensors of ``(B, C, H, W)``), or a factory ``f(device)`` returning one.
        dtype: dtype of the random input made from ``input_shape``.
        clock: ``"wall"`` (default) or ``"thread"``: CPU time of the measuring thread, for
            a busy shared CPU; needs ``device`` CPU and one thread.

    Returns:
        :class:`LatencyStats` in milliseconds.

    Example:
        >>> stats = measure_latency(model, (32, 3, 32, 32), runs=30, threads=1)
        >>> print(stats)  # 12.345 ms median (p10 ..., p90 ...; 30 runs, batch 32) on cpu:...
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    if (input_shape is None) == (inputs is None):
        raise ValueError("give exactly one of input_shape and inputs")
    target = torch.device(device) if device is not None else default_device()
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    if clock == "thread" and target.type != "cpu":
        raise ValueError(f"clock='thread' times CPU work only; the device is {target}")
    if target.type == "cuda" and target.index is None:
        target = torch.device("cuda", torch.cuda.current_device())

    home = _model_device(model)
    was_training = model.training
    cudnn_benchmark = torch.backends.cudnn.benchmark
    gc_was_enabled = gc.isenabled()
    with thread_count(threads) as used_threads:
        if clock == "thread" and used_threads != 1:
            raise ValueError(
                f"clock='thread' needs threads=1 (all work in the timed thread), got {used_threads}"
            )
        name = device_name(target)
        try:
            if target.type == "cuda":
                # Fixed shapes: let cuDNN pick its fastest kernels during the warm-up.
                torch.backends.cudnn.benchmark = True
            model.to(target)
            if channels_last:
                model.to(memory_format=torch.channels_last)
            model.eval()
            if inputs is None:
                shape = tuple(int(side) for side in input_shape)  # type: ignore[union-attr]
                value = torch.randn(shape, dtype=dtype)
            else:
                value = inputs(target) if callable(inputs) else inputs
            example = _to_device(value, target, channels_last)
            first = example if isinstance(example, torch.Tensor) else example[0]
            shape = tuple(first.shape)

            def forward() -> Any:
                return model(example)

            with torch.inference_mode():
                for _ in range(warmup):
                    forward()
                gc.collect()
                gc.disable()
                if target.type == "cuda":
                    times_ms = _time_runs_cuda(forward, runs, target)
                else:
                    times_ms = _time_runs_cpu(forward, runs, clock)
        finally:
            if gc_was_enabled:
                gc.enable()
            torch.backends.cudnn.benchmark = cudnn_benchmark
            if channels_last:
                model.to(memory_format=torch.contiguous_format)
            model.to(home)
            model.train(was_training)
            example = None  # noqa: F841 - drop the device copies before emptying the cache
            if target.type == "cuda":
                torch.cuda.empty_cache()

    times = np.asarray(times_ms, dtype=np.float64)
    p10, median, p90 = np.percentile(times, [10, 50, 90])
    return LatencyStats(
        median_ms=float(median),
        p10_ms=float(p10),
        p90_ms=float(p90),
        mean_ms=float(times.mean()),
        runs=runs,
        batch_size=int(shape[0]) if shape else 1,
        input_shape=shape,
        device=name,
        threads=used_threads,
        clock=clock,
    )
