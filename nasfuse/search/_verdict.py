"""Is fusion worth it here? The pick against all-add, the uniform networks, and where fusion survives.

Every search evaluates all-add and the other uniform networks first (see
:mod:`nasfuse.search._baselines`), so the report can compare the pick with the plain network
a user has today. :func:`build_verdict` reads it off the trial records;
:func:`verdict_markdown` (``report.md``, TensorBoard text) and :func:`verdict_lines` (the
terminal) say it from the same sentences.

The noise of an accuracy difference: both accuracies are fractions of the same ``n``
validation images; taking each as binomial, two standard errors of the difference are
``2 * sqrt(a(1-a)/n + b(1-b)/n)``, and never less than one image (``1/n``)
(:func:`~nasfuse.search._pareto.accuracy_noise`). That leaves out the spread BN
recalibration adds, so it is a lower bound on the real noise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nasfuse.search._baselines import FALLBACK_OP
from nasfuse.search._pareto import accuracy_noise
from nasfuse.search._study import TrialRecord

__all__ = ["Verdict", "accuracy_noise", "build_verdict", "verdict_lines", "verdict_markdown"]

REFERENCE = f"all-{FALLBACK_OP}"


@dataclass
class Verdict:
    """What a search says about fusion (see the module doc).

    Attributes:
        pick: the picked architecture (``best.yaml``).
        reference: the all-add trial (first one with objective values), None if none.
        reference_status: what happened to all-add (``evaluated``, ``infeasible``, ``not run``).
        uniforms: the first trial of each uniform baseline, in the order enqueued.
        front: the Pareto front, by latency.
        beats: front architectures more accurate than all-add by more than the noise.
        site_ops: site -> counts of the non-add ops chosen there across the front.
    """

    pick: TrialRecord
    reference: TrialRecord | None
    reference_status: str
    uniforms: list[TrialRecord]
    front: list[TrialRecord]
    beats: list[TrialRecord] = field(default_factory=list)
    site_ops: dict[str, Counter] = field(default_factory=dict)

    def noise(self, record: TrialRecord) -> float | None:
        """Noise of ``record``'s accuracy minus all-add's."""
        if self.reference is None or record.accuracy is None:
            return None
        samples = record.eval_samples or self.reference.eval_samples
        return accuracy_noise(record.accuracy, self.reference.accuracy, samples)  # type: ignore[arg-type]

    @property
    def best_uniform(self) -> TrialRecord | None:
        """The most accurate uniform network (ties: the faster)."""
        scored = [r for r in self.uniforms if r.on_objectives]
        if not scored:
            return None
        return max(scored, key=lambda r: (r.accuracy, -r.latency_ms))  # type: ignore[operator]


def build_verdict(
    records: Sequence[TrialRecord], front: Sequence[TrialRecord], pick: TrialRecord
) -> Verdict:
    """Gather the verdict of a search from its trial records, its front and its pick."""
    uniforms: dict[str, TrialRecord] = {}
    for record in records:
        if record.baseline_kind != "uniform" or record.status == "interrupted":
            continue
        held = uniforms.get(record.baseline)  # type: ignore[arg-type]
        if held is None or (record.on_objectives and not held.on_objectives):
            uniforms[record.baseline] = record  # type: ignore[index]
    add = uniforms.get(REFERENCE)
    reference = add if add is not None and add.on_objectives else None
    status = add.status if add is not None else "not run"
    verdict = Verdict(pick, reference, status, list(uniforms.values()), list(front))
    if reference is not None:
        for record in front:
            gain = record.accuracy - reference.accuracy  # type: ignore[operator]
            noise = verdict.noise(record)
            if gain > (noise if noise is not None else 0.0):
                verdict.beats.append(record)
    for site in pick.arch:
        verdict.site_ops[site] = Counter(
            r.arch[site] for r in front if r.arch.get(site, FALLBACK_OP) != FALLBACK_OP
        )
    return verdict


def _signed(value: float, digits: int) -> str:
    return f"{value:+.{digits}f}"


def _percent(delta: float, base: float | None) -> str:
    return f" ({delta / base * 100:+.1f}%)" if base else ""


def _accuracy_delta(verdict: Verdict, record: TrialRecord) -> str:
    assert verdict.reference is not None and record.accuracy is not None
    gain = (record.accuracy - verdict.reference.accuracy) * 100  # type: ignore[operator]
    noise = verdict.noise(record)
    stated = f"noise ±{noise * 100:.2f} pp" if noise is not None else "noise unknown"
    return f"{_signed(gain, 2)} pp ({stated})"


def _cost_delta(record: TrialRecord, reference: TrialRecord, name: str) -> str:
    value, base = getattr(record, name), getattr(reference, name)
    if value is None or base is None:
        return "unknown"
    if name == "latency_ms":
        return f"{_signed(value - base, 3)} ms{_percent(value - base, base)}"
    if name == "flops":
        return f"{_signed((value - base) / 1e6, 2)} MFLOPs{_percent(value - base, base)}"
    return f"{value - base:+,d}{_percent(value - base, base)}"


def _headline(verdict: Verdict) -> str:
    """The verdict in one or two sentences."""
    reference = verdict.reference
    if reference is None:
        return (
            f"all-add was not evaluated ({verdict.reference_status}), so the pick cannot be "
            "compared with the plain network."
        )
    base = f"all-add (trial {reference.number}: accuracy {reference.accuracy:.4f}, "
    base += f"{reference.latency_ms:.3f} ms)"
    if not verdict.beats:
        return (
            f"Nothing on the front beats {base} by more than the evaluation's noise: here "
            "fusion does not pay for its latency, and all-add is the network to keep."
        )
    first = verdict.beats[0]
    return (
        f"{len(verdict.beats)} of the front's {len(verdict.front)} architectures beat {base} "
        f"by more than the evaluation's noise; the fastest of them, trial {first.number}, "
        f"gains {_accuracy_delta(verdict, first)} for "
        f"{_cost_delta(first, reference, 'latency_ms')}."
    )


def _pick_sentence(verdict: Verdict) -> str | None:
    reference = verdict.reference
    if reference is None:
        return None
    pick = verdict.pick
    if pick.arch_hash == reference.arch_hash:
        return f"The pick (trial {pick.number}) is all-add itself."
    return (
        f"The pick (trial {pick.number}) against all-add: accuracy "
        f"{_accuracy_delta(verdict, pick)}, latency {_cost_delta(pick, reference, 'latency_ms')}, "
        f"params {_cost_delta(pick, reference, 'params')}, "
        f"{_cost_delta(pick, reference, 'flops')}."
    )


def _uniform_sentence(verdict: Verdict) -> str:
    best = verdict.best_uniform
    if best is None:
        return "No uniform network has objective values (all infeasible or failed)."
    return (
        f"The best uniform network is {best.baseline} (trial {best.number}): accuracy "
        f"{best.accuracy:.4f}, {best.latency_ms:.3f} ms."
    )


def _sites_sentence(verdict: Verdict) -> str:
    fused = {s: c for s, c in verdict.site_ops.items() if c}
    if not fused:
        return "No non-add op survives on the front: it holds all-add alone or add-only variants."
    busiest = sorted(fused, key=lambda s: -sum(fused[s].values()))[:3]
    where = "; ".join(
        f"{site}: " + ", ".join(f"{op} {n}" for op, n in fused[site].most_common())
        for site in busiest
    )
    return (
        f"Non-add ops survive on the front at {len(fused)} of {len(verdict.site_ops)} sites "
        f"(most often {where})."
    )


def verdict_lines(verdict: Verdict) -> list[str]:
    """The verdict for the terminal: plain sentences, no tables."""
    sentences = [_headline(verdict), _pick_sentence(verdict), _uniform_sentence(verdict)]
    sentences.append(_sites_sentence(verdict))
    return ["Is fusion worth it here?"] + [f"  {s}" for s in sentences if s]


def _mflops(record: TrialRecord) -> str:
    return f"{record.flops / 1e6:.2f}" if record.flops is not None else ""


def verdict_markdown(verdict: Verdict, sites: Mapping[str, Sequence[str]]) -> list[str]:
    """The verdict as a ``report.md`` section (also TensorBoard's ``verdict`` text)."""
    lines = ["## Is fusion worth it here?", "", f"**{_headline(verdict)}**", ""]
    reference, pick = verdict.reference, verdict.pick
    if reference is not None:
        noise = verdict.noise(pick)
        samples = pick.eval_samples or reference.eval_samples
        lines += [
            f"| | all-add (trial {reference.number}) | pick (trial {pick.number}) | Δ |",
            "|---|---:|---:|---|",
            f"| accuracy | {reference.accuracy:.4f} | {pick.accuracy:.4f} | "
            f"{_accuracy_delta(verdict, pick)} |",
            f"| latency (ms) | {reference.latency_ms:.3f} | {pick.latency_ms:.3f} | "
            f"{_cost_delta(pick, reference, 'latency_ms')} |",
            f"| params | {reference.params} | {pick.params} | "
            f"{_cost_delta(pick, reference, 'params')} |",
            f"| MFLOPs | {_mflops(reference)} | {_mflops(pick)} | "
            f"{_cost_delta(pick, reference, 'flops')} |",
            "",
            (
                f"Noise: ±{noise * 100:.2f} pp is two standard errors of the difference of two "
                f"accuracies on the same {samples} validation images, each taken as binomial "
                "(at least one image); BN recalibration's own spread is not in it."
                if noise is not None
                else "Noise: unknown (the evaluator did not report how many images it scored)."
            ),
            "",
        ]
    lines += [
        _uniform_sentence(verdict),
        "",
        "| uniform network | trial | status | accuracy | latency (ms) | params | MFLOPs "
        "| on the front | note |",
        "|---|---:|---|---:|---:|---:|---:|---|---|",
    ]
    front_hashes = {r.arch_hash for r in verdict.front}
    for record in verdict.uniforms:
        scored = record.on_objectives
        lines.append(
            f"| {record.baseline} | {record.number} | {record.status} | "
            f"{f'{record.accuracy:.4f}' if scored else ''} | "
            f"{f'{record.latency_ms:.3f}' if record.latency_ms is not None else ''} | "
            f"{record.params if record.params is not None else ''} | {_mflops(record)} | "
            f"{'yes' if record.arch_hash in front_hashes else 'no'} | "
            f"{record.baseline_note or ''} |"
        )
    lines += [
        "",
        f"### Where fusion survives: non-add ops on the front ({len(verdict.front)} "
        f"architectures; {len(verdict.beats)} of them beat all-add beyond noise)",
        "",
        _sites_sentence(verdict),
        "",
        "| site | non-add ops across the front | across those beating all-add |",
        "|---|---|---|",
    ]
    for site in sites:
        beating = Counter(
            r.arch[site] for r in verdict.beats if r.arch.get(site, FALLBACK_OP) != FALLBACK_OP
        )
        cells = [
            ", ".join(f"{op} {n}" for op, n in counts.most_common()) or "—"
            for counts in (verdict.site_ops.get(site, Counter()), beating)
        ]
        lines.append(f"| {site} | {cells[0]} | {cells[1]} |")
    lines.append("")
    return lines
