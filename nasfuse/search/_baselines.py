"""The architectures every search starts from: the uniform ones and one-group variants of all-add.

A user comparing fusion ops needs the plain network they have today on the front, and a
randomly started sampler over 7^27 architectures does not find it. So the searcher enqueues
these first (Optuna ``enqueue_trial``), in this order:

- ``all-add``, then ``all-<op>`` for every other op of the space (in the space's order): the
  op wherever it is allowed, and add at the sites where it is not (the baseline's ``note``
  says how many);
- one-group variants of all-add: add everywhere except one *group* of sites, where one
  other op sits. The groups are the stages (the first part of a site name, ``stage3`` or
  ``layer2``) and the kinds of site (``fuse`` outputs of HRNet's fuse layers, ``block``
  residual blocks); a group that holds every site is left out (it is a uniform network).
  They start the sampler near the fast end of the front. Their order takes one variant
  per op before a second one of any op, each op's cheapest group (by predicted latency) first.

Example:
    >>> sites = {"stage2.block0": ["add", "dwff"], "stage2.fuse.branch0": ["add", "dwff"]}
    >>> [b.name for b in uniform_baselines(sites)]
    ['all-add', 'all-dwff']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "Baseline",
    "FALLBACK_OP",
    "baseline_architectures",
    "default_variant_count",
    "site_groups",
    "uniform_baselines",
    "variant_baselines",
]

FALLBACK_OP = "add"
"""The op a baseline uses where its own op is not allowed (and everywhere a variant's is not)."""


@dataclass(frozen=True)
class Baseline:
    """One enqueued architecture.

    Attributes:
        name: ``all-add``, ``all-dwff``, or ``dwff@stage3`` (a variant: dwff in group stage3).
        kind: ``uniform`` or ``variant``.
        arch: site -> op.
        note: what differs from the name's promise (``cmgm at 20 of 27 sites, add at 7``).
    """

    name: str
    kind: str
    arch: dict[str, str]
    note: str = ""


def _fallback(ops: Sequence[str]) -> str:
    return FALLBACK_OP if FALLBACK_OP in ops else ops[0]


def _ops_in_order(sites: Mapping[str, Sequence[str]]) -> list[str]:
    ops: list[str] = []
    for allowed in sites.values():
        ops.extend(op for op in allowed if op not in ops)
    if FALLBACK_OP in ops:
        ops.remove(FALLBACK_OP)
        ops.insert(0, FALLBACK_OP)
    return ops


def _with_op(
    sites: Mapping[str, Sequence[str]], op: str, where: Callable[[str], bool]
) -> tuple[dict[str, str], int]:
    """``op`` at the sites ``where`` accepts and allows it, the fallback elsewhere; and how many."""
    arch: dict[str, str] = {}
    placed = 0
    for site, allowed in sites.items():
        if where(site) and op in allowed:
            arch[site] = op
            placed += 1
        else:
            arch[site] = _fallback(allowed)
    return arch, placed


def uniform_baselines(sites: Mapping[str, Sequence[str]]) -> list[Baseline]:
    """``all-<op>`` for every op of the space, ``all-add`` first (see the module doc)."""
    baselines = []
    for op in _ops_in_order(sites):
        arch, placed = _with_op(sites, op, lambda _site: True)
        note = ""
        if placed < len(sites):
            others = sorted({arch[s] for s in sites if arch[s] != op})
            note = (
                f"{op} at the {placed} of {len(sites)} sites that allow it, "
                f"{'/'.join(others)} at the other {len(sites) - placed}"
            )
        baselines.append(Baseline(f"all-{op}", "uniform", arch, note))
    return baselines


def site_groups(site_names: Sequence[str]) -> dict[str, list[str]]:
    """Groups for variants: one per stage (first name part), one per kind (``fuse``/``block``).

    Groups holding every site, and groups equal to an earlier one, are left out.
    """
    groups: dict[str, list[str]] = {}
    for name in site_names:
        groups.setdefault(name.split(".")[0], []).append(name)
    for name in site_names:
        kind = "fuse" if ".fuse." in f".{name}." else "block"
        groups.setdefault(kind, []).append(name)
    kept: dict[str, list[str]] = {}
    for group, members in groups.items():
        if len(members) < len(site_names) and members not in kept.values():
            kept[group] = members
    return kept


def variant_baselines(
    sites: Mapping[str, Sequence[str]], latency_ms: Callable[[Mapping[str, str]], float]
) -> list[Baseline]:
    """Every one-group variant of all-add, in the order of the module doc."""
    per_op: list[list[tuple[float, Baseline]]] = []
    for op in _ops_in_order(sites)[1:]:
        candidates = []
        for group, members in site_groups(list(sites)).items():
            chosen = set(members)
            arch, placed = _with_op(sites, op, chosen.__contains__)
            if placed == 0:
                continue
            note = f"{op} at {placed} {group} site(s), add elsewhere"
            candidates.append((latency_ms(arch), Baseline(f"{op}@{group}", "variant", arch, note)))
        per_op.append(sorted(candidates, key=lambda item: item[0]))
    ordered = []
    for rank in range(max((len(c) for c in per_op), default=0)):
        ordered.extend(c[rank][1] for c in per_op if rank < len(c))
    return ordered


def default_variant_count(n_uniform: int, population_size: int) -> int:
    """Enough variants to fill NSGA-II's first generation with the baselines, at least 2."""
    return max(2, population_size - n_uniform)


def baseline_architectures(
    sites: Mapping[str, Sequence[str]],
    latency_ms: Callable[[Mapping[str, str]], float],
    n_variants: int,
) -> list[Baseline]:
    """The uniform baselines, then ``n_variants`` variants; no architecture twice."""
    from nasfuse.arch import arch_hash

    chosen: list[Baseline] = []
    seen: set[str] = set()
    variants = variant_baselines(sites, latency_ms) if n_variants > 0 else []
    for baseline in uniform_baselines(sites) + variants:
        key = arch_hash(baseline.arch)
        if key in seen:
            continue
        if baseline.kind == "variant" and sum(b.kind == "variant" for b in chosen) >= n_variants:
            break
        seen.add(key)
        chosen.append(baseline)
    return chosen
