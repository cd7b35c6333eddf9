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
from typing import Any

import optuna

from nasfuse.search._baselines import (
    baseline_architectures,
    default_variant_count,
    uniform_baselines,
)
from nasfuse.search._lease import DEFAULT_GRACE, DEFAULT_INTERVAL
from nasfuse.search._searcher import Constraints, FusionSearcher, make_sampler
from nasfuse.search._study import (
    COUNTED_STATUSES,
    check_storage,
    masked_url,
    record_from_trial,
    storage_url,
)
from nasfuse.search._tensorboard import SearchRecorder
from nasfuse.search._trial import ArchCosts, ArchEvaluator, evaluate_trial

__all__ = [
    "SearchStats",
    "search_architectures",
    "reference_latency",
    "local_ray",
    "describe_ray_session",
    "probe_ray_address",
]


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


@contextlib.contextmanager
def _environ(key: str, value: str) -> Iterator[None]:
    """Set an environment variable for the duration of a block, then restore it."""
    before = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


# Ray's switch for clusters, named in Ray's own messages ("Restart the Ray cluster with the
# environment variable RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1"). Spelt here: the name's only
# definition in Ray is in its private constants module.
RAY_CLUSTERS_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """Make a local Ray listen on 127.0.0.1 only.

    On Linux Ray takes the machine's address as the node's and its servers listen on every
    interface (even with ``_node_ip_address="127.0.0.1"``, which it resolves back to that
    address). With clusters switched off (the setting Ray uses on macOS and Windows) the
    node is 127.0.0.1 and every server binds there. The environment variable reaches Ray's
    processes; this process read it when it imported Ray, so its copy is switched too.

    That copy is the one private part of Ray nasfuse still touches (issue 17): Ray 2.60 has
    no public way to give a local node a loopback address, and the variable alone comes too
    late for this process. A Ray without that copy gets the variable only, and a note.
    """
    try:
        from ray._private import ray_constants
    except ImportError:
        ray_constants = None
    before = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    if before is None:
        print(
            f"ray: this Ray has no cluster switch to turn off: {RAY_CLUSTERS_ENV}=0 reaches its "
            "processes only, and the local Ray may listen beyond 127.0.0.1",
            flush=True,
        )
    else:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with _environ(RAY_CLUSTERS_ENV, "0"):
            yield
    finally:
        if before is not None:
            ray_constants.ENABLE_RAY_CLUSTER = before


class local_ray:  # noqa: N801 - used as a context manager, reads like one
    """Own the Ray session: join ``address`` (or ``RAY_ADDRESS``, as Ray users expect) or
    start a local Ray on 127.0.0.1 with ``num_cpus``, unless Ray is already up; one line says
    which. On exit it disconnects from a cluster it joined, or stops the local Ray it
    started; a session it did not open is left alone.

    Enter it before anything touches the object store: ``ray.put`` outside it would start
    a default local Ray and the address and CPU count given here would be ignored.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.started = False

    def __enter__(self) -> local_ray:
        import ray

        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": True,
                "logging_level": "ERROR",
            }
            address = ray_address(self.address)
            if address:
                if self.num_cpus:
                    print(
                        f"ray: --num-cpus {self.num_cpus} is for a local Ray; the cluster at "
                        f"{address} has its own CPUs",
                        flush=True,
                    )
                try:
                    ray.init(address=address, **kwargs)
                except ConnectionError as exc:
                    # Not a disk problem (the CLI's OSError answer): say what to check.
                    raise RuntimeError(
                        f"cannot join the Ray cluster at {address} ({exc}); check that its head "
                        "runs (ray start --head) and the address; a cluster with token "
                        "authentication (Ray's default) needs RAY_AUTH_MODE=token here, with "
                        "its token in ~/.ray/auth_token or RAY_AUTH_TOKEN"
                    ) from exc
            else:
                with _loopback_only():
                    ray.init(num_cpus=self.num_cpus or os.cpu_count() or 1, **kwargs)
            self.started = True
            print(f"ray: {describe_ray_session(joined=bool(address))}", flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        if self.started:
            ray.shutdown()


def ray_address(address: str | None) -> str | None:
    """The cluster a search joins: ``address``, else ``$RAY_ADDRESS``, else None (local)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def probe_ray_address(address: str | None, timeout: float = 10.0) -> None:
    """Refuse early (before any training) a ``HOST:PORT`` cluster address nothing listens on.

    Other forms (``auto``, ``ray://...``) are left to ``ray.init``.
    """
    address = ray_address(address)
    if not address or "://" in address or address.count(":") != 1:
        return
    import socket

    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"--ray-address {address}: expected HOST:PORT of the cluster's head")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise RuntimeError(
            f"cannot join the Ray cluster at {address} ({exc.strerror or exc}); check that its "
            "head runs (ray start --head --port PORT) and the address, or leave --ray-address "
            "and RAY_ADDRESS unset for a local Ray"
        ) from exc


def describe_ray_session(joined: bool) -> str:
    """One line on the Ray session this process is connected to: where, how many CPUs."""
    import ray

    nodes = [node for node in ray.nodes() if node.get("Alive")]
    cpus = ray.cluster_resources().get("CPU", 0)
    where = ray.get_runtime_context().gcs_address
    kind = "joined the cluster at" if joined else "started a local Ray at"
    return f"{kind} {where} ({cpus:g} CPUs on {len(nodes)} node(s))"


def _without_ray_tensorboard() -> contextlib.AbstractContextManager[None]:
    """Keep Ray Tune's TensorBoard logger out of the run.

    Ray adds its TBX logger unless this variable is set; its event files (one single-point
    series per trial, hparams written when a trial ends) would sit beside nasfuse's own under
    ``tensorboard --logdir runs/``. The CSV and JSON loggers are passed explicitly instead.
    """
    return _environ("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


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
    storage_obj = check_storage(url)
    existing_names = {s.study_name for s in optuna.get_all_study_summaries(storage_obj)}
    if study_name in existing_names and not resume:
        raise ValueError(
            f"{masked_url(url)} already holds study {study_name!r}; pass --resume to continue it, "
            "or choose another --out / --storage"
        )
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
    try:
        return _run_searcher(
            searcher,
            sites=sites,
            costs=costs,
            run_dir=run_dir,
            url=url,
            n_trials=n_trials,
            sampler=sampler,
            seed=seed,
            population_size=population_size,
            study_attrs=study_attrs,
            evaluator=evaluator,
            concurrency=concurrency,
            cpus_per_trial=cpus_per_trial,
            ray_address=ray_address,
            num_cpus=num_cpus,
            progress=progress,
            started=started,
        )
    finally:
        searcher.close()


def _run_searcher(
    searcher: FusionSearcher,
    *,
    sites: Mapping[str, Sequence[str]],
    costs: ArchCosts,
    run_dir: Path,
    url: str,
    n_trials: int,
    sampler: str,
    seed: int,
    population_size: int,
    study_attrs: Mapping[str, Any] | None,
    evaluator: ArchEvaluator,
    concurrency: int,
    cpus_per_trial: float,
    ray_address: str | None,
    num_cpus: int | None,
    progress: bool,
    started: float,
) -> SearchStats:
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    study = searcher.study
    sampler_seed = searcher.sampler_seed(seed)
    if sampler_seed != seed:
        # A resumed or second driver seeded like the first would replay its suggestions.
        study.sampler = make_sampler(sampler, sampler_seed, population_size)
        print(
            f"search: the sampler is seeded with {sampler_seed} (from seed {seed} and the "
            f"{searcher.trials_before} trials the study holds"
            f"{', and this driver' if searcher.others_live_at_start else ''}), so it does not "
            "replay earlier suggestions",
            flush=True,
        )
    if searcher.reruns:
        print(
            f"search: re-running first the {len(searcher.reruns)} trial(s) cut short "
            f"({', '.join(str(n) for n in searcher.reruns[:8])}"
            f"{', ...' if len(searcher.reruns) > 8 else ''})",
            flush=True,
        )
    if "reference_latency_ms" not in study.user_attrs:
        study.set_user_attr("reference_latency_ms", reference_latency(sites, costs))
        study.set_user_attr("device", costs.device)
        for key, value in (study_attrs or {}).items():
            study.set_user_attr(key, value)
    recorder = SearchRecorder(
        run_dir,
        sites,
        study.user_attrs["reference_latency_ms"],
        existing=study.get_trials(deepcopy=False),
        image_every=max(1, n_trials // 20),
    )
    searcher.add_listener(recorder)
    bar = None
    if progress:
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

    ray_start_seconds = 0.0
    try:
        if searcher.counted_trials < n_trials:
            ray_started = time.perf_counter()
            with local_ray(ray_address, num_cpus), _without_ray_tensorboard():
                ray_start_seconds = time.perf_counter() - ray_started
                trainable = tune.with_resources(
                    tune.with_parameters(evaluate_trial, evaluator=evaluator),
                    {"cpu": cpus_per_trial},
                )
                tuner = tune.Tuner(
                    trainable,
                    tune_config=tune.TuneConfig(
                        search_alg=searcher,
                        num_samples=-1,
                        max_concurrent_trials=concurrency,
                        reuse_actors=True,
                    ),
                    run_config=tune.RunConfig(
                        name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
                        storage_path=str(run_dir / "ray"),
                        verbose=0,
                        log_to_file=True,
                        callbacks=[CSVLoggerCallback(), JsonLoggerCallback()],
                    ),
                )
                tuner.fit()
            if searcher.counted_trials < n_trials:
                searcher.interrupt_open_trials()
                # Tune ends early only when interrupted (its SIGINT handler stops the
                # running trials, which the searcher records as interrupted): nothing is
                # final, so nothing is exported; the CLI says how to resume.
                raise KeyboardInterrupt(
                    f"the search stopped at {searcher.counted_trials} of {n_trials} trials"
                )
    finally:
        recorder.close()
        if bar is not None:
            bar.close()
    statuses = Counter(record_from_trial(t).status for t in study.get_trials(deepcopy=False))
    return SearchStats(
        study_name=study.study_name,
        storage=url,
        requested_trials=n_trials,
        statuses=dict(statuses),
        evaluations_started=searcher.evaluations_started,
        wall_seconds=time.perf_counter() - started,
        concurrency=concurrency,
        evaluation_seconds=searcher.evaluation_seconds,
        searcher_seconds=searcher.searcher_seconds,
        waiting_seconds=searcher.waiting_seconds,
        ray_start_seconds=ray_start_seconds,
    )
