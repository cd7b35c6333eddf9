"""The search loop: Ray Tune runs the trials, :class:`FusionSearcher` (Optuna) proposes them.

:func:`search_architectures` knows nothing of supernets: it takes the sites, a driver-side
:class:`~nasfuse.search._trial.ArchCosts` and a worker-side
:class:`~nasfuse.search._trial.ArchEvaluator`, so it runs the same with the real supernet
(:func:`nasfuse.search.run_search`) and with the synthetic stand-in in tests.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from nasfuse.search._baselines import (
    baseline_architectures,
    default_variant_count,
    uniform_baselines,
)
from nasfuse.search._lease import DEFAULT_GRACE, DEFAULT_INTERVAL
from nasfuse.search._ray import local_ray, without_ray_tensorboard
from nasfuse.search._sampling import Constraints, make_sampler
from nasfuse.search._searcher import FusionSearcher
from nasfuse.search._study import (
    COUNTED_STATUSES,
    check_storage,
    masked_url,
    record_from_trial,
    storage_url,
)
from nasfuse.search._tensorboard import SearchRecorder
from nasfuse.search._trial import ArchCosts, ArchEvaluator, evaluate_trial

if TYPE_CHECKING:
    from ray.tune import Tuner

__all__ = ["SearchStats", "search_architectures", "reference_latency"]


@dataclass
class SearchStats:
    """What one call of :func:`search_architectures` did (this session only, except totals)."""

    study_name: str
    storage: str
    requested_trials: int
    statuses: dict[str, int] = field(default_factory=dict)
    """Counts of every trial in the study by status, after the search."""
    evaluations_started: int = 0
    """Ray Tune trials started in this session (each evaluates a new architecture)."""
    wall_seconds: float = 0.0
    concurrency: int = 1
    """Trials in flight at once."""
    evaluation_seconds: float = 0.0
    """The session's trials' own evaluation time, summed over trials (measured in each)."""
    searcher_seconds: float = 0.0
    """The driver's time in the searcher: Optuna's ask and tell, constraints, storage."""
    waiting_seconds: float = 0.0
    """Of ``searcher_seconds``, asleep while other drivers' trials fill the budget."""
    ray_start_seconds: float = 0.0
    """Starting or joining Ray."""

    def driver_seconds_per_trial(self) -> float | None:
        """The stage's wall time not spent evaluating (nor starting Ray, nor waiting for
        other drivers), per evaluation: the searcher plus Ray's scheduling and reporting.
        With ``concurrency`` trials in flight, evaluations overlap, so their sum is divided
        by it; a stage that cannot keep every slot busy shows as overhead too."""
        if self.evaluations_started == 0:
            return None
        busy = self.evaluation_seconds / max(self.concurrency, 1)
        rest = self.wall_seconds - self.ray_start_seconds - self.waiting_seconds - busy
        return max(rest, 0.0) / self.evaluations_started

    def describe(self) -> str:
        """``search stage N s: X s evaluating, Y s in the driver ...`` for the summary."""
        text = (
            f"search stage {self.wall_seconds:.0f} s: {self.evaluation_seconds:.0f} s "
            f"evaluating (summed over {self.evaluations_started} evaluations, "
            f"{self.concurrency} at a time), {self.searcher_seconds:.1f} s in the driver's "
            f"searcher, {self.ray_start_seconds:.1f} s starting Ray"
        )
        per_trial = self.driver_seconds_per_trial()
        if per_trial is not None:
            text += f"; {per_trial:.2f} s of driver time per evaluation"
        return text


def reference_latency(sites: Mapping[str, Sequence[str]], costs: ArchCosts) -> float:
    """Latency of the slowest architecture, found site by site (exact for an additive table).

    Starting from each site's first op, every site in turn takes the op that makes the
    predicted latency largest. Used as the hypervolume's reference latency, so hypervolumes
    of runs on the same space and table compare.
    """
    arch = {site: ops[0] for site, ops in sites.items()}
    for site, ops in sites.items():
        arch[site] = max(ops, key=lambda op: costs.latency_ms({**arch, site: op}))
    return float(costs.latency_ms(arch))


def search_architectures(
    *,
    sites: Mapping[str, Sequence[str]],
    evaluator: ArchEvaluator,
    costs: ArchCosts,
    run_dir: str | Path,
    n_trials: int,
    sampler: str = "nsga2",
    seed: int = 0,
    population_size: int = 20,
    constraints: Constraints | None = None,
    storage: str | None = None,
    study_name: str = "nasfuse",
    space_hash: str = "",
    study_attrs: Mapping[str, Any] | None = None,
    resume: bool = False,
    concurrency: int = 2,
    cpus_per_trial: float = 1.0,
    torch_threads: int = 1,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = True,
    baseline_variants: int | None = None,
    lease_interval: float = DEFAULT_INTERVAL,
    lease_grace: float = DEFAULT_GRACE,
) -> SearchStats:
    """Search until the study holds ``n_trials`` counted trials.

    Args:
        sites: site -> allowed ops; one categorical Optuna parameter each.
        evaluator: scores architectures inside Ray trials (sent once via the object store).
        costs: predicted latency and params, for constraints and the latency objective.
        run_dir: where the study (SQLite default), TensorBoard and Ray results go.
        n_trials: counted trials (evaluated, cached, infeasible, failed) to end with.
        sampler: ``nsga2``, ``tpe`` or ``random``.
        storage: Optuna storage URL; None: ``sqlite:///<run_dir>/study.db``.
        study_attrs: stored as study user attributes when the study is created.
        resume: continue an existing study; without it an existing study is refused.
        concurrency: Ray trials in flight at once.
        ray_address: join this Ray cluster instead of starting a local one.
        baseline_variants: one-group variants of all-add enqueued after the uniform
            architectures (:mod:`nasfuse.search._baselines`); None: enough to fill NSGA-II's
            first generation (``population_size`` minus the uniform ones, at least 2).
        lease_interval, lease_grace: this driver's lease on the study
            (:mod:`nasfuse.search._lease`): beat interval, and the age after which another
            driver's lease is taken as gone and its running trials are failed and re-run.

    Returns:
        :class:`SearchStats`.
    """
    # The classic console output obeys verbose=0; the newer one prints a banner regardless.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    url = storage_url(run_dir, storage)
    storage_obj = _storage_for(url, study_name, resume)
    started = time.perf_counter()
    if baseline_variants is None:
        baseline_variants = default_variant_count(len(uniform_baselines(sites)), population_size)
    searcher = FusionSearcher(
        sites=sites,
        costs=costs,
        n_trials=n_trials,
        sampler=make_sampler(sampler, seed, population_size),
        study_name=study_name,
        storage=storage_obj,
        constraints=constraints,
        space_hash=space_hash,
        trial_config={"torch_threads": torch_threads},
        baselines=baseline_architectures(sites, costs.latency_ms, baseline_variants),
        lease_interval=lease_interval,
        lease_grace=lease_grace,
    )
    run = _TuneRun(
        evaluator=evaluator,
        run_dir=run_dir,
        n_trials=n_trials,
        concurrency=concurrency,
        cpus_per_trial=cpus_per_trial,
        ray_address=ray_address,
        num_cpus=num_cpus,
    )
    try:
        _seed_apart(searcher, sampler, seed, population_size)
        _announce_reruns(searcher)
        _record_study_attrs(searcher.study, sites, costs, study_attrs)
        with _listening(searcher, run_dir, sites, n_trials, progress):
            ray_start_seconds = _run_trials(searcher, run)
        return _collect_stats(searcher, run, url, started, ray_start_seconds)
    finally:
        searcher.close()


@dataclass(frozen=True)
class _TuneRun:
    """How Ray Tune runs a session's trials: what evaluates them, where its results go, the
    study's budget, how many run at once with how many CPUs each, and on which Ray."""

    evaluator: ArchEvaluator
    run_dir: Path
    n_trials: int
    concurrency: int
    cpus_per_trial: float
    ray_address: str | None
    num_cpus: int | None


def _storage_for(url: str, study_name: str, resume: bool) -> optuna.storages.BaseStorage:
    """The storage at ``url``; refused when it holds ``study_name`` already and the search
    was not asked to resume it, so a second search cannot silently add to the first."""
    storage = check_storage(url)
    existing_names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    if study_name in existing_names and not resume:
        raise ValueError(
            f"{masked_url(url)} already holds study {study_name!r}; pass --resume to continue it, "
            "or choose another --out / --storage"
        )
    return storage


def _seed_apart(searcher: FusionSearcher, sampler: str, seed: int, population_size: int) -> None:
    """Give the study a sampler seeded apart when the searcher asks for another seed, and
    say why: a resumed or second driver seeded like the first would replay its suggestions."""
    sampler_seed = searcher.sampler_seed(seed)
    if sampler_seed == seed:
        return
    searcher.study.sampler = make_sampler(sampler, sampler_seed, population_size)
    print(
        f"search: the sampler is seeded with {sampler_seed} (from seed {seed} and the "
        f"{searcher.trials_before} trials the study holds"
        f"{', and this driver' if searcher.others_live_at_start else ''}), so it does not "
        "replay earlier suggestions",
        flush=True,
    )


def _announce_reruns(searcher: FusionSearcher) -> None:
    """Say which trials cut short earlier run again before anything new."""
    if searcher.reruns:
        print(
            f"search: re-running first the {len(searcher.reruns)} trial(s) cut short "
            f"({', '.join(str(n) for n in searcher.reruns[:8])}"
            f"{', ...' if len(searcher.reruns) > 8 else ''})",
            flush=True,
        )


def _record_study_attrs(
    study: optuna.Study,
    sites: Mapping[str, Sequence[str]],
    costs: ArchCosts,
    study_attrs: Mapping[str, Any] | None,
) -> None:
    """Store the reference latency, the device and ``study_attrs`` in a new study; a
    resumed one keeps those it was created with, so its hypervolumes stay comparable."""
    if "reference_latency_ms" not in study.user_attrs:
        study.set_user_attr("reference_latency_ms", reference_latency(sites, costs))
        study.set_user_attr("device", costs.device)
        for key, value in (study_attrs or {}).items():
            study.set_user_attr(key, value)


@contextlib.contextmanager
def _listening(
    searcher: FusionSearcher,
    run_dir: Path,
    sites: Mapping[str, Sequence[str]],
    n_trials: int,
    progress: bool,
) -> Iterator[None]:
    """For the block: TensorBoard records every trial the searcher tells, and with
    ``progress`` a bar counts them; both are closed after it, however it ends."""
    study = searcher.study
    recorder = SearchRecorder(
        run_dir,
        sites,
        study.user_attrs["reference_latency_ms"],
        existing=study.get_trials(deepcopy=False),
        # Ten scatters over a search: each costs the driver ~30 ms, taken from the trials.
        image_every=max(1, n_trials // 10),
    )
    searcher.add_listener(recorder)
    bar = _progress_bar(searcher, n_trials) if progress else None
    try:
        yield
    finally:
        recorder.close()
        if bar is not None:
            bar.close()


def _progress_bar(searcher: FusionSearcher, n_trials: int) -> Any:
    """A bar over the budget, advanced by each counted trial the searcher tells (with the
    latest accuracy and latency beside it)."""
    from nasfuse.progress import progress_bar

    bar = progress_bar(
        total=n_trials,
        initial=min(searcher.counted_trials, n_trials),
        desc="search",
        unit="trial",
    )

    def advance(trial: optuna.trial.FrozenTrial) -> None:
        record = record_from_trial(trial)
        if record.status in COUNTED_STATUSES:
            bar.update(1)
            if record.on_objectives:
                bar.set_postfix_str(
                    f"acc {record.accuracy:.3f}, {record.latency_ms:.2f} ms", refresh=False
                )

    searcher.add_listener(advance)
    return bar


def _run_trials(searcher: FusionSearcher, run: _TuneRun) -> float:
    """Run Ray Tune until the study holds ``run.n_trials`` counted trials (nothing to do
    when it holds them already). Returns the seconds spent starting or joining Ray."""
    if searcher.counted_trials >= run.n_trials:
        return 0.0
    ray_started = time.perf_counter()
    with local_ray(run.ray_address, run.num_cpus), without_ray_tensorboard():
        ray_start_seconds = time.perf_counter() - ray_started
        _make_tuner(searcher, run).fit()
    if searcher.counted_trials < run.n_trials:
        searcher.interrupt_open_trials()
        # Tune ends early only when interrupted (its SIGINT handler stops the running
        # trials, which the searcher records as interrupted): nothing is final, so nothing
        # is exported; the CLI says how to resume.
        raise KeyboardInterrupt(
            f"the search stopped at {searcher.counted_trials} of {run.n_trials} trials"
        )
    return ray_start_seconds


def _make_tuner(searcher: FusionSearcher, run: _TuneRun) -> Tuner:
    """A Tuner that asks ``searcher`` for trials until it says the budget is full, runs
    ``run.concurrency`` at a time and writes Ray Tune's CSV and JSON results only."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    trainable = tune.with_resources(
        tune.with_parameters(evaluate_trial, evaluator=run.evaluator),
        {"cpu": run.cpus_per_trial},
    )
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            num_samples=-1,
            max_concurrent_trials=run.concurrency,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
            storage_path=str(run.run_dir / "ray"),
            verbose=0,
            log_to_file=True,
            callbacks=[CSVLoggerCallback(), JsonLoggerCallback()],
        ),
    )


def _collect_stats(
    searcher: FusionSearcher, run: _TuneRun, url: str, started: float, ray_start_seconds: float
) -> SearchStats:
    """What the session did: the study's trials by status and the searcher's timings."""
    study = searcher.study
    statuses = Counter(record_from_trial(t).status for t in study.get_trials(deepcopy=False))
    return SearchStats(
        study_name=study.study_name,
        storage=url,
        requested_trials=run.n_trials,
        statuses=dict(statuses),
        evaluations_started=searcher.evaluations_started,
        wall_seconds=time.perf_counter() - started,
        concurrency=run.concurrency,
        evaluation_seconds=searcher.evaluation_seconds,
        searcher_seconds=searcher.searcher_seconds,
        waiting_seconds=searcher.waiting_seconds,
        ray_start_seconds=ray_start_seconds,
    )
