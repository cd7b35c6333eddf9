"""The baselines every search starts from, and the searcher that enqueues them (no Ray)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import optuna
import pytest
from ray.tune.search import Searcher

from nasfuse.arch import arch_hash
from nasfuse.search import Constraints, FusionSearcher, SyntheticCosts, front_records, make_sampler
from nasfuse.search._baselines import (
    baseline_architectures,
    default_variant_count,
    site_groups,
    uniform_baselines,
    variant_baselines,
)
from nasfuse.search._study import trial_records

OPS = ["add", "concat", "dwff"]
# Two stages, block and fuse sites; dwff is not allowed at the fuse sites of stage3.
SITES = {
    "stage2.branch0.block0": OPS,
    "stage2.fuse.branch0": OPS,
    "stage3.branch0.block0": OPS,
    "stage3.fuse.branch0": ["add", "concat"],
}


def test_uniform_baselines_start_with_add_and_fall_back_to_add_where_refused() -> None:
    baselines = uniform_baselines(SITES)
    assert [b.name for b in baselines] == ["all-add", "all-concat", "all-dwff"]
    assert all(b.kind == "uniform" for b in baselines)
    assert set(baselines[0].arch.values()) == {"add"} and baselines[0].note == ""
    dwff = baselines[2]
    assert dwff.arch["stage3.fuse.branch0"] == "add"
    assert [dwff.arch[s] for s in list(SITES)[:3]] == ["dwff"] * 3
    assert dwff.note == "dwff at the 3 of 4 sites that allow it, add at the other 1"


def test_site_groups_are_stages_and_kinds_but_never_every_site() -> None:
    groups = site_groups(list(SITES))
    assert groups == {
        "stage2": ["stage2.branch0.block0", "stage2.fuse.branch0"],
        "stage3": ["stage3.branch0.block0", "stage3.fuse.branch0"],
        "block": ["stage2.branch0.block0", "stage3.branch0.block0"],
        "fuse": ["stage2.fuse.branch0", "stage3.fuse.branch0"],
    }
    # A ResNet's sites are all blocks: that kind is the whole network, so no kind group.
    assert site_groups(["layer1.0", "layer1.1", "layer2.0"]) == {
        "layer1": ["layer1.0", "layer1.1"],
        "layer2": ["layer2.0"],
    }


def test_variants_take_each_ops_cheapest_group_before_a_second_group() -> None:
    costs = SyntheticCosts(OPS)  # concat 1 ms per site, dwff 2 ms
    variants = variant_baselines(SITES, costs.latency_ms)
    names = [v.name for v in variants]
    # dwff@stage3 places dwff at one site only (stage3's fuse refuses it): one of dwff's
    # two cheapest (with dwff@fuse); ties keep the group order.
    assert names[:4] == ["concat@stage2", "dwff@stage3", "concat@stage3", "dwff@fuse"]
    assert len(names) == len(set(names)) == 2 * 4
    for variant in variants:
        op, group = variant.name.split("@")
        members = set(site_groups(list(SITES))[group])
        assert all(
            variant.arch[s] == (op if s in members and op in SITES[s] else "add") for s in SITES
        )
    # Within one op, cheaper groups first.
    dwff = [costs.latency_ms(v.arch) for v in variants if v.name.startswith("dwff")]
    assert dwff == sorted(dwff)


def test_baseline_architectures_count_and_never_repeat_an_architecture() -> None:
    costs = SyntheticCosts(OPS)
    baselines = baseline_architectures(SITES, costs.latency_ms, n_variants=3)
    assert [b.kind for b in baselines] == ["uniform"] * 3 + ["variant"] * 3
    assert len({arch_hash(b.arch) for b in baselines}) == len(baselines)
    # A single-site space: every group would be the whole network, so no variants.
    assert [b.name for b in baseline_architectures({"a.x": OPS}, costs.latency_ms, 5)] == [
        "all-add",
        "all-concat",
        "all-dwff",
    ]
    assert default_variant_count(7, 10) == 3
    assert default_variant_count(8, 4) == 2


def _searcher(
    n_trials: int,
    storage: optuna.storages.BaseStorage,
    constraints: Constraints | None = None,
    n_variants: int = 2,
    sampler_name: str = "nsga2",
) -> FusionSearcher:
    costs = SyntheticCosts(OPS)
    return FusionSearcher(
        sites=SITES,
        costs=costs,
        n_trials=n_trials,
        sampler=make_sampler(sampler_name, seed=0, population_size=6),
        study_name="baselines",
        storage=storage,
        constraints=constraints,
        baselines=baseline_architectures(SITES, costs.latency_ms, n_variants),
    )


def _drive(
    searcher: FusionSearcher, accuracy: Callable[[Mapping[str, str]], float]
) -> list[dict[str, Any]]:
    """Run the searcher as Ray Tune would, one trial at a time; return the evaluated configs."""
    configs = []
    for step in range(200):
        config = searcher.suggest(f"t{step}")
        if config == Searcher.FINISHED:
            return configs
        assert isinstance(config, dict)
        configs.append(config)
        result = {
            "status": "evaluated",
            "accuracy": accuracy(config["arch"]),
            "latency_ms": config["predicted_latency_ms"],
        }
        searcher.on_trial_complete(f"t{step}", result)
    raise AssertionError("the searcher never finished")


def _quality(arch: Mapping[str, str]) -> float:
    # Fusion helps a little: dwff > concat > add, as the synthetic evaluator has it.
    return 0.8 + 0.01 * sum(OPS.index(op) for op in arch.values())


def test_searcher_evaluates_the_baselines_first_and_all_add_lands_on_the_front() -> None:
    storage = optuna.storages.InMemoryStorage()
    # all-concat (5 ms) breaks the bound: recorded infeasible, never evaluated.
    searcher = _searcher(12, storage, Constraints(max_latency_ms=4.5))
    expected = baseline_architectures(SITES, SyntheticCosts(OPS).latency_ms, 2)
    assert [b.name for b in searcher.enqueued_baselines] == [b.name for b in expected]
    configs = _drive(searcher, _quality)
    trials = searcher.study.get_trials()
    assert len(trials) == 12 == searcher.counted_trials
    # The first trials are the baselines, in order, with their tags.
    for trial, baseline in zip(trials, expected, strict=False):
        assert trial.params == baseline.arch
        assert trial.user_attrs["baseline"] == baseline.name
        assert trial.user_attrs["baseline_kind"] == baseline.kind
    # They are NSGA-II's first generation (population 6: the 5 baselines and one sampled).
    generation = "NSGAIISampler:generation"
    assert [t.system_attrs.get(generation) for t in trials] == [0] * 6 + [1] * 6
    by_name = {t.user_attrs.get("baseline"): t for t in trials}
    assert by_name["all-concat"].user_attrs["status"] == "infeasible"
    assert arch_hash(by_name["all-concat"].params) not in {c["arch_hash"] for c in configs}
    assert configs[0]["arch"] == expected[0].arch  # all-add is the first evaluation
    assert by_name["all-add"].user_attrs["status"] == "evaluated"
    front = front_records(trial_records(searcher.study))
    assert front[0].baseline == "all-add"  # the fastest architecture is on the front
    assert by_name["all-add"].values[1] == min(t.values[1] for t in trials if t.values)


def test_baselines_count_toward_the_trial_budget_and_are_not_left_waiting() -> None:
    storage = optuna.storages.InMemoryStorage()
    searcher = _searcher(2, storage)
    assert [b.name for b in searcher.enqueued_baselines] == ["all-add", "all-concat"]
    configs = _drive(searcher, _quality)
    assert [c["arch"] for c in configs] == [b.arch for b in searcher.enqueued_baselines]
    states = {t.state for t in searcher.study.get_trials()}
    assert states == {optuna.trial.TrialState.COMPLETE}
    # Resuming with a larger budget enqueues only what the study does not hold yet.
    resumed = _searcher(7, storage)
    assert [b.name for b in resumed.enqueued_baselines] == [
        "all-dwff",
        "concat@stage2",
        "dwff@stage3",
    ]
    _drive(resumed, _quality)
    names = [t.user_attrs.get("baseline") for t in resumed.study.get_trials()]
    assert names[:5] == ["all-add", "all-concat", "all-dwff", "concat@stage2", "dwff@stage3"]
    assert len(names) == 7


def test_a_baseline_already_evaluated_is_cached_not_evaluated_again() -> None:
    storage = optuna.storages.InMemoryStorage()
    first = _searcher(1, storage, n_variants=0)
    _drive(first, _quality)
    # all-add is in the study; a new searcher's copy of it is not enqueued again.
    second = _searcher(4, storage, n_variants=0)
    assert "all-add" not in [b.name for b in second.enqueued_baselines]
    configs = _drive(second, _quality)
    assert all(set(c["arch"].values()) != {"add"} for c in configs)


def test_the_study_names_its_objectives() -> None:
    searcher = _searcher(3, optuna.storages.InMemoryStorage())
    _drive(searcher, _quality)
    assert searcher.study.metric_names == ["accuracy", "latency_ms"]
    frame = searcher.study.trials_dataframe()
    assert {"values_accuracy", "values_latency_ms", "user_attrs_baseline"} <= set(frame.columns)
    assert list(frame["user_attrs_baseline"]) == ["all-add", "all-concat", "all-dwff"]


@pytest.mark.parametrize("sampler_name", ["tpe", "random"])
def test_other_samplers_start_from_the_baselines_too(sampler_name: str) -> None:
    searcher = _searcher(
        5, optuna.storages.InMemoryStorage(), n_variants=1, sampler_name=sampler_name
    )
    _drive(searcher, _quality)
    names = [t.user_attrs.get("baseline") for t in searcher.study.get_trials()]
    assert names[:4] == ["all-add", "all-concat", "all-dwff", "concat@stage2"]
