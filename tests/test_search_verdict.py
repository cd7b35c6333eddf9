"""The verdict on fusion: the pick against all-add, the uniform networks, where fusion survives."""

from __future__ import annotations

import pytest

from nasfuse.search._study import TrialRecord
from nasfuse.search._verdict import (
    accuracy_noise,
    build_verdict,
    verdict_lines,
    verdict_markdown,
)

SITES = {"stage2.block0": ["add", "dwff"], "stage3.fuse.branch0": ["add", "dwff"]}


def _record(
    number: int,
    arch: dict[str, str],
    accuracy: float,
    latency: float,
    baseline: str | None = None,
    kind: str | None = None,
    status: str = "evaluated",
) -> TrialRecord:
    return TrialRecord(
        number=number,
        status=status,
        arch=arch,
        arch_hash="".join(arch.values()),
        accuracy=accuracy,
        latency_ms=latency,
        params=1000 + 100 * sum(op != "add" for op in arch.values()),
        flops=10_000 + 500 * sum(op != "add" for op in arch.values()),
        feasible=status != "infeasible",
        baseline=baseline,
        baseline_kind=kind,
        eval_samples=400,
    )


ADD = {"stage2.block0": "add", "stage3.fuse.branch0": "add"}
DWFF = {"stage2.block0": "dwff", "stage3.fuse.branch0": "dwff"}
MIXED = {"stage2.block0": "add", "stage3.fuse.branch0": "dwff"}


def test_accuracy_noise_is_two_binomial_standard_errors_and_at_least_one_image() -> None:
    # 2 * sqrt((0.9*0.1 + 0.8*0.2) / 400) = 2 * sqrt(0.25 / 400) = 0.05
    assert accuracy_noise(0.9, 0.8, 400) == pytest.approx(0.05)
    assert accuracy_noise(1.0, 1.0, 400) == pytest.approx(1 / 400)
    assert accuracy_noise(0.9, 0.8, None) is None


def test_nothing_beats_all_add_beyond_noise_is_said_plainly() -> None:
    add = _record(0, ADD, 0.90, 10.0, "all-add", "uniform")
    dwff = _record(1, DWFF, 0.91, 14.0, "all-dwff", "uniform")  # +1 pp, noise ~4.1 pp
    front = [add, dwff]
    verdict = build_verdict([add, dwff], front, pick=dwff)
    assert verdict.reference is add and verdict.beats == []
    assert verdict.best_uniform is dwff
    text = "\n".join(verdict_lines(verdict))
    assert "Nothing on the front beats all-add" in text
    assert "fusion does not pay" in text
    # The pick against all-add: +1.00 pp with its noise, +4 ms = +40%, +200 params = +20%.
    assert "+1.00 pp (noise ±4.15 pp)" in text
    assert "+4.000 ms (+40.0%)" in text and "params +200 (+20.0%)" in text
    assert "+0.00 MFLOPs (+10.0%)" in text  # +1,000 FLOPs on 10,000
    markdown = "\n".join(verdict_markdown(verdict, SITES))
    assert "| latency (ms) | 10.000 | 14.000 | +4.000 ms (+40.0%) |" in markdown
    assert "| all-dwff | 1 | evaluated | 0.9100 | 14.000 |" in markdown
    assert "400 validation images" in markdown


def test_a_front_point_beyond_noise_is_named_with_its_sites() -> None:
    add = _record(0, ADD, 0.80, 10.0, "all-add", "uniform")
    dwff = _record(1, DWFF, 0.70, 14.0, "all-dwff", "uniform")
    mixed = _record(2, MIXED, 0.90, 11.0)  # +10 pp, noise ~5.3 pp
    verdict = build_verdict([add, dwff, mixed], [add, mixed], pick=mixed)
    assert verdict.beats == [mixed]
    assert verdict.best_uniform is add
    assert verdict.site_ops["stage2.block0"] == {}
    assert verdict.site_ops["stage3.fuse.branch0"] == {"dwff": 1}
    text = "\n".join(verdict_lines(verdict))
    assert "1 of the front's 2 architectures beat all-add" in text
    assert "trial 2" in text and "+10.00 pp" in text
    assert "at 1 of 2 sites" in text and "stage3.fuse.branch0: dwff 1" in text
    markdown = "\n".join(verdict_markdown(verdict, SITES))
    assert "| stage3.fuse.branch0 | dwff 1 | dwff 1 |" in markdown
    assert "| stage2.block0 | — | — |" in markdown


def test_an_infeasible_all_add_is_reported_not_compared() -> None:
    add = _record(0, ADD, 0.0, 10.0, "all-add", "uniform", status="infeasible")
    dwff = _record(1, DWFF, 0.9, 14.0, "all-dwff", "uniform")
    verdict = build_verdict([add, dwff], [dwff], pick=dwff)
    assert verdict.reference is None and verdict.reference_status == "infeasible"
    assert "all-add was not evaluated (infeasible)" in verdict_lines(verdict)[1]
    markdown = "\n".join(verdict_markdown(verdict, SITES))
    assert "| all-add | 0 | infeasible |" in markdown
