"""Fast tests of the search: Pareto front, hypervolume, knee, picks, costs, config, TensorBoard.

The Ray Tune searches themselves are in tests/test_search_e2e.py (marked slow).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from nasfuse.search import (
    BUDGETS,
    Constraints,
    SearchConfig,
    SyntheticCosts,
    dominates,
    draw_scatter,
    hypervolume,
    knee_index,
    pareto_front,
    parse_pick,
    pick_index,
    reference_latency,
    resolve_plan,
)

# (accuracy, latency_ms)
POINTS = [(0.90, 5.0), (0.80, 2.0), (0.85, 6.0), (0.95, 9.0), (0.80, 3.0)]


def test_dominates_needs_one_strict_improvement() -> None:
    assert dominates((0.9, 1.0), (0.9, 2.0))
    assert dominates((0.95, 2.0), (0.9, 2.0))
    assert not dominates((0.9, 2.0), (0.9, 2.0))
    assert not dominates((0.95, 3.0), (0.9, 2.0))


def test_pareto_front_drops_dominated_points_and_sorts_by_latency() -> None:
    # (0.85, 6) is beaten by (0.90, 5); (0.80, 3) by (0.80, 2) at equal accuracy.
    assert pareto_front(POINTS) == [1, 0, 3]


def test_pareto_front_keeps_identical_points() -> None:
    assert pareto_front([(0.5, 1.0), (0.5, 1.0), (0.4, 1.0)]) == [0, 1]


def test_pareto_front_refuses_nan() -> None:
    with pytest.raises(ValueError, match="not finite"):
        pareto_front([(math.nan, 1.0)])


def test_hypervolume_by_hand() -> None:
    # Boxes from the reference (acc 0, 10 ms): 0.8*(10-2) + (0.9-0.8)*(10-5) + (0.95-0.9)*(10-9)
    # = 6.4 + 0.5 + 0.05 = 6.95, normalised by 10 ms.
    assert hypervolume(POINTS, 10.0) == pytest.approx(0.695)
    # Dominated points add nothing.
    assert hypervolume([POINTS[i] for i in (1, 0, 3)], 10.0) == pytest.approx(0.695)


def test_hypervolume_ignores_points_past_the_reference() -> None:
    assert hypervolume([(0.5, 5.0)], 10.0) == pytest.approx(0.25)
    assert hypervolume([(0.5, 5.0), (0.99, 10.0), (0.99, 12.0)], 10.0) == pytest.approx(0.25)
    assert hypervolume([], 10.0) == 0.0
    with pytest.raises(ValueError):
        hypervolume([(0.5, 1.0)], 0.0)


def test_knee_is_farthest_above_the_line_between_extremes() -> None:
    # Normalised: (0,0), (0.889, 0.111), (1, 1); gains 0, 0.778, 0 -> the middle point.
    points = [(0.50, 1.0), (0.90, 2.0), (0.95, 10.0)]
    assert knee_index(points) == 1
    # Max accuracy per ms would pick the fastest point; the knee does not.
    assert max(range(3), key=lambda i: points[i][0] / points[i][1]) == 0


def test_knee_uses_the_front_only() -> None:
    # A dominated point with a large naive "gain" must not be picked.
    points = [(0.50, 1.0), (0.90, 2.0), (0.95, 10.0), (0.89, 2.5)]
    assert knee_index(points) == 1


def test_knee_ties_and_degenerate_fronts() -> None:
    assert knee_index([(0.7, 3.0)]) == 0
    # Two points: both on the line; the tie goes to the higher accuracy.
    assert knee_index([(0.6, 1.0), (0.8, 4.0)]) == 1
    # Same accuracy everywhere: only the fastest is on the front.
    assert knee_index([(0.8, 4.0), (0.8, 1.0)]) == 1
    with pytest.raises(ValueError):
        knee_index([])


def test_picks() -> None:
    points = [(0.50, 1.0), (0.90, 2.0), (0.95, 10.0), (0.95, 12.0)]
    assert pick_index(points, "max-acc") == 2  # tie on accuracy -> lower latency
    assert pick_index(points, "max-latency=5") == 1
    assert pick_index(points, "max-latency=10") == 2
    assert pick_index(points, "knee") == 1
    with pytest.raises(ValueError, match="fastest evaluated one takes 1.000 ms"):
        pick_index(points, "max-latency=0.5")


def test_the_within_noise_pick_is_the_fastest_point_the_validation_cannot_tell_from_the_best():
    from nasfuse.search._pareto import accuracy_noise

    points = [(0.80, 1.0), (0.83, 2.0), (0.845, 5.0), (0.85, 9.0)]
    # Two binomial standard errors of 0.85 - 0.83 on 1,000 images: 2 * sqrt((.1275 + .1411) / 1000).
    assert accuracy_noise(0.85, 0.83, 1000) == pytest.approx(0.03278, abs=1e-5)
    assert accuracy_noise(1.0, 1.0, 200) == pytest.approx(1 / 200)  # never below one image
    assert pick_index(points, "within-noise", samples=1000) == 1  # 0.80 is 0.05 below: beyond
    assert pick_index(points, "within-noise", samples=100) == 0  # on 100 images 0.05 is noise
    assert pick_index(points, "within-noise", samples=100_000) == 3  # only the best itself
    assert pick_index([(0.9, 3.0), (0.9, 3.0), (0.91, 3.0)], "within-noise", samples=100) == 2
    with pytest.raises(ValueError, match="number of validation images"):
        pick_index(points, "within-noise")
    assert parse_pick("within-noise") == ("within-noise", None)


@pytest.mark.parametrize("bad", ["", "best", "max-latency", "max-latency=-1", "max-latency=x"])
def test_parse_pick_refuses_bad_rules(bad: str) -> None:
    with pytest.raises(ValueError, match="pick rule"):
        parse_pick(bad)


def test_parse_pick_reads_the_bound() -> None:
    assert parse_pick("max-latency=2.5") == ("max-latency", 2.5)
    assert parse_pick(" knee ") == ("knee", None)


def test_constraints_are_relative_violations() -> None:
    constraints = Constraints(max_latency_ms=4.0, max_params=1000)
    assert constraints.violations(5.0, 500) == {"latency_ms": 0.25, "params": -0.5}
    assert Constraints().violations(5.0, 500) == {}
    assert not Constraints().active


def test_reference_latency_finds_the_slowest_architecture() -> None:
    costs = SyntheticCosts(["add", "concat", "aff"])
    sites = {"a": ["add", "concat"], "b": ["add", "aff", "concat"], "c": ["add"]}
    # Slowest: a=concat (1) + b=aff (2) + c=add (0) + base 1 ms.
    assert reference_latency(sites, costs) == 4.0


def test_budgets_resolve_with_explicit_values_winning() -> None:
    plan = resolve_plan(SearchConfig(budget="quick"))
    assert plan.trials == BUDGETS["quick"]["trials"]
    assert plan.width_mult == BUDGETS["quick"]["width_mult"]
    plan = resolve_plan(SearchConfig(budget="quick", trials=7, space_options={"width_mult": 0.5}))
    assert (plan.trials, plan.width_mult) == (7, 0.5)
    assert "7 trials" in plan.describe()
    with pytest.raises(ValueError, match="unknown budget"):
        resolve_plan(SearchConfig(budget="huge"))  # type: ignore[arg-type]


def test_the_quick_budget_trains_its_supernet_at_batch_128_scoring_it_every_10_epochs() -> None:
    from nasfuse.search._artifacts import supernet_train_config
    from nasfuse.training import SupernetTrainConfig

    def trained_with(cfg: SearchConfig) -> tuple[int, float, int]:
        train_cfg = supernet_train_config(cfg, resolve_plan(cfg), {})
        return train_cfg.batch_size, train_cfg.lr, train_cfg.eval_every

    assert trained_with(SearchConfig(budget="quick")) == (128, 0.1, 10)
    plan_line = resolve_plan(SearchConfig(budget="quick")).describe()
    assert "batch_size 128, lr 0.1, eval_every 10" in plan_line
    # A key the user's supernet_options set is theirs, and the plan no longer claims it.
    mine = SearchConfig(budget="quick", supernet_options={"lr": 0.02, "eval_every": 1})
    assert trained_with(mine) == (128, 0.02, 1)
    assert "lr 0.1" not in resolve_plan(mine).describe()
    assert "eval_every" not in resolve_plan(mine).describe()
    # The other budgets train at the config's batch size and the training defaults.
    default = SearchConfig(budget="default", batch_size=48)
    assert trained_with(default)[0] == 48
    assert trained_with(default)[2] == SupernetTrainConfig().eval_every
    assert resolve_plan(default).supernet_options == {}


def test_budgets_grow_from_quick_to_full() -> None:
    for key in ("supernet_epochs", "trials", "width_mult"):
        assert BUDGETS["quick"][key] <= BUDGETS["default"][key] <= BUDGETS["full"][key]


def _pixels(image, rgb_test) -> int:  # noqa: ANN001 - numpy image, predicate
    return int(rgb_test(image[..., 0], image[..., 1], image[..., 2]).sum())


def _red(r, g, b):  # noqa: ANN001, ANN202
    return (r > 200) & (g < 80) & (b < 80)


def _green(r, g, b):  # noqa: ANN001, ANN202
    return (r < 60) & (g > 130) & (b < 80)


def test_scatter_marks_the_front_the_uniform_networks_and_the_pick() -> None:
    image = draw_scatter(POINTS, pareto_front(POINTS), infeasible=[(0.0, 7.0)])
    assert image.shape == (640, 960, 3)  # at least 800x600, as TensorBoard shows it
    assert _pixels(image, _red) > 3 * 40  # three filled front markers at least
    assert _pixels(image, _green) == 0
    picked = draw_scatter(
        POINTS, pareto_front(POINTS), baselines=[("all-add", 0.80, 2.0)], pick=POINTS[0]
    )
    assert _pixels(picked, _green) > 100  # the pick's star, and its legend entry
    # The label "all-add" and the square are black ink that the unlabelled chart lacks.
    plain = draw_scatter(POINTS, pareto_front(POINTS))
    black = lambda r, g, b: (r < 40) & (g < 40) & (b < 40)  # noqa: E731
    assert _pixels(picked, black) > _pixels(plain, black) + 50
    empty = draw_scatter([], [])
    assert _pixels(empty, _red) == 0


def test_chart_ticks_are_round_values() -> None:
    from nasfuse.plots import nice_ticks

    assert nice_ticks(26.3, 39.8) == [28.0, 30.0, 32.0, 34.0, 36.0, 38.0]
    assert nice_ticks(0.9012, 0.9687) == pytest.approx([0.91, 0.92, 0.93, 0.94, 0.95, 0.96])
    assert nice_ticks(1.0, 1.0) == [1.0]


def test_supernet_param_table_matches_extracted_networks(fixtures_dir: str) -> None:
    import random

    from nasfuse.profile import count_params
    from nasfuse.search._supernet_eval import site_param_table
    from nasfuse.spaces import load_space
    from nasfuse.supernet import Supernet

    space = load_space(f"{fixtures_dir}/tiny_hrnet.yaml")
    supernet = Supernet(space, num_classes=10, in_chans=1)
    shared, table = site_param_table(supernet)
    assert set(table) == set(space.sites)
    rng = random.Random(0)
    for _ in range(3):
        arch = supernet.sample_arch(rng)
        expected = count_params(supernet.extract(arch))
        assert shared + sum(table[s][op] for s, op in arch.items()) == expected


@pytest.mark.parametrize("space_file", ["tiny_hrnet.yaml", "tiny_resnet.yaml"])
def test_supernet_flop_table_matches_counting_the_networks(
    fixtures_dir: str, space_file: str
) -> None:
    import random

    import torch

    from nasfuse.profile import count_flops
    from nasfuse.search._supernet_eval import site_flop_table
    from nasfuse.spaces import load_space
    from nasfuse.supernet import Supernet

    space = load_space(f"{fixtures_dir}/{space_file}")
    supernet = Supernet(space, num_classes=10, in_chans=1)
    image = torch.zeros(1, 1, space.input_size, space.input_size)
    rng = random.Random(0)
    supernet.set_arch(supernet.sample_arch(rng))
    before = dict(supernet.arch)
    shared, table = site_flop_table(supernet, image)
    assert supernet.arch == before
    assert set(table) == set(space.sites)
    # Ops differ in cost, so a wrong table could not match every architecture by chance.
    assert len({flops for ops in table.values() for flops in ops.values()}) > 1
    for _ in range(4):
        arch = supernet.sample_arch(rng)
        supernet.set_arch(arch)
        expected = count_flops(supernet, image)
        assert expected == count_flops(supernet.extract(arch), image)
        assert shared + sum(table[s][op] for s, op in arch.items()) == expected


def test_storage_urls_and_journal_files(tmp_path: Path) -> None:
    import optuna

    from nasfuse.search._study import open_storage, storage_url

    assert storage_url(tmp_path, None) == f"sqlite:///{(tmp_path / 'study.db').resolve()}"
    assert storage_url(tmp_path, "postgresql://db/x") == "postgresql://db/x"
    journal = open_storage(str(tmp_path / "study.log"))
    assert isinstance(journal, optuna.storages.JournalStorage)
    study = optuna.create_study(
        storage=journal, study_name="s", directions=["maximize", "minimize"]
    )
    study.tell(study.ask(), [0.5, 1.0])
    reopened = optuna.load_study(study_name="s", storage=open_storage(str(tmp_path / "study.log")))
    assert reopened.best_trials[0].values == [0.5, 1.0]


def test_a_sqlite_study_created_by_another_process_meanwhile_is_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI: a process reading a starting run created a table between the driver's check for
    it and its CREATE; the driver failed with "table ... already exists" instead of opening
    the schema the other process had made. Any other database error is the user's."""
    import optuna
    from sqlalchemy.exc import OperationalError

    from nasfuse.search import _study

    real = optuna.storages.RDBStorage
    calls: list[str] = []

    def racing(url: str, **kwargs: Any) -> optuna.storages.RDBStorage:
        calls.append(url)
        if len(calls) == 1:
            real(url, **kwargs)  # the other process creates the schema meanwhile
            raise OperationalError(
                "CREATE TABLE studies", {}, Exception("table studies already exists")
            )
        return real(url, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    monkeypatch.setattr("time.sleep", lambda _seconds: None)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = _study.open_storage(url)
    assert len(calls) == 2 and isinstance(storage, real)
    assert storage.get_all_studies() == []

    def locked(url: str, **kwargs: Any) -> optuna.storages.RDBStorage:
        calls.append(url)
        raise OperationalError("SELECT", {}, Exception("unable to open database file"))

    monkeypatch.setattr(optuna.storages, "RDBStorage", locked)
    calls.clear()
    with pytest.raises(OperationalError, match="unable to open"):
        _study.open_storage(url)
    assert len(calls) == 1


def test_export_refuses_a_directory_without_a_study(tmp_path: Path) -> None:
    from nasfuse.search import export_run

    with pytest.raises(FileNotFoundError, match="no Optuna study"):
        export_run(tmp_path)
    with pytest.raises(ValueError, match="pick rule"):
        export_run(tmp_path, pick="fastest")


@pytest.mark.parametrize("sampler_name", ["nsga2", "tpe", "random"])
def test_searcher_budget_dedup_and_constraints_without_ray(sampler_name: str) -> None:
    """Drive FusionSearcher by hand: every suggestion is new and feasible, the budget holds."""
    import optuna
    from ray.tune.search import Searcher

    from nasfuse.arch import arch_hash
    from nasfuse.search import FusionSearcher, make_sampler

    sites = {"a": ["add", "concat"], "b": ["add", "concat"], "c": ["add", "concat"]}
    costs = SyntheticCosts(["add", "concat"])  # latency 1 ms + 1 per concat
    told: list[optuna.trial.FrozenTrial] = []
    searcher = FusionSearcher(
        sites=sites,
        costs=costs,
        n_trials=12,
        sampler=make_sampler(sampler_name, seed=0, population_size=4),
        study_name="unit",
        storage=optuna.storages.InMemoryStorage(),
        constraints=Constraints(max_latency_ms=3.0),  # 3 concats (4 ms) is infeasible
        listeners=[told.append],
    )
    evaluated: list[str] = []
    for step in range(100):
        config = searcher.suggest(f"trial{step}")
        if config == Searcher.FINISHED:
            break
        assert isinstance(config, dict)
        assert config["predicted_latency_ms"] <= 3.0
        evaluated.append(config["arch_hash"])
        assert config["arch_hash"] == arch_hash(config["arch"])
        result = {
            "status": "evaluated",
            "accuracy": 0.5,
            "latency_ms": config["predicted_latency_ms"],
        }
        if step == 1:
            result = {
                "status": "failed",
                "accuracy": float("nan"),
                "latency_ms": 1.0,
                "error": "boom",
            }
        searcher.on_trial_complete(f"trial{step}", result)
    assert searcher.counted_trials == 12 == len(told)
    assert len(evaluated) == len(set(evaluated))
    statuses = Counter(t.user_attrs["status"] for t in searcher.study.get_trials())
    assert sum(statuses.values()) == 12
    failures = [t for t in searcher.study.get_trials() if t.user_attrs["status"] == "failed"]
    # One evaluation failed; a repeat of that architecture fails again without evaluation.
    assert [t.user_attrs.get("duplicate_of") for t in failures][0] is None
    assert all(t.user_attrs["duplicate_of"] == failures[0].number for t in failures[1:])
    assert all(t.params == failures[0].params and t.user_attrs["error"] == "boom" for t in failures)
    assert statuses["evaluated"] == len(evaluated) - 1
    for trial in searcher.study.get_trials():
        if trial.user_attrs["status"] == "infeasible":
            assert trial.params == {"a": "concat", "b": "concat", "c": "concat"}
            assert trial.constraints["latency_ms"] > 0
    assert all(t.user_attrs["status"] != "infeasible" for t in searcher.study.best_trials)


def _small_searcher(n_trials: int, **kwargs: Any) -> Any:
    import optuna

    from nasfuse.search import FusionSearcher, make_sampler

    ops = ["add", "concat"]
    return FusionSearcher(
        sites={site: list(ops) for site in "abcd"},
        costs=SyntheticCosts(ops),
        n_trials=n_trials,
        sampler=make_sampler("random", seed=0, population_size=4),
        study_name="unit",
        storage=optuna.storages.InMemoryStorage(),
        **kwargs,
    )


def _evaluated(config: dict[str, Any]) -> dict[str, Any]:
    return {"status": "evaluated", "accuracy": 0.5, "latency_ms": config["predicted_latency_ms"]}


def test_the_searcher_runs_under_the_concurrency_limiter_tune_wraps_it_in() -> None:
    """Issue 17: a plain Ray Tune Searcher of ours; Tune's max_concurrent_trials wraps it."""
    from ray.tune.search import ConcurrencyLimiter, Searcher

    searcher = _small_searcher(6)
    told: list[Any] = []
    searcher.add_listener(told.append)
    limited = ConcurrencyLimiter(searcher, max_concurrent=2)
    assert limited.metric == ["accuracy", "latency_ms"] and limited.mode == ["max", "min"]
    assert [d.name for d in searcher.study.directions] == ["MAXIMIZE", "MINIMIZE"]
    # Tune offers its (empty) param_space; the sites are the space, so it is declined.
    assert limited.set_search_properties(None, None, {}) is False
    first, second = limited.suggest("t0"), limited.suggest("t1")
    assert isinstance(first, dict) and isinstance(second, dict)
    assert limited.suggest("t2") is None  # two in flight: the limiter holds the third back
    assert [t.state.name for t in searcher.study.get_trials()] == ["RUNNING", "RUNNING"]
    open_configs = {"t0": first, "t1": second}
    for step in range(2, 50):
        trial_id = next(iter(open_configs))
        limited.on_trial_complete(trial_id, _evaluated(open_configs.pop(trial_id)))
        config = limited.suggest(f"t{step}")
        if config == Searcher.FINISHED:
            break
        if config is not None:
            open_configs[f"t{step}"] = config
    while open_configs:
        trial_id = next(iter(open_configs))
        limited.on_trial_complete(trial_id, _evaluated(open_configs.pop(trial_id)))
    assert limited.suggest("last") == Searcher.FINISHED
    assert searcher.counted_trials == 6 == len(told)
    assert {t.state.name for t in searcher.study.get_trials()} == {"COMPLETE"}
    searcher.close()


def test_the_searcher_pickles_and_saves_a_pointer_to_its_study(tmp_path: Path) -> None:
    """Tune pickles its search algorithm (tuner.pkl) and saves it in checkpoints; the study,
    the lease's thread and the listeners stay out: resuming reopens the study."""
    import json
    import pickle
    import threading

    lock = threading.Lock()  # a listener holding what pickle refuses, as a progress bar does
    searcher = _small_searcher(2, listeners=[lambda trial: lock])
    config = searcher.suggest("t0")
    searcher.on_trial_complete("t0", _evaluated(config))
    pointer = pickle.loads(pickle.dumps(searcher))
    assert pointer.study_name == "unit"
    path = tmp_path / "searcher-state.json"
    assert searcher.counted_trials == 1  # (the pointer counts the study as last read)
    searcher.save(str(path))
    saved = json.loads(path.read_text())
    assert saved["study_name"] == "unit" and saved["counted_trials"] == 1
    before = len(searcher.study.get_trials())
    searcher.restore(str(path))  # nothing to restore: the study is the state
    assert len(searcher.study.get_trials()) == before
    searcher.close()


def test_a_trial_whose_drawing_failed_is_drawn_again_or_told_interrupted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A storage error while the sites are drawn leaves an asked trial: the next suggest
    for that Ray trial draws the same Optuna trial again, and an interrupted search tells it
    interrupted, so no trial stays RUNNING."""
    import optuna

    from nasfuse.search._study import trial_status

    draw = optuna.trial.Trial.suggest_categorical
    calls = {"n": 0}

    def flaky(self: Any, name: str, choices: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("storage went away")
        return draw(self, name, choices)

    monkeypatch.setattr(optuna.trial.Trial, "suggest_categorical", flaky)
    retried = _small_searcher(3)
    with pytest.raises(RuntimeError, match="storage went away"):
        retried.suggest("t0")
    config = retried.suggest("t0")
    assert config["optuna_trial"] == 0 and len(retried.study.get_trials()) == 1
    retried.close()

    calls["n"] = 0
    interrupted = _small_searcher(3)
    with pytest.raises(RuntimeError, match="storage went away"):
        interrupted.suggest("t0")
    interrupted.interrupt_open_trials()
    (trial,) = interrupted.study.get_trials()
    assert trial.state == optuna.trial.TrialState.FAIL and trial_status(trial) == "interrupted"
    interrupted.close()


def test_the_search_uses_no_private_ray_or_optuna_attribute() -> None:
    """Issue 17, in addition to the behaviour above: what a reader should not find in any
    module of the search, the searcher's parts included. The one exception, Ray's cluster
    switch for a loopback-only local Ray, lives in _ray.py and says why."""
    import nasfuse.search as package
    from nasfuse.search import FusionSearcher

    sources = {p.name: p.read_text() for p in Path(package.__file__).parent.glob("*.py")}
    assert {"_searcher.py", "_shared_study.py", "_sampling.py", "_ray.py"} <= set(sources)
    for name, source in sources.items():
        for private in ("_ot_study", "_ot_trials", "_completed_trials", "_trial_id"):
            assert private not in source, (name, private)
        if name != "_ray.py":
            assert "ray._private" not in source, name
    assert sources["_ray.py"].count("ray._private") == 1
    assert "OptunaSearch" not in [cls.__name__ for cls in FusionSearcher.__mro__]


def test_loopback_only_switches_rays_cluster_flag_for_its_block_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    from ray._private import ray_constants

    from nasfuse.search._ray import RAY_CLUSTERS_ENV, _loopback_only

    assert RAY_CLUSTERS_ENV == ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR  # spelt as Ray does
    monkeypatch.delenv(RAY_CLUSTERS_ENV, raising=False)
    before = ray_constants.ENABLE_RAY_CLUSTER
    with _loopback_only():
        assert ray_constants.ENABLE_RAY_CLUSTER is False and os.environ[RAY_CLUSTERS_ENV] == "0"
    assert ray_constants.ENABLE_RAY_CLUSTER is before and RAY_CLUSTERS_ENV not in os.environ
    # A Ray release without the flag: the variable still reaches Ray's processes.
    monkeypatch.delattr(ray_constants, "ENABLE_RAY_CLUSTER")
    with _loopback_only():
        assert os.environ[RAY_CLUSTERS_ENV] == "0"
    assert "no cluster switch" in capsys.readouterr().out
    assert not hasattr(ray_constants, "ENABLE_RAY_CLUSTER")


def test_quick_budget_shallows_hrnet_spaces_only_and_user_depth_wins():
    from nasfuse.search._config import resolve_plan
    from nasfuse.search._driver import search_space_options
    from nasfuse.spaces import budget_space_options, load_space

    full = load_space("hrnet_lite")
    depth = {f"stages.{i}.modules": 1 for i in range(3)}
    assert budget_space_options(full, "quick") == depth == budget_space_options(full, "default")
    assert budget_space_options(full, "full") == {}
    shallow = load_space("hrnet_lite", depth)
    assert len(shallow.sites) < len(full.sites) and shallow.hash != full.hash
    assert budget_space_options(load_space("resnet20"), "quick") == {}
    deeper = load_space("hrnet_lite", {"stages.1.modules": 3})
    assert "stages.1.modules" not in budget_space_options(deeper, "quick")
    # The search loads the space with the budget's width and depth under the user's options.
    cfg = SearchConfig(budget="quick", space_options={"stages.1.modules": 3})
    options = search_space_options(cfg, resolve_plan(cfg))
    assert options["stages.1.modules"] == 3 and options["stages.0.modules"] == 1
    assert options["width_mult"] == BUDGETS["quick"]["width_mult"]
    assert "stages.0.modules" not in search_space_options(
        SearchConfig(space="resnet20", budget="quick"), resolve_plan(SearchConfig(budget="quick"))
    )


@pytest.mark.parametrize(
    ("space", "budget", "modules", "depth_options"),
    [
        ("hrnet_lite", "quick", 1, {}),  # what the budget sets now: dropped
        ("hrnet_lite", "default", 1, {}),
        ("hrnet_lite", "full", None, {}),
        ("resnet20", "quick", 1, {}),  # ignored on other families, then as now
        ("hrnet_lite", "quick", 2, {f"stages.{i}.modules": 2 for i in range(3)}),
        ("hrnet_lite", "full", 1, {f"stages.{i}.modules": 1 for i in range(3)}),
    ],
)
def test_a_config_of_an_older_run_with_hrnet_modules_resumes_as_the_same_search(
    space: str, budget: str, modules: int | None, depth_options: dict
) -> None:
    """Issue 17: HRNet's depth left the generic SearchConfig for the family's budget
    options; a search_config.yaml that older runs wrote with ``hrnet_modules`` still loads,
    and resumes exactly where it searched the same space."""
    import dataclasses

    from nasfuse.config import check_resumable, config_from_dict
    from nasfuse.search._config import resolve_plan
    from nasfuse.search._driver import _resolved, search_space_options
    from nasfuse.spaces import load_space

    cfg = SearchConfig(space=space, budget=budget)
    plan = resolve_plan(cfg)
    old_options = dict(search_space_options(cfg, plan))
    if modules is not None and space == "hrnet_lite":  # what the older version searched
        old_options.update({f"stages.{i}.modules": modules for i in range(3)})
    saved = {**dataclasses.asdict(_resolved(cfg, plan)), "hrnet_modules": modules}

    loaded = config_from_dict(SearchConfig, saved, "search_config.yaml")
    assert loaded.space_options == depth_options
    check_resumable(saved, _resolved(loaded, plan), "search_config.yaml", "start another")
    now = search_space_options(loaded, resolve_plan(loaded))
    assert load_space(space, now).hash == load_space(space, old_options).hash
    if depth_options:  # resuming without the depth would search another space: refused
        with pytest.raises(ValueError, match="space_options"):
            check_resumable(saved, _resolved(cfg, plan), "search_config.yaml", "start another")


@pytest.mark.parametrize("folder", ["pct%20dir", "with space", "hash#dir", "ünïcode", "q?x"])
def test_the_default_storage_url_keeps_odd_folder_names(tmp_path: Path, folder: str) -> None:
    import optuna
    from sqlalchemy.engine import make_url

    from nasfuse.search._study import STUDY_FILE, storage_url

    run_dir = tmp_path / folder
    run_dir.mkdir()
    url = storage_url(run_dir, None)
    assert make_url(url).database == str((run_dir / STUDY_FILE).resolve())
    optuna.create_study(storage=url, study_name="s")
    assert (run_dir / STUDY_FILE).is_file()
    assert [p.name for p in tmp_path.iterdir()] == [folder]  # nothing written elsewhere


def test_the_default_run_dir_is_one_safe_folder() -> None:
    from nasfuse.search import SearchConfig, default_run_dir

    path = default_run_dir(SearchConfig(space="../../evil.yaml", budget="quick"))
    assert path.parent == Path("runs") and path.name == "evil-quick"


TINY_RESNET = Path(__file__).parent / "fixtures" / "tiny_resnet.yaml"


@pytest.fixture(scope="module")
def tiny_latency_table() -> dict:
    """A latency table measured as ``nasfuse search`` measures the tiny space (quick budget,
    width 1, digits: batch 1, one thread), as its JSON."""
    import json

    import torch

    from nasfuse.latency import BuildOptions, LatencyTable
    from nasfuse.spaces import load_space

    torch.set_num_threads(1)
    space = load_space(TINY_RESNET, {"width_mult": 1.0, "input_size": 16})
    table = LatencyTable.build(
        space,
        BuildOptions(batch_size=1, threads=1, runs=2, network_runs=2, warmup=1, progress=False),
    )
    return json.loads(json.dumps(table.to_dict()))


class _Training(Exception):
    """Raised where the search would start training its supernet."""


def _search_up_to_training(
    out: Path,
    table: dict | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    more: tuple[str, ...] = (),
) -> tuple[int | None, str]:
    """``nasfuse search`` (plus ``more`` arguments) on the tiny space, stopped where it
    would train its supernet; ``table`` (if any) is put in the run first."""
    import json

    import nasfuse.search._driver as driver
    from nasfuse.cli import main

    def training(*args, **kwargs):
        raise _Training

    monkeypatch.setattr(driver, "ensure_supernet", training)
    out.mkdir(exist_ok=True)
    if table is not None:
        (out / "latency_table.json").write_text(json.dumps(table))
    argv = [
        "search", "--space", str(TINY_RESNET), "--set", "width_mult=1.0", "--budget", "quick",
        "--epochs", "1", "--trials", "2", "--threads", "1", "--out", str(out), *more,
    ]  # fmt: skip
    try:
        code = main(argv)
    except _Training:
        code = None
    return code, capsys.readouterr().err


def test_a_reused_latency_table_that_fits_reaches_training(
    tiny_latency_table, tmp_path, monkeypatch, capsys
) -> None:
    code, err = _search_up_to_training(tmp_path / "run", tiny_latency_table, monkeypatch, capsys)
    assert code is None, err  # the table's key was checked and the search went on to train


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("device", "cpu:Another CPU (1 thread)"),
        ("threads", 2),
        ("torch", "2.0.0"),
        ("batch_size", 32),
        ("space_hash", "0" * 16),
        ("clock", "thread"),
        ("channels_last", True),
    ],
)
def test_a_reused_latency_table_of_other_settings_is_refused_before_training(
    tiny_latency_table, tmp_path, monkeypatch, capsys, field, value
) -> None:
    """Issue 19: the table was loaded without checking device, threads and torch version."""
    import copy

    table = copy.deepcopy(tiny_latency_table)
    table["key"][field] = value
    out = tmp_path / "run"
    code, err = _search_up_to_training(out, table, monkeypatch, capsys)
    assert code == 2, err  # refused, and _supernet (training) was never reached
    (line,) = err.strip().splitlines()
    path = out / "latency_table.json"
    assert line.startswith(f"nasfuse search: error: latency table {path} was measured for ")
    assert f"{field}={value!r}" in line and "delete it" in line
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["latency_table.json", "search_config.yaml"]


def test_a_given_latency_table_is_checked_before_training_and_copied_into_the_run(
    tiny_latency_table, tmp_path, monkeypatch, capsys
) -> None:
    """Issue 17: ``--latency-table`` hands the search a measured table (experiments used to
    copy files into run directories). One of other settings is refused before training;
    one that fits becomes the run's, byte for byte, and is what the search uses."""
    import copy
    import json
    from types import SimpleNamespace

    import nasfuse.data
    import nasfuse.search._driver as driver
    from nasfuse.cli import main
    from nasfuse.spaces import load_space

    misfit = copy.deepcopy(tiny_latency_table)
    misfit["key"]["batch_size"] = 32
    given = tmp_path / "other.json"
    given.write_text(json.dumps(misfit))
    out = tmp_path / "refused"
    code, err = _search_up_to_training(
        out, None, monkeypatch, capsys, ("--latency-table", str(given))
    )
    assert code == 2 and f"latency table {given} was measured for " in err, err
    assert "nasfuse latency build" in err and "Traceback" not in err
    assert not (out / "latency_table.json").exists()

    given.write_text(json.dumps(tiny_latency_table, indent=1))
    supernet = SimpleNamespace(space=load_space(TINY_RESNET, {"width_mult": 1.0, "input_size": 16}))

    def data(*args, **kwargs):
        raise _Training

    monkeypatch.setattr(driver, "ensure_supernet", lambda *args, **kwargs: supernet)
    monkeypatch.setattr(nasfuse.data, "build_loaders", data)
    out = tmp_path / "run"
    argv = [
        "search", "--space", str(TINY_RESNET), "--set", "width_mult=1.0", "--budget", "quick",
        "--trials", "2", "--threads", "1", "--out", str(out), "--latency-table", str(given),
    ]  # fmt: skip
    with pytest.raises(_Training):  # the table stage passed; the data stage comes next
        main(argv)
    assert (out / "latency_table.json").read_bytes() == given.read_bytes()
    assert "latency: building" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "more",
    [
        ("--trials", "5"),
        ("--threads", "2"),
        ("--num-cpus", "1"),
        ("--pick", "max-acc"),
        ("concurrency=1", "download=true"),
        ("data_dir=elsewhere",),
    ],
)
def test_a_resumed_search_accepts_run_only_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], more
) -> None:
    """Issue 17: more trials, other threads, CPUs, concurrency, pick rule or data location
    continue the search (it goes on to its supernet)."""
    import torch

    out = tmp_path / "run"
    threads = torch.get_num_threads()
    try:
        assert _search_up_to_training(out, None, monkeypatch, capsys)[0] is None
        code, err = _search_up_to_training(out, None, monkeypatch, capsys, (*more, "--resume"))
    finally:
        torch.set_num_threads(threads)  # --threads 2 set the driver's, in this process
    assert code is None, err


@pytest.mark.parametrize(
    ("more", "shown"),
    [
        (("--seed", "1"), "seed: 0 -> 1"),
        (("--sampler", "random"), "sampler: 'nsga2' -> 'random'"),
        (("--epochs", "2"), "supernet_epochs: 1 -> 2"),
        (("--study-name", "other"), "study_name: 'nasfuse' -> 'other'"),
        (("few_shot_epochs=1",), "few_shot_epochs: 0 -> 1"),
    ],
)
def test_a_resumed_search_refuses_other_search_settings_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], more, shown
) -> None:
    out = tmp_path / "run"
    assert _search_up_to_training(out, None, monkeypatch, capsys)[0] is None
    saved = (out / "search_config.yaml").read_text()
    code, err = _search_up_to_training(out, None, monkeypatch, capsys, (*more, "--resume"))
    assert code == 2, err  # refused, and _supernet (training) was never reached
    (line,) = err.strip().splitlines()
    assert line.startswith(f"nasfuse search: error: {out / 'search_config.yaml'}: cannot resume")
    assert shown in line and "resume with the same ones or start another --out" in line
    assert "may change on resume: concurrency, data_dir, download, latency_table, num_cpus" in line
    assert (out / "search_config.yaml").read_text() == saved  # the run's record is kept
