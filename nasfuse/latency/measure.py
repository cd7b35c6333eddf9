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

A host whose speed drifts (a shared VM: here, the thread's CPU time equalled its wall time
while one network's forward pass wandered between 500 and 660 ms) defeats both clocks.
``measure_ratio`` times a model against a reference network, one forward pass of each in
turn, and reports the ratio, which neighbouring runs share even when the speed drifts; the
latency table measures every network that way.
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
    "RatioStats",
    "measure_latency",
    "measure_ratio",
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


def _time_runs(
    forward: Callable[[], Any], runs: int, device: torch.device, clock: str
) -> list[float]:
    """``runs`` timed calls of ``forward`` (ms): CUDA events on a GPU, else ``clock``."""
    if device.type == "cuda":
        return _time_runs_cuda(forward, runs, device)
    return _time_runs_cpu(forward, runs, clock)


def _check_options(
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


@contextlib.contextmanager
def _measuring(
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
    homes = [(model, _model_device(model), model.training) for model in models]
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


def _example_inputs(
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


def _first_shape(example: torch.Tensor | Sequence[torch.Tensor]) -> tuple[int, ...]:
    first = example if isinstance(example, torch.Tensor) else example[0]
    return tuple(first.shape)


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
    target = _check_options(runs, warmup, device, clock)
    name = device_name_at(target, threads)
    with _measuring([model], target, threads, channels_last, clock) as used_threads:
        example = _example_inputs(input_shape, inputs, dtype, target, channels_last)
        shape = _first_shape(example)

        def forward() -> Any:
            return model(example)

        for _ in range(warmup):
            forward()
        gc.collect()
        gc.disable()
        times_ms = _time_runs(forward, runs, target, clock)
        example = None  # drop the device copies before the cache is emptied

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


@dataclass(frozen=True)
class RatioStats:
    """How much longer a model's forward pass takes than a reference's, timed alternately.

    Attributes:
        ratio: median over the runs of ``model time / mean of the reference times either
            side of it``.
        p10, p90: 10th and 90th percentiles of those ratios.
        model_ms: median time of the model's runs (ms, not corrected).
        reference_ms: median time of the reference's runs (ms).
        runs: timed runs of the model (the reference ran one more).
        device, threads, clock: as in :class:`LatencyStats`.
    """

    ratio: float
    p10: float
    p90: float
    model_ms: float
    reference_ms: float
    runs: int
    device: str
    threads: int
    clock: str = "wall"


def measure_ratio(
    model: nn.Module,
    reference: nn.Module,
    input_shape: Sequence[int] | None = None,
    device: str | torch.device | None = None,
    warmup: int = 2,
    runs: int = 8,
    channels_last: bool = False,
    threads: int | None = None,
    inputs: ModelInputs | None = None,
    dtype: torch.dtype = torch.float32,
    clock: str = "wall",
) -> RatioStats:
    """Time ``model`` against ``reference``, one forward pass of each in turn.

    The order is ``R M R M ... M R``: every model run is divided by the mean of the
    reference runs just before and after it. On a host whose speed drifts (a shared
    VM, frequency scaling) neighbouring runs see nearly the same speed, so the ratio
    stays steady while the times themselves wander: on the 2-core VM this was written
    on, while its speed drifted, the same six networks measured three times differed by
    5% (median) in time and by 0.7% in ratio to the all-``add`` network, at 8 runs each
    (on the steady machine, both by about 1%). Both models take the same inputs; the
    other arguments are those of :func:`measure_latency`.
    """
    target = _check_options(runs, warmup, device, clock)
    name = device_name_at(target, threads)
    with _measuring([model, reference], target, threads, channels_last, clock) as used_threads:
        example = _example_inputs(input_shape, inputs, dtype, target, channels_last)
        for _ in range(warmup):
            model(example)
            reference(example)
        gc.collect()
        gc.disable()

        def time_once(which: nn.Module) -> float:
            (elapsed,) = _time_runs(lambda: which(example), 1, target, clock)
            return elapsed

        reference_ms = [time_once(reference)]
        model_ms = []
        for _ in range(runs):
            model_ms.append(time_once(model))
            reference_ms.append(time_once(reference))
        example = None  # drop the device copies before the cache is emptied

    neighbours = (np.asarray(reference_ms[:-1]) + np.asarray(reference_ms[1:])) / 2
    ratios = np.asarray(model_ms) / neighbours
    p10, median, p90 = np.percentile(ratios, [10, 50, 90])
    return RatioStats(
        ratio=float(median),
        p10=float(p10),
        p90=float(p90),
        model_ms=float(np.median(model_ms)),
        reference_ms=float(np.median(reference_ms)),
        runs=runs,
        device=name,
        threads=used_threads,
        clock=clock,
    )
