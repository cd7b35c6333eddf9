"""Calibration statistics of the latency table: plain numbers in, plain numbers out.

``measured ~ scale * raw + offset`` is fitted in the form (none, offset only, scale only,
both) that predicts left-out samples best; :func:`latency_errors` says how well
predictions match measurements. No torch, no table: easy to test on known values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "CALIBRATION_FORMS",
    "best_form",
    "calibration_record",
    "fit_form",
    "format_errors",
    "latency_errors",
    "leave_one_out_error",
]

# Simplest first: on a tie the simpler correction wins, and "none" keeps the table as built.
CALIBRATION_FORMS = ("none", "offset", "scale", "scale+offset")


def latency_errors(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, Any]:
    """How well predictions match measurements.

    Returns:
        ``median_abs_pct_error`` (median of ``|pred - meas| / meas``, in percent),
        ``mean_abs_pct_error``, ``max_abs_pct_error``, ``within_10pct`` (share of samples
        with ``|pred - meas| <= 10% meas``, in [0, 1]), ``kendall_tau`` (rank agreement,
        ``scipy.stats.kendalltau``; None for fewer than two samples) and ``samples``.
    """
    from scipy.stats import kendalltau

    pred = np.asarray(predicted, dtype=np.float64)
    meas = np.asarray(measured, dtype=np.float64)
    if pred.shape != meas.shape or pred.size == 0:
        raise ValueError(
            f"need equally many predictions and measurements, got {pred.size} and {meas.size}"
        )
    abs_pct = np.abs(pred - meas) / meas * 100.0
    tau = float(kendalltau(pred, meas).statistic) if pred.size > 1 else None
    return {
        "median_abs_pct_error": float(np.median(abs_pct)),
        "mean_abs_pct_error": float(abs_pct.mean()),
        "max_abs_pct_error": float(abs_pct.max()),
        "within_10pct": float((abs_pct <= 10.0).mean()),
        "kendall_tau": tau,
        "samples": int(pred.size),
    }


def format_errors(errors: Mapping[str, Any]) -> str:
    """One line for people: ``median |error| 2.10%, 97% within ±10%, Kendall tau 0.871``."""
    tau = errors["kendall_tau"]
    return (
        f"median |error| {errors['median_abs_pct_error']:.2f}%, "
        f"{100 * errors['within_10pct']:.0f}% within ±10%, "
        f"Kendall tau {'n/a' if tau is None else f'{tau:.3f}'}"
    )


def fit_form(form: str, raw: np.ndarray, meas: np.ndarray) -> tuple[float, float]:
    """Least-squares ``(scale, offset)`` of ``meas ~ scale * raw + offset`` in ``form``."""
    if form == "none":
        return 1.0, 0.0
    if form == "offset" or (form == "scale+offset" and np.ptp(raw) == 0):
        return 1.0, float(np.mean(meas - raw))
    if form == "scale":
        return float(np.dot(raw, meas) / np.dot(raw, raw)), 0.0
    scale, offset = np.polyfit(raw, meas, 1)
    return float(scale), float(offset)


def leave_one_out_error(form: str, raw: np.ndarray, meas: np.ndarray) -> float:
    """Median absolute % error of ``form`` predicting each sample from the others."""
    errors = []
    for index in range(raw.size):
        keep = np.arange(raw.size) != index
        if form == "scale+offset" and keep.sum() < 3:
            return float("inf")  # two points fit any line exactly: no evidence
        scale, offset = fit_form(form, raw[keep], meas[keep])
        if scale <= 0:
            return float("inf")  # a fit that reverses the table's order is no correction
        errors.append(abs(scale * raw[index] + offset - meas[index]) / meas[index] * 100)
    return float(np.median(errors))


def best_form(raw: np.ndarray, meas: np.ndarray) -> tuple[str, dict[str, float]]:
    """The form with the smallest leave-one-out error, and every form's error.

    The simplest form (in :data:`CALIBRATION_FORMS` order) whose error is the smallest, up
    to rounding: exact data fit by "scale" is fit by "scale+offset" too.
    """
    loo = {form: leave_one_out_error(form, raw, meas) for form in CALIBRATION_FORMS}
    best = min(loo.values())
    return next(name for name in CALIBRATION_FORMS if loo[name] <= best + 1e-9), loo


def calibration_record(
    raw_ms: Sequence[float], measured_ms: Sequence[float], archs: Sequence[str], seed: int | None
) -> dict[str, Any]:
    """Fit the best form of ``measured ~ scale * raw + offset`` (see :func:`best_form`).

    Args:
        raw_ms: the table's uncalibrated predictions of the sample.
        measured_ms: their measured latencies.
        archs: the sample, each as one line (``LatencyTable.encode_arch``).
        seed: the seed the sample was drawn with (None: not known).

    Returns:
        The calibration record of the table file: the form, its scale and offset, every
        form's leave-one-out error (None for no evidence), the errors before and after on
        this sample, the measurements and the architectures.
    """
    raw = np.array(raw_ms)
    meas = np.array(measured_ms, dtype=np.float64)
    if raw.size < 2:
        raise ValueError(f"calibration needs at least 2 architectures, got {raw.size}")
    form, loo = best_form(raw, meas)
    scale, offset = fit_form(form, raw, meas)
    return {
        "method": f"least squares, form {form!r} (smallest leave-one-out error)",
        "form": form,
        "leave_one_out_median_abs_pct_error": {
            name: None if np.isinf(error) else error for name, error in loo.items()
        },
        "scale": float(scale),
        "offset_ms": float(offset),
        "samples": len(archs),
        "seed": seed,
        "before": latency_errors(raw, meas),
        "after": latency_errors(scale * raw + offset, meas),
        "measured_ms": [float(value) for value in meas],
        "raw_ms": [float(value) for value in raw],
        "archs": list(archs),
    }
