"""Several drivers on one study, without Ray: searchers driven by hand on a shared journal.

Each :class:`FusionSearcher` here stands for one ``nasfuse search`` process: its own lease,
its own sampler, the study shared through a journal file. The real thing (two processes,
Ray, a PostgreSQL server) is in ``tests/test_search_cluster.py``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
from ray.tune.search import Searcher

from nasfuse.search import FusionSearcher, SyntheticCosts, make_sampler
from nasfuse.search._study import open_storage, record_from_trial

OPS = ["add", "concat", "dwff"]
SITES = {f"s{i}": list(OPS) for i in range(12)}  # 3**12 architectures: no chance repeats


def _searcher(storage: Any, n_trials: int, seed: int = 0, **kwargs: Any) -> FusionSearcher:
    searcher = FusionSearcher(
        sites=SITES,
        costs=SyntheticCosts(OPS),
        n_trials=n_trials,
        sampler=make_sampler("random", seed, 4),
        study_name="shared",
        storage=storage,
        poll_seconds=0.0,
        **kwargs,
    )
    # As search_architectures does: a second driver is seeded apart from the first.
    searcher.study.sampler = make_sampler("random", searcher.sampler_seed(seed), 4)
    return searcher


def _result(config: dict[str, Any]) -> dict[str, Any]:
    return {"status": "evaluated", "accuracy": 0.5, "latency_ms": config["predicted_latency_ms"]}


def _statuses(study: optuna.Study) -> Counter:
    return Counter(record_from_trial(t).status for t in study.get_trials())


def _evaluated(study: optuna.Study) -> list[str]:
    return [
        t.user_attrs["arch_hash"]
        for t in study.get_trials()
        if t.user_attrs.get("status") == "evaluated"
    ]


def test_two_drivers_share_the_budget_and_evaluate_nothing_twice(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "study.log"))
    first = _searcher(storage, 10)
    second = _searcher(storage, 10)
    assert second.others_live_at_start and second.sampler_seed(0) != first.sampler_seed(0)
    open_configs: dict[str, tuple[FusionSearcher, str]] = {}
    started: list[str] = []
    finished = {id(first): False, id(second): False}
    for step in range(200):
        for searcher in (first, second):
            if finished[id(searcher)]:
                continue
            trial_id = f"{id(searcher)}-{step}"
            config = searcher.suggest(trial_id)
            if config == Searcher.FINISHED:
                finished[id(searcher)] = True
            elif config is not None:
                open_configs[config["arch_hash"]] = (searcher, trial_id)
                started.append(config["arch_hash"])
        # Each round, the oldest evaluation completes: both drivers keep two in flight.
        if len(open_configs) > 2 or (open_configs and step % 3 == 0):
            key = next(iter(open_configs))
            searcher, trial_id = open_configs.pop(key)
            searcher.on_trial_complete(trial_id, _result({"predicted_latency_ms": 1.0}))
        if all(finished.values()):
            break
    assert all(finished.values())
    first.close()
    second.close()
    study = optuna.load_study(study_name="shared", storage=storage)
    statuses = _statuses(study)
    assert statuses["evaluated"] + statuses["cached"] + statuses["failed"] == 10, statuses
    assert statuses["interrupted"] == 0  # no live driver's trial was failed
    assert len(_evaluated(study)) == len(set(_evaluated(study))) == len(set(started))
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    owners = Counter(t.user_attrs.get("driver") for t in study.get_trials())
    assert set(owners) == {first.lease.driver_id, second.lease.driver_id}


def test_a_repeat_of_another_drivers_evaluation_waits_for_its_result(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "study.log"))
    arch = {site: "concat" for site in SITES}
    first = _searcher(storage, 4)
    first.study.enqueue_trial(arch)
    config = first.suggest("a0")
    assert config["arch"] == arch
    second = _searcher(storage, 4)
    second.study.enqueue_trial(arch)
    other = second.suggest("b0")  # the repeat waits; the second driver evaluates another
    assert other is not None and other["arch"] != arch
    first.on_trial_complete("a0", _result(config))
    assert second.suggest("b1") is not None  # reads the study: the repeat is told cached
    repeats = [t for t in second.study.get_trials() if t.user_attrs.get("status") == "cached"]
    assert [t.user_attrs["duplicate_of"] for t in repeats] == [config["optuna_trial"]]
    assert _evaluated(second.study).count(config["arch_hash"]) == 1
    first.close()
    second.close()


def test_a_gone_drivers_running_trials_are_failed_and_rerun_a_live_ones_are_not(
    tmp_path: Path,
) -> None:
    storage = open_storage(str(tmp_path / "study.log"))
    gone = _searcher(storage, 6)
    cut_short = [gone.suggest(f"g{i}") for i in range(2)]
    live = _searcher(storage, 6)
    running = live.suggest("l0")
    assert {t.state for t in live.study.get_trials()} == {optuna.trial.TrialState.RUNNING}
    # A third driver starts while both are alive: it fails nothing.
    third = _searcher(storage, 6)
    assert _statuses(third.study)["interrupted"] == 0 and not third.reruns
    third.close()
    gone.close()  # its lease ends with two trials still running: they are orphans now
    configs = [live.suggest(f"l{i}") for i in range(1, 3)]
    statuses = _statuses(live.study)
    assert statuses["interrupted"] == 2
    # The cut-short architectures are evaluated again first, by the live driver.
    assert [c["arch"] for c in configs] == [c["arch"] for c in cut_short]
    reruns = [t.user_attrs.get("rerun_of") for t in live.study.get_trials()]
    assert sorted(r for r in reruns if r is not None) == [c["optuna_trial"] for c in cut_short]
    # The live driver's own running trial was left alone and reports normally.
    live.on_trial_complete("l0", _result(running))
    assert record_from_trial(live.study.get_trials()[running["optuna_trial"]]).status == (
        "evaluated"
    )
    live.close()


def test_a_resumed_driver_is_seeded_from_the_study_and_reruns_cut_short_trials(
    tmp_path: Path,
) -> None:
    storage = open_storage(str(tmp_path / "study.log"))
    killed = _searcher(storage, 10)
    configs = [killed.suggest(f"k{i}") for i in range(5)]
    for i, config in enumerate(configs[:3]):
        killed.on_trial_complete(f"k{i}", _result(config))
    killed.close()  # as a killed driver's lease: ended (on this host, a dead PID reads so too)
    resumed = _searcher(storage, 10)
    assert resumed.sampler_seed(0) != 0
    assert resumed.reruns == [configs[3]["optuna_trial"], configs[4]["optuna_trial"]]
    evaluated = []
    for step in range(50):
        config = resumed.suggest(f"r{step}")
        if config == Searcher.FINISHED:
            break
        evaluated.append(config["arch"])
        resumed.on_trial_complete(f"r{step}", _result(config))
    resumed.close()
    assert evaluated[:2] == [configs[3]["arch"], configs[4]["arch"]]
    study = resumed.study
    assert _statuses(study)["evaluated"] == 10 == len(set(_evaluated(study)))


@pytest.mark.parametrize("grace", [0.2])
def test_a_lease_not_renewed_within_the_grace_period_is_gone(tmp_path: Path, grace: float) -> None:
    import time

    from nasfuse.search._lease import DriverLease

    study = optuna.create_study(storage=open_storage(str(tmp_path / "s.log")), study_name="s")
    quiet = DriverLease(study, interval=60.0, grace=grace)
    quiet.renew()  # one beat, then silence (as a driver on a host that lost its network)
    watcher = DriverLease(study, interval=0.05, grace=grace).start()
    assert quiet.driver_id in watcher.live_drivers()
    time.sleep(3 * grace)
    assert quiet.driver_id not in watcher.live_drivers()
    watcher.stop()
