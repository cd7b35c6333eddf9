"""nasfuse.validation: rank statistics, the picks over the latency range, and one small
end-to-end ``validate-supernet`` on the tiny ResNet space (slow)."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from scipy import stats

from nasfuse.arch import arch_hash
from nasfuse.spaces import load_space
from nasfuse.validation import (
    StandaloneJob,
    budget_key,
    default_top_k,
    mixed_random_arch,
    pick_archs_by_latency,
    ranking_stats,
    top_k_indices,
    top_k_precision,
)

FIXTURES = Path(__file__).parent / "fixtures"


# ------------------------------------------------------------------ rank statistics
def test_identical_ranking_gives_one_and_reversed_gives_minus_one() -> None:
    scores = [0.91, 0.42, 0.77, 0.63, 0.55]
    same = ranking_stats(scores, [s * 2 + 1 for s in scores])
    assert same.kendall_tau == pytest.approx(1.0)
    assert same.spearman_rho == pytest.approx(1.0)
    reversed_ = ranking_stats(scores, [-s for s in scores])
    assert reversed_.kendall_tau == pytest.approx(-1.0)
    assert reversed_.spearman_rho == pytest.approx(-1.0)
    assert reversed_.top_k_precision == 0.0


def test_one_swapped_pair_out_of_four_gives_tau_two_thirds() -> None:
    # 6 pairs, 1 discordant: tau = (5 - 1) / 6.
    result = ranking_stats([1, 2, 3, 4], [1, 2, 4, 3])
    assert result.kendall_tau == pytest.approx(4 / 6)
    # rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 60.
    assert result.spearman_rho == pytest.approx(0.8)


def test_top_k_precision_counts_the_overlap_of_the_two_top_sets() -> None:
    supernet = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]  # top 3: indices 0, 1, 2
    standalone = [0.95, 0.1, 0.9, 0.2, 0.85, 0.3]  # top 3: indices 0, 2, 4
    assert top_k_precision(supernet, standalone, 3) == pytest.approx(2 / 3)
    assert top_k_precision(supernet, standalone, 1) == 1.0
    assert top_k_precision(supernet, standalone, 6) == 1.0
    result = ranking_stats(supernet, standalone, k=3)
    assert result.top_k == 3 and result.top_k_precision == pytest.approx(2 / 3)


def test_top_k_ties_break_by_position_and_k_defaults_to_a_quarter() -> None:
    assert top_k_indices([0.5, 0.7, 0.7, 0.1], 2) == [1, 2]
    assert top_k_indices([0.5, 0.7, 0.7, 0.1], 1) == [1]
    assert [default_top_k(n) for n in (2, 4, 7, 8, 12)] == [1, 1, 1, 2, 3]
    assert ranking_stats(list(range(12)), list(range(12))).top_k == 3


def test_statistics_agree_with_scipy_on_random_scores_with_ties() -> None:
    rng = random.Random(3)
    first = [round(rng.random(), 1) for _ in range(15)]
    second = [round(rng.random(), 1) for _ in range(15)]
    result = ranking_stats(first, second)
    assert result.kendall_tau == pytest.approx(stats.kendalltau(first, second).statistic)
    assert result.spearman_rho == pytest.approx(stats.spearmanr(first, second).statistic)


def test_constant_scores_give_nan_and_json_safe_none() -> None:
    result = ranking_stats([0.5, 0.5, 0.5], [0.1, 0.2, 0.3])
    assert math.isnan(result.kendall_tau)
    assert result.to_dict()["kendall_tau"] is None
    json.dumps(result.to_dict(), allow_nan=False)


def test_bootstrap_intervals_bracket_the_estimate_and_repeat_by_seed() -> None:
    rng = random.Random(3)
    truth = [rng.random() for _ in range(20)]
    noisy = [t + rng.gauss(0, 0.15) for t in truth]
    result = ranking_stats(noisy, truth, bootstrap=400, seed=1)
    low, high = result.kendall_tau_ci
    assert low < result.kendall_tau < high and high - low > 0.05
    assert result.ci_level == 0.95
    assert ranking_stats(noisy, truth, bootstrap=400, seed=1).kendall_tau_ci == (low, high)
    assert ranking_stats(noisy, truth, bootstrap=400, seed=2).kendall_tau_ci != (low, high)
    # A perfect ranking stays perfect in every resample; without bootstrap, no interval.
    assert ranking_stats(truth, truth, bootstrap=50).kendall_tau_ci == pytest.approx((1.0, 1.0))
    assert ranking_stats(noisy, truth).kendall_tau_ci is None
    # A wider noise gives a wider interval.
    noisier = [t + rng.gauss(0, 0.6) for t in truth]
    wide = ranking_stats(noisier, truth, bootstrap=400, seed=1).kendall_tau_ci
    assert wide[1] - wide[0] > high - low


@pytest.mark.parametrize(
    ("first", "second", "k"),
    [([1.0], [1.0], None), ([1.0, 2.0], [1.0], None), ([1.0, 2.0], [2.0, 1.0], 3)],
)
def test_bad_inputs_are_refused(first: list[float], second: list[float], k: int | None) -> None:
    with pytest.raises(ValueError):
        ranking_stats(first, second, k)


# ------------------------------------------------------------------ picking
def _resnet20_with_fake_latency() -> tuple[object, dict[str, float]]:
    space = load_space("resnet20")
    # A made-up additive latency: each op has a cost, so all-add is the fastest arch.
    cost = {
        op: 1.0 + i * 0.5
        for i, op in enumerate(sorted({o for s in space.sites.values() for o in s.ops}))
    }
    cost["add"] = 0.1
    return space, cost


def test_picks_cover_the_latency_range_include_references_and_never_repeat() -> None:
    space, cost = _resnet20_with_fake_latency()

    def latency(arch: dict[str, str]) -> float:
        return sum(cost[op] for op in arch.values())

    picks = pick_archs_by_latency(space, 10, latency, include_ops=("add", "aff"), seed=1)
    assert [p.label for p in picks[:2]] == ["all-add", "all-aff"]
    assert picks[0].arch == space.uniform_arch("add")
    assert picks[1].arch == space.uniform_arch("aff")
    assert len(picks) == 12
    assert len({p.arch_hash for p in picks}) == 12
    assert all(p.arch_hash == arch_hash(p.arch) for p in picks)
    # The spread picks run from the pool's fastest to its slowest (references aside).
    pool_rng = random.Random(1)
    references = {arch_hash(space.uniform_arch(op)) for op in ("add", "aff")}
    pool_archs = [mixed_random_arch(space, pool_rng) for _ in range(200)]
    pool = [latency(a) for a in pool_archs if arch_hash(a) not in references]
    spread = [p.latency_ms for p in picks[2:]]
    assert spread == sorted(spread)
    assert spread[0] == pytest.approx(min(pool)) and spread[-1] == pytest.approx(max(pool))
    gaps = [b - a for a, b in zip(spread, spread[1:], strict=False)]
    assert max(gaps) < (max(pool) - min(pool)) / 3  # no big hole in the middle


def test_picks_are_reproducible_by_seed() -> None:
    space, cost = _resnet20_with_fake_latency()

    def latency(arch: dict[str, str]) -> float:
        return sum(cost[op] for op in arch.values())

    first = [p.arch_hash for p in pick_archs_by_latency(space, 5, latency, seed=4)]
    again = [p.arch_hash for p in pick_archs_by_latency(space, 5, latency, seed=4)]
    other = [p.arch_hash for p in pick_archs_by_latency(space, 5, latency, seed=5)]
    assert first == again and first != other


def test_an_op_not_allowed_everywhere_is_a_reference_with_add_elsewhere() -> None:
    space = load_space(FIXTURES / "tiny_hrnet.yaml")  # concat only where H*W <= 64
    picks = pick_archs_by_latency(space, 2, lambda arch: 1.0, include_ops=("add", "concat"))
    assert [p.label for p in picks[:2]] == ["all-add", "all-concat+add"]
    concat = picks[1].arch
    for name, site in space.sites.items():
        assert concat[name] == ("concat" if "concat" in site.ops else "add")
    assert "add" in concat.values() and "concat" in concat.values()
    # By default every op the space offers is a reference.
    default = pick_archs_by_latency(space, 0, lambda arch: 1.0)
    assert [p.label for p in default] == [
        f"all-{op}" if all(op in s.ops for s in space.sites.values()) else f"all-{op}+add"
        for op in space.config["ops"]
    ]
    with pytest.raises(ValueError, match="cannot include all-pmfs"):
        pick_archs_by_latency(space, 0, lambda arch: 1.0, include_ops=("pmfs",))


def test_a_pool_too_small_is_refused() -> None:
    space = load_space(FIXTURES / "tiny_resnet.yaml")  # 3 sites x 2 ops = 8 archs
    with pytest.raises(ValueError, match="distinct architectures"):
        pick_archs_by_latency(space, 7, lambda arch: 1.0, include_ops=("add", "concat"))


def test_budget_key_ignores_seed_and_threads_but_not_epochs() -> None:
    from nasfuse.training import RetrainConfig

    space = load_space(FIXTURES / "tiny_resnet.yaml")
    base = budget_key(space, RetrainConfig(epochs=3))
    assert budget_key(space, RetrainConfig(epochs=3, seed=7, threads=1)) == base
    assert budget_key(space, RetrainConfig(epochs=4)) != base
    arch = space.uniform_arch("add")
    assert StandaloneJob.of(arch, 1) == StandaloneJob.of(dict(arch), 1)
    assert StandaloneJob.of(arch, 1) != StandaloneJob.of(arch, 2)


def test_a_given_latency_table_places_the_picks_and_one_of_another_space_is_refused(
    tmp_path: Path,
) -> None:
    """Issue 17: ``--latency-table`` (experiments used to copy the file into the run)."""
    from types import SimpleNamespace

    from nasfuse.latency import BuildOptions, LatencyTable, LatencyTableError
    from nasfuse.validation._stages import LATENCY_TABLE_FILE, _latency_table

    space = load_space(FIXTURES / "tiny_resnet.yaml", {"input_size": 16})
    options = BuildOptions(
        batch_size=1, threads=1, runs=2, network_runs=2, warmup=1, progress=False
    )
    given, own = tmp_path / "given.json", tmp_path / "run" / LATENCY_TABLE_FILE
    LatencyTable.build(space, options).save(given)
    other = load_space(FIXTURES / "tiny_resnet.yaml", {"input_size": 8})
    LatencyTable.build(other, options).save(own)
    run = SimpleNamespace(
        space=space, dataset="digits", run_dir=own.parent, out_dir=tmp_path / "out"
    )
    table, path = _latency_table(run, str(given))
    assert path == given and table.key.space_hash == space.hash
    with pytest.raises(LatencyTableError, match="space_hash"):
        _latency_table(run, None)  # the run's own table is of another space
    with pytest.raises(FileNotFoundError):
        _latency_table(run, str(tmp_path / "missing.json"))  # not replaced by another


def _retrain_fields() -> list[str]:
    import dataclasses

    from nasfuse.training import RetrainConfig

    return [f.name for f in dataclasses.fields(RetrainConfig)]


@pytest.mark.parametrize("field_name", _retrain_fields())
def test_budget_key_shares_trainings_exactly_where_a_resume_would(
    field_name: str, one_field_changed: Callable[[object, str], object]
) -> None:
    """Issue 17: the stand-alone cache ignores the job's seed and the fields a resumed
    training may change (eval_every too), and no other."""
    from nasfuse.config import run_only_fields
    from nasfuse.training import RetrainConfig

    space = load_space(FIXTURES / "tiny_resnet.yaml")
    base = RetrainConfig(epochs=3)
    same = budget_key(space, one_field_changed(base, field_name)) == budget_key(space, base)
    # Which fields are run-only is pinned in test_files_config.
    assert same == (field_name in run_only_fields(RetrainConfig) | {"seed"})


# ------------------------------------------------------------------ end to end
def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


@pytest.mark.slow
def test_validate_supernet_end_to_end_on_the_tiny_space(tmp_path: Path) -> None:
    from nasfuse.cli import main
    from nasfuse.training import SupernetTrainConfig, train_supernet

    run = tmp_path / "run"
    train_supernet(
        SupernetTrainConfig(
            space=str(FIXTURES / "tiny_resnet.yaml"),
            epochs=3,
            train_subset=512,
            warmup_epochs=0,
            eval_archs=0,
            threads=1,
            progress=False,
        ),
        run,
    )
    argv = [
        "validate-supernet", "--run", str(run), "--archs", "3", "--epochs", "4",
        "--train-subset", "512", "--include", "add,concat", "--num-cpus", "2",
        "--calib-batches", "4", "--finetune-steps", "2", "--few-shot-epochs", "1",
        "warmup_epochs=0", "lr=0.1",
    ]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((run / "validation" / "validation.json").read_text())
    entries = report["archs"]
    assert len(entries) == 3 + 2
    assert {e["label"] for e in entries} >= {"all-add", "all-concat"}
    assert len({e["arch_hash"] for e in entries}) == 5
    assert report["seeds"] == [0, 1]
    assert report["scoring"]["method"] == "few-shot+finetune"
    assert report["scoring"]["finetune_steps"] == 2
    assert report["scoring"]["few_shot"]["ops"] == ["add", "concat"]
    assert report["scoring"]["few_shot"]["cost_ratio"] > 0
    assert (run / "few_shot" / "add" / "supernet.pt").is_file()
    assert report["scoring"]["ratio_to_supernet_training"] > 0
    for entry in entries:
        assert 0.0 <= entry["supernet_acc"] <= 1.0
        assert 0.0 <= entry["standalone_test_acc"] <= 1.0
        assert entry["arch_hash"] == arch_hash(entry["arch"])
        per_seed = []
        for seed in (0, 1):
            metrics_dir = (
                Path(report["standalone_budget"]["dir"])
                / report["standalone_budget"]["budget_key"]
                / f"{entry['arch_hash']}-s{seed}"
            )
            saved = json.loads((metrics_dir / "metrics.json").read_text())
            assert saved["epochs"] == 4
            per_seed.append(saved["test_acc"])
        # The ground truth is the mean over the two seeds' trainings.
        assert entry["standalone_test_acc_seeds"] == per_seed
        assert entry["standalone_test_acc"] == pytest.approx(sum(per_seed) / 2)
    seed0 = [e["standalone_test_acc_seeds"][0] for e in entries]
    seed1 = [e["standalone_test_acc_seeds"][1] for e in entries]
    ceiling = stats.kendalltau(seed0, seed1).statistic
    if math.isnan(ceiling):
        assert report["noise_ceiling"]["kendall_tau"] is None
    else:
        assert report["noise_ceiling"]["kendall_tau"] == pytest.approx(ceiling)
    latency = [e["latency_ms"] for e in entries]
    predictor = stats.kendalltau(latency, [e["standalone_test_acc"] for e in entries]).statistic
    if not math.isnan(predictor):
        assert report["predictors"]["latency"]["kendall_tau"] == pytest.approx(predictor)
    low, high = report["noise_ceiling"]["spearman_rho_ci"] or (None, None)
    if low is not None:
        assert -1.0 <= low <= high <= 1.0
    from nasfuse.validation import format_validation_table

    table = format_validation_table(report)
    ceiling_row = next(line for line in table.splitlines() if "noise ceiling" in line)
    assert _cell(report["noise_ceiling"]["kendall_tau"]) in ceiling_row
    supernet_acc = [e["supernet_acc"] for e in entries]
    standalone = [e["standalone_test_acc"] for e in entries]
    tau = report["ranking"]["kendall_tau"]
    expected = stats.kendalltau(supernet_acc, standalone).statistic
    if math.isnan(expected):
        assert tau is None
    else:
        assert -1.0 <= tau <= 1.0 and tau == pytest.approx(expected)
    assert report["ranking"]["count"] == 5 and report["ranking"]["top_k"] == 1
    assert report["ranking"]["top_k_precision"] == top_k_precision(supernet_acc, standalone, 1)
    assert list((run / "validation" / "tensorboard").glob("events.out.tfevents.*"))

    # A rerun trains nothing again: the trainings' files are left untouched.
    stamps = {
        p: p.stat().st_mtime_ns for p in (run / "validation" / "standalone").rglob("metrics.json")
    }
    assert main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_seed_halves_average_each_half_and_need_four_seeds() -> None:
    from nasfuse.validation._validate import seed_halves

    assert seed_halves([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]) is None
    accs = [[0.80, 0.82, 0.90, 0.70, 0.99], [0.60, 0.64, 0.66, 0.62, 0.0]]
    first, second = seed_halves(accs)  # the fifth seed is left out of both halves
    assert first == pytest.approx([0.81, 0.62])
    assert second == pytest.approx([0.80, 0.64])


def test_the_halves_ceiling_is_a_row_of_the_table_with_four_seeds() -> None:
    from nasfuse.validation import format_validation_table

    def row(tau: float) -> dict:
        return {"count": 4, "top_k": 1, "kendall_tau": tau, "kendall_p": 0.5,
                "spearman_rho": tau, "top_k_precision": 1.0, "ci_level": None}  # fmt: skip

    report = {
        "seeds": [0, 1, 2, 3],
        "archs": [],
        "ranking": row(0.1),
        "noise_ceiling": row(0.3),
        "noise_ceiling_halves": row(0.6),
        "latency": {"device": "cpu"},
    }
    table = format_validation_table(report)
    halves = [line for line in table.splitlines() if "seeds 0–1 vs 2–3" in line]
    assert len(halves) == 1 and "0.600" in halves[0]
    del report["noise_ceiling_halves"]
    assert "vs 2–3" not in format_validation_table(report)
