"""What a trial needs: the driver-side costs and the worker-side evaluator, as protocols.

The search engine sees an architecture's costs in the driver, before anything runs
(:class:`ArchCosts`: predicted latency, parameter count), and its accuracy from a Ray Tune
trial (:class:`ArchEvaluator`, shipped once to the workers through the object store with
``tune.with_parameters``). The real pair is built from the supernet and the latency table
(:mod:`nasfuse.search._supernet_eval`); :class:`SyntheticEvaluator` is a cheap stand-in
for testing the engine and comparing samplers.

:func:`evaluate_trial` is the trainable that reports once per architecture, and
:func:`read_report` reads that report back in the driver, so the report's format is kept
in this one module.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "ArchCosts",
    "ArchEvaluator",
    "SyntheticEvaluator",
    "SyntheticCosts",
    "evaluate_trial",
    "TrialOutcome",
    "read_report",
]


@runtime_checkable
class ArchCosts(Protocol):
    """Cheap, driver-side costs of an architecture, known before it is evaluated."""

    device: str
    """Where latencies were measured (``nasfuse.runtime.device_name``)."""

    def latency_ms(self, arch: Mapping[str, str]) -> float:
        """Predicted latency in milliseconds."""
        ...

    def params(self, arch: Mapping[str, str]) -> int:
        """Number of parameters of the standalone network."""
        ...


@runtime_checkable
class ArchEvaluator(Protocol):
    """Worker-side scoring of an architecture; must pickle (it travels to Ray workers)."""

    def evaluate(self, arch: Mapping[str, str]) -> Mapping[str, float]:
        """Score ``arch``.

        Returns:
            At least ``accuracy`` (in [0, 1]); optionally ``flops``, ``eval_samples`` (the
            number of images the accuracy was measured on, which sets its noise) and a
            measured ``latency_ms`` that then replaces the predicted one as the objective.
        """
        ...


def evaluate_trial(config: dict[str, Any], evaluator: ArchEvaluator) -> None:
    """The Ray Tune trainable: evaluate ``config["arch"]`` once and report once.

    The report always holds ``accuracy`` and ``latency_ms`` (Ray Tune checks the metrics
    it was given): the latency is the evaluator's measurement if it returns one, else the
    driver's prediction from ``config["predicted_latency_ms"]``.

    An exception or a non-finite accuracy is reported as ``status: failed`` with the
    error text (instead of crashing the Ray trial), so the driver records the Optuna
    trial as failed and the search goes on.
    """
    import torch
    from ray import tune

    torch.set_num_threads(int(config.get("torch_threads", 1)))
    started = time.perf_counter()
    try:
        metrics = {k: float(v) for k, v in evaluator.evaluate(config["arch"]).items()}
        accuracy = metrics.get("accuracy", float("nan"))
        if not math.isfinite(accuracy):
            raise ValueError(f"accuracy is {accuracy}")
        report: dict[str, Any] = {
            "status": "evaluated",
            "latency_ms": float(config["predicted_latency_ms"]),
            **metrics,
        }
    except Exception as exc:  # any failure of one architecture must not stop the search
        report = {
            "status": "failed",
            "accuracy": float("nan"),
            "latency_ms": float(config["predicted_latency_ms"]),
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=8)[-4000:],
        }
    report["eval_seconds"] = time.perf_counter() - started
    tune.report(report)


@dataclass(frozen=True)
class TrialOutcome:
    """What the report of :func:`evaluate_trial` means for the Optuna trial it evaluated."""

    values: list[float] | None
    """``[accuracy, latency_ms]``; None when the evaluation failed."""
    attrs: dict[str, Any]
    """User attributes for the trial: the error and traceback, or the evaluation's results."""
    carried: dict[str, Any]
    """The results a cached repeat of the architecture carries over (none when failed)."""


def read_report(
    result: Mapping[str, Any], error: bool, predicted_latency_ms: float
) -> TrialOutcome:
    """Read a Ray trial's report; ``error`` when the Ray trial itself crashed.

    Without ``status: evaluated`` and a finite accuracy the evaluation failed, and its error
    text (or what went wrong instead) is kept.
    """
    accuracy = result.get("accuracy")
    failed = (
        error
        or result.get("status") != "evaluated"
        or accuracy is None
        or not math.isfinite(float(accuracy))
    )
    if failed:
        message = result.get("error") or (
            "the Ray trial crashed" if error else "no accuracy reported"
        )
        attrs = {"error": str(message)[:2000], "traceback": result.get("traceback")}
        return TrialOutcome(values=None, attrs=attrs, carried={})
    # The trial's latency is its measurement when the evaluator measures, else the
    # prediction it was given.
    latency = float(result.get("latency_ms", predicted_latency_ms))
    extra = {
        key: int(result[key]) if result.get(key) is not None else None
        for key in ("flops", "eval_samples")
    }
    attrs = {**extra, "eval_seconds": result.get("eval_seconds")}
    return TrialOutcome(values=[float(accuracy), latency], attrs=attrs, carried=extra)


def _unit_hash(*parts: str) -> float:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class SyntheticEvaluator:
    """A deterministic stand-in for the supernet: accuracy from op "quality" scores.

    Each op has a quality (later ops in ``op_order`` are better and slower, as attention
    fusion is compared with addition); accuracy = 0.5 + 0.4 * mean quality, plus a small
    per-architecture jitter. Optionally fails on chosen (site, op) pairs, sleeps, and logs every
    evaluation to a file so tests can count them across Ray workers.

    Args:
        op_order: ops from cheapest to best.
        fail_when: site -> op; an architecture with any of these choices raises (or gives
            NaN accuracy with ``nan=True``).
        nan: fail by returning NaN accuracy instead of raising.
        log_path: if given, one line ``<arch_hash>`` is appended per evaluation.
        seconds: time to sleep per evaluation (to make a trial last).
        eval_samples: reported as the number of evaluation images (None: not reported).
    """

    def __init__(
        self,
        op_order: Sequence[str],
        fail_when: Mapping[str, str] | None = None,
        nan: bool = False,
        log_path: str | Path | None = None,
        seconds: float = 0.0,
        eval_samples: int | None = None,
    ) -> None:
        self.op_order = list(op_order)
        self.fail_when = dict(fail_when or {})
        self.nan = nan
        self.log_path = str(log_path) if log_path is not None else None
        self.seconds = seconds
        self.eval_samples = eval_samples

    def evaluate(self, arch: Mapping[str, str]) -> dict[str, float]:
        from nasfuse.arch import arch_hash

        if self.log_path is not None:
            with open(self.log_path, "a") as handle:
                handle.write(f"{arch_hash(arch)} {os.getpid()}\n")
        if self.seconds:
            time.sleep(self.seconds)
        if any(arch.get(site) == op for site, op in self.fail_when.items()):
            if self.nan:
                return {"accuracy": float("nan")}
            raise RuntimeError(f"synthetic failure: {self.fail_when}")
        top = max(len(self.op_order) - 1, 1)
        quality = sum(self.op_order.index(op) / top for op in arch.values()) / max(len(arch), 1)
        jitter = _unit_hash(*sorted(f"{k}={v}" for k, v in arch.items())) * 0.02
        metrics = {"accuracy": 0.5 + 0.4 * quality + jitter, "flops": 1000.0 * (1 + quality)}
        if self.eval_samples is not None:
            metrics["eval_samples"] = float(self.eval_samples)
        return metrics


class SyntheticCosts:
    """Additive latency and params for :class:`SyntheticEvaluator`'s ops.

    Latency = 1 ms + sum over sites of the op's position in ``op_order`` (ms); params =
    1000 + 100 * position, summed likewise.
    """

    def __init__(self, op_order: Sequence[str]) -> None:
        self.op_order = list(op_order)
        self.device = "synthetic"

    def latency_ms(self, arch: Mapping[str, str]) -> float:
        return 1.0 + sum(float(self.op_order.index(op)) for op in arch.values())

    def params(self, arch: Mapping[str, str]) -> int:
        return 1000 + sum(100 * self.op_order.index(op) for op in arch.values())
