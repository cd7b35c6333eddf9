"""Two objectives, accuracy (maximise) and latency (minimise): front, hypervolume, knee, picks.

Everything here works on plain ``(accuracy, latency_ms)`` pairs so it can be checked by
hand. Accuracy is a fraction in [0, 1]; latency is in milliseconds.

Example:
    >>> points = [(0.90, 5.0), (0.80, 2.0), (0.85, 6.0), (0.95, 9.0)]
    >>> pareto_front(points)
    [1, 0, 3]
    >>> round(hypervolume(points, reference_latency_ms=10.0), 4)
    0.695
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "Point",
    "dominates",
    "pareto_front",
    "hypervolume",
    "knee_index",
    "pick_index",
    "parse_pick",
    "accuracy_noise",
    "PICK_RULES",
]

Point = tuple[float, float]
"""``(accuracy, latency_ms)``."""

PICK_RULES = ("knee", "max-acc", "max-latency=MS", "within-noise")


def accuracy_noise(accuracy_a: float, accuracy_b: float, samples: int | None) -> float | None:
    """Two standard errors of ``accuracy_a - accuracy_b`` on ``samples`` images (None: unknown).

    Both accuracies are fractions of the same ``samples`` images; taking each as binomial,
    two standard errors of the difference are ``2 * sqrt(a(1-a)/n + b(1-b)/n)``, and never
    less than one image (``1/n``).
    """
    if not samples:
        return None
    variance = sum(p * (1.0 - p) for p in (accuracy_a, accuracy_b)) / samples
    return max(2.0 * math.sqrt(variance), 1.0 / samples)


def dominates(a: Point, b: Point) -> bool:
    """True when ``a`` is at least as good as ``b`` in both objectives and better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def _check(points: Sequence[Point]) -> None:
    for i, (acc, lat) in enumerate(points):
        if not (math.isfinite(acc) and math.isfinite(lat)):
            raise ValueError(f"point {i} = ({acc}, {lat}) is not finite")


def pareto_front(points: Sequence[Point]) -> list[int]:
    """Indices of the non-dominated points, ordered by latency (then accuracy) ascending.

    Points with identical values do not dominate each other, so all of them are kept
    (as ``optuna.Study.best_trials`` does).

    Args:
        points: ``(accuracy, latency_ms)`` per candidate.

    Returns:
        Indices into ``points``; along the returned order latency and accuracy both rise.
    """
    _check(points)
    front = [i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)]
    return sorted(front, key=lambda i: (points[i][1], points[i][0], i))


def hypervolume(points: Sequence[Point], reference_latency_ms: float) -> float:
    """Normalised 2-D hypervolume of the points' front, in [0, 1].

    The reference point is (accuracy 0, latency ``reference_latency_ms``): the dominated
    region is the union of the boxes ``[latency, reference] x [0, accuracy]``; its area is
    divided by the box ``[0, reference] x [0, 1]``, so 1 would mean accuracy 1 at 0 ms.
    Points at or beyond the reference latency, or with accuracy <= 0, add nothing.

    Args:
        points: ``(accuracy, latency_ms)`` pairs (any, dominated ones included).
        reference_latency_ms: the latency bound of the reference point (> 0).
    """
    if reference_latency_ms <= 0:
        raise ValueError(f"reference latency must be > 0 ms, got {reference_latency_ms}")
    inside = [(a, t) for a, t in points if a > 0 and t < reference_latency_ms]
    if not inside:
        return 0.0
    area = 0.0
    best_accuracy_so_far = 0.0
    # Sweep from the fastest point: each point adds the strip of accuracy it gains over
    # every faster point, over the latency range from itself to the reference.
    for acc, lat in sorted(inside, key=lambda p: (p[1], -p[0])):
        if acc > best_accuracy_so_far:
            area += (acc - best_accuracy_so_far) * (reference_latency_ms - lat)
            best_accuracy_so_far = acc
    return area / reference_latency_ms


def knee_index(points: Sequence[Point]) -> int:
    """Index of the knee of the points' Pareto front.

    The front is normalised to [0, 1] in both objectives (accuracy by its min and max on
    the front, latency likewise); the two extremes are then (0, 0), the fastest point, and
    (1, 1), the most accurate one. The knee is the front point farthest above the line
    joining them, that is the one maximising ``accuracy_norm - latency_norm``. Ties go to
    the higher accuracy, then the lower latency. A front whose points share one accuracy
    gives its fastest point; one point gives that point.
    """
    if not points:
        raise ValueError("no points to pick a knee from")
    front = pareto_front(points)
    accs = [points[i][0] for i in front]
    lats = [points[i][1] for i in front]
    acc_span = max(accs) - min(accs)
    lat_span = max(lats) - min(lats)
    if acc_span == 0 or lat_span == 0:
        return front[0]

    def score(i: int) -> tuple[float, float, float]:
        acc, lat = points[i]
        gain = (acc - min(accs)) / acc_span - (lat - min(lats)) / lat_span
        return (round(gain, 12), acc, -lat)

    return max(front, key=score)


def parse_pick(pick: str) -> tuple[str, float | None]:
    """``"knee"`` -> ("knee", None), ``"max-acc"``, ``"max-latency=4.5"`` -> ("max-latency", 4.5)."""
    text = pick.strip()
    if text in ("knee", "max-acc", "within-noise"):
        return text, None
    name, sep, value = text.partition("=")
    if name == "max-latency" and sep:
        try:
            bound = float(value)
        except ValueError:
            bound = float("nan")
        if math.isfinite(bound) and bound > 0:
            return name, bound
    raise ValueError(
        f"unknown pick rule {pick!r}; expected one of knee, max-acc, max-latency=MS "
        "(MS a positive number of milliseconds), within-noise"
    )


def pick_index(points: Sequence[Point], pick: str, samples: int | None = None) -> int:
    """Index of the point chosen by a rule.

    Rules:
        ``knee``: :func:`knee_index`.
        ``max-acc``: highest accuracy; ties go to the lower latency.
        ``max-latency=MS``: highest accuracy among points with latency <= MS; ties go to
        the lower latency. ValueError if no point is that fast.
        ``within-noise``: the fastest point whose accuracy is within the noise
        (:func:`accuracy_noise` on ``samples`` images) of the highest accuracy; ties go
        to the higher accuracy. The one-standard-error rule of model selection, with two:
        a slower network is taken only for a gain the evaluation can tell from chance.
        ValueError without ``samples``.
    """
    if not points:
        raise ValueError("no points to pick from")
    _check(points)
    rule, bound = parse_pick(pick)
    if rule == "knee":
        return knee_index(points)
    if rule == "within-noise":
        return _within_noise_index(points, samples)
    candidates = list(range(len(points)))
    if rule == "max-latency":
        assert bound is not None
        candidates = [i for i in candidates if points[i][1] <= bound]
        if not candidates:
            fastest = min(p[1] for p in points)
            raise ValueError(
                f"no architecture is within {bound:g} ms; the fastest evaluated one takes "
                f"{fastest:.3f} ms"
            )
    return max(candidates, key=lambda i: (points[i][0], -points[i][1], -i))


def _within_noise_index(points: Sequence[Point], samples: int | None) -> int:
    if not samples:
        raise ValueError(
            "the within-noise pick needs the number of validation images the accuracies "
            "were measured on, and this study does not record it"
        )
    top = max(accuracy for accuracy, _ in points)
    close = [
        i
        for i, (accuracy, _) in enumerate(points)
        if top - accuracy <= accuracy_noise(top, accuracy, samples)  # type: ignore[operator]
    ]
    return min(close, key=lambda i: (points[i][1], -points[i][0], i))
