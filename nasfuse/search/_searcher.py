"""A Ray Tune searcher that drives an Optuna study by the rules of an architecture search.

:class:`FusionSearcher` is a ``ray.tune.search.Searcher`` that owns an Optuna study, kept in
a persistent storage, and drives it through Optuna's public ask-and-tell interface
(``Study.ask``, ``Study.tell``, ``Study.enqueue_trial``, ``Study.get_trials``): the Optuna
sampler runs inside Ray Tune's driver, one Optuna trial per suggested architecture. It
relies on no private attribute of Ray or Optuna, so a new release of either
cannot change it underneath. ``suggest`` and ``on_trial_complete`` follow these rules, for
one driver or several on one study (what the drivers share, the searcher reads through
:class:`~nasfuse.search._shared_study.SharedStudy`):

- constraints (:class:`~nasfuse.search._sampling.Constraints`) are checked in the driver
  before a trial is started; an infeasible architecture is told to Optuna at once with
  ``trial.set_constraint`` values > 0 (which NSGA-II, TPE and ``Study.best_trials``
  respect) and sentinel objectives (accuracy 0, its predicted latency), and never reaches a
  Ray trial;
- an architecture evaluated before (same :func:`nasfuse.arch.arch_hash`), by this driver or
  another one (the study is read before evaluating), is told its cached values at once (or
  failed again, with the first failure's error, if its evaluation failed); one being
  evaluated right now, here or by another live driver, waits for that evaluation's result;
- the trial budget lives here, counted over the whole study: ``suggest`` returns
  ``Searcher.FINISHED`` once the study holds the requested number of counted trials (see
  :mod:`nasfuse.search._study`), so Ray Tune runs with ``num_samples=-1`` and a resumed
  search, or several drivers together, stop at exactly that count;
- trials cut short (a killed or stopped driver; another driver gone, as its lease in
  :mod:`nasfuse.search._lease` tells) are failed as ``interrupted`` and their architectures
  enqueued again, ahead of anything new;
- a failed evaluation (exception, NaN) is told as ``FAIL`` with its error text;
- the baselines (:mod:`nasfuse.search._baselines`: all-add, every other uniform network,
  one-group variants of all-add) are enqueued before the sampler suggests anything, tagged
  with the user attributes ``baseline`` (their name), ``baseline_kind`` and
  ``baseline_note``. They go through the same checks as any suggestion (budget, dedup,
  constraints) and make up NSGA-II's first generation.

The searcher's state is the study: ``save`` writes only a pointer to it and ``restore`` does
nothing, because resuming means opening the study again (see ``__init__``); a resumed or
second driver's sampler is seeded apart (:meth:`FusionSearcher.sampler_seed`) so it does not
replay the suggestions already in the study.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from nasfuse.search._baselines import Baseline
from nasfuse.search._lease import DEFAULT_GRACE, DEFAULT_INTERVAL, DRIVER_ATTR, DriverLease
from nasfuse.search._sampling import Constraints, place_in_generation, seed_apart
from nasfuse.search._shared_study import SharedStudy, open_search_study
from nasfuse.search._study import OBJECTIVES
from nasfuse.search._trial import ArchCosts, read_report

__all__ = ["FusionSearcher"]

INFEASIBLE_ACCURACY = 0.0

TrialListener = Callable[[optuna.trial.FrozenTrial], None]


class FusionSearcher(Searcher):
    """One categorical Optuna parameter per fusion site; two objectives; see module doc.

    Several searchers (one per driver process) may share a study: each tags its trials with
    its :class:`~nasfuse.search._lease.DriverLease` id and decides from the study as every
    driver wrote it (:class:`~nasfuse.search._shared_study.SharedStudy`), so together they
    end with ``n_trials`` counted trials and evaluate no architecture twice.

    Args:
        sites: site name -> ops allowed there (the order of the space).
        costs: driver-side latency prediction and parameter count.
        n_trials: counted trials the study should hold when the search ends.
        sampler: the Optuna sampler.
        study_name: name of the study in ``storage`` (created or resumed).
        storage: an Optuna storage; trials recorded there survive a kill.
        constraints: bounds checked before evaluation.
        space_hash: stored in the study; resuming a study of another space is refused.
        listeners: called with each trial as it is told to the study (TensorBoard, progress).
        trial_config: extra entries for every Ray trial's config (e.g. ``torch_threads``).
        baselines: enqueued in order before any sampled trial (those the study already holds,
            counted, running or waiting, are not enqueued again; nor those past ``n_trials``).
        lease_interval, lease_grace: this driver's lease beat and the age at which another
            driver's lease is taken as gone (seconds).
        poll_seconds: how often the study is read again while this driver waits for other
            drivers' trials.
    """

    def __init__(
        self,
        *,
        sites: Mapping[str, Sequence[str]],
        costs: ArchCosts,
        n_trials: int,
        sampler: optuna.samplers.BaseSampler,
        study_name: str,
        storage: optuna.storages.BaseStorage,
        constraints: Constraints | None = None,
        space_hash: str = "",
        listeners: Sequence[TrialListener] = (),
        trial_config: Mapping[str, Any] | None = None,
        baselines: Sequence[Baseline] = (),
        lease_interval: float = DEFAULT_INTERVAL,
        lease_grace: float = DEFAULT_GRACE,
        poll_seconds: float = 1.0,
    ) -> None:
        self._sites = {name: list(ops) for name, ops in sites.items()}
        # Ray Tune reads metric and mode from its searcher; the study has the same directions.
        super().__init__(metric=list(OBJECTIVES), mode=["max", "min"])
        self._study = open_search_study(study_name, storage, sampler, self._sites, space_hash)
        self._asked: dict[str, optuna.Trial] = {}  # Ray trial id -> asked, ops not all drawn
        self._running: dict[str, optuna.Trial] = {}  # Ray trial id -> the trial it evaluates
        self._costs = costs
        self._n_trials = int(n_trials)
        self._constraints = constraints or Constraints()
        self._listeners = list(listeners)
        self._trial_config = dict(trial_config or {})
        self._poll_seconds = float(poll_seconds)
        self._in_flight: dict[str, str] = {}  # arch hash -> Ray trial id evaluating it
        self._waiting: dict[str, list[optuna.Trial]] = {}  # arch hash -> repeats awaiting it
        # arch hash -> this driver's trials awaiting another driver's evaluation of it
        self._elsewhere: dict[str, list[optuna.Trial]] = {}
        self._elsewhere_info: dict[str, dict[str, Any]] = {}
        self._ray_trials: dict[str, dict[str, Any]] = {}  # Ray trial id -> its arch info
        self.trials_before = len(self._study.get_trials(deepcopy=False))
        self.lease = DriverLease(self._study, lease_interval, lease_grace).start()
        self.others_live_at_start = self.lease.others_live()
        self._shared = SharedStudy(
            self._study, self.lease, self._sites, self._n_trials, self._poll_seconds
        )
        self._shared.refresh(force=True)  # fails (and re-enqueues) the trials of gone drivers
        self._shared.enqueue_reruns()  # and those cut short by an interrupted run
        self.enqueued_baselines = self._shared.enqueue_baselines(baselines)
        self.evaluations_started = 0
        # Where the search stage's time goes (SearchStats): the trials' own evaluation
        # time, and this driver's time inside suggest / on_trial_complete (Optuna's ask and
        # tell, constraints, storage reads and writes, the TensorBoard listeners).
        self.evaluation_seconds = 0.0
        self.searcher_seconds = 0.0
        self.waiting_seconds = 0.0  # of which asleep, waiting for other drivers' trials

    def add_listener(self, listener: TrialListener) -> None:
        """Call ``listener`` with each trial this searcher tells from now on."""
        self._listeners.append(listener)

    def close(self) -> None:
        """End this driver's lease (call when the search is over or interrupted)."""
        self.lease.stop()

    # -- study bookkeeping ---------------------------------------------------------------

    @property
    def study(self) -> optuna.Study:
        return self._study

    @property
    def reruns(self) -> list[int]:
        """Trials cut short whose architectures were enqueued again (by this driver)."""
        return self._shared.reruns

    @property
    def counted_trials(self) -> int:
        """Trials of the study (every driver's) told in a counted status (evaluated,
        cached, infeasible, failed)."""
        self._shared.refresh(force=True)
        return self._shared.counted()

    def sampler_seed(self, seed: int) -> int:
        """The seed for this driver's sampler (:func:`~nasfuse.search._sampling.seed_apart`
        from the trials the study held and, with other drivers live, this driver's id)."""
        driver_id = self.lease.driver_id if self.others_live_at_start else None
        return seed_apart(seed, self.trials_before, driver_id)

    def interrupt_open_trials(self) -> None:
        """After an interrupted run: tell every trial this searcher left open 'interrupted'
        (not counted; it is re-run first on resume), so none stays RUNNING."""
        for trial_id in list(self._ray_trials):
            self.on_trial_complete(trial_id, result=None)
        for trial_id, trial in list(self._asked.items()):  # asked, never started by Ray
            self._asked.pop(trial_id)
            self._tell(trial, "interrupted", None)
        for trials in [*self._waiting.values(), *self._elsewhere.values()]:
            for trial in trials:
                self._tell(trial, "interrupted", None)
        self._waiting.clear()
        self._elsewhere.clear()

    def _ask(self, trial_id: str) -> tuple[optuna.Trial, dict[str, str]]:
        """A new trial of the study (the first enqueued one, if any) and its architecture:
        one categorical parameter per site, drawn by the sampler or fixed by the enqueuing.

        The trial is kept under ``trial_id`` until every site is drawn, so one whose drawing
        failed (a storage error) is drawn again on the next call for ``trial_id``, not left
        RUNNING, and is told interrupted by :meth:`interrupt_open_trials`.
        """
        if trial_id not in self._asked:
            self._asked[trial_id] = self._study.ask()
        trial = self._asked[trial_id]
        arch = {
            site: str(trial.suggest_categorical(site, ops)) for site, ops in self._sites.items()
        }
        del self._asked[trial_id]
        return trial, arch

    def _tell(
        self,
        trial: optuna.Trial,
        status: str,
        values: Sequence[float] | None,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        state = TrialState.COMPLETE if values is not None else TrialState.FAIL
        try:
            trial.set_user_attr("status", status)
            for key, value in (attrs or {}).items():
                if value is not None:
                    trial.set_user_attr(key, value)
            frozen = self._study.tell(trial, list(values) if values is not None else None, state)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            # Another driver took this driver for gone and failed the trial: it re-runs it.
            print(
                f"search: trial {trial.number} was failed by another driver (this one's lease "
                "lapsed); its result is dropped",
                flush=True,
            )
            return
        for listener in self._listeners:
            listener(frozen)

    def _evaluation(self, trial_id: str, ot_trial: optuna.Trial, info: dict[str, Any]) -> dict:
        """Start evaluating ``ot_trial`` as Ray trial ``trial_id``: its config."""
        key = info["arch_hash"]
        self._in_flight[key] = trial_id
        self._running[trial_id] = ot_trial
        self._ray_trials[trial_id] = info
        self.evaluations_started += 1
        return {
            "arch": info["arch"],
            "arch_hash": key,
            "optuna_trial": ot_trial.number,
            "predicted_latency_ms": info["latency_ms"],
            "params": info["params"],
            **self._trial_config,
        }

    def _resolve(self, ot_trial: optuna.Trial, key: str) -> bool:
        """Tell ``ot_trial`` at once if the study already has ``key``'s result."""
        if key in self._shared.cache:
            values, original, extra = self._shared.cache[key]
            self._tell(ot_trial, "cached", values, {"duplicate_of": original, **extra})
            return True
        if key in self._shared.failed:
            original, error = self._shared.failed[key]
            self._tell(ot_trial, "failed", None, {"duplicate_of": original, "error": error})
            return True
        return False

    def _settle_elsewhere(self, trial_id: str) -> dict[str, Any] | None:
        """Tell the trials that waited for another driver's result once it is in the study;
        when that driver is gone, the lowest waiting trial is evaluated here (its config)."""
        for key, trials in list(self._elsewhere.items()):
            if key in self._shared.cache or key in self._shared.failed:
                for trial in trials:
                    self._resolve(trial, key)
                del self._elsewhere[key]
                continue
            first = min(trials, key=lambda t: t.number)
            if key in self._in_flight or self._shared.evaluating_elsewhere(key, first.number):
                continue
            del self._elsewhere[key]
            self._waiting.setdefault(key, []).extend(t for t in trials if t is not first)
            return self._evaluation(trial_id, first, dict(self._elsewhere_info.pop(key)))
        return None

    def _open_trials(self) -> int:
        return (
            len(self._ray_trials)
            + sum(len(v) for v in self._waiting.values())
            + sum(len(v) for v in self._elsewhere.values())
        )

    # -- Searcher interface --------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        started = time.perf_counter()
        try:
            return self._suggest(trial_id)
        finally:
            self.searcher_seconds += time.perf_counter() - started

    def _suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        from nasfuse.arch import arch_hash

        while True:
            self._shared.refresh()
            promoted = self._settle_elsewhere(trial_id)
            if promoted is not None:
                return promoted
            # Enqueued trials do not block asking: the next ask pops the first of them.
            if self._shared.claims(waiting=False) >= self._n_trials:
                if self._open_trials() == 0 and self.counted_trials >= self._n_trials:
                    return Searcher.FINISHED
                # Other drivers' trials (or this one's waiting ones) fill the budget: ask
                # again later; they may finish, or their driver may be gone.
                if not self._ray_trials:  # nothing of this driver's to wait for: do not spin
                    pause = min(0.2, self._poll_seconds)
                    time.sleep(pause)
                    self.waiting_seconds += pause
                return None
            ot_trial, arch = self._ask(trial_id)
            ot_trial.set_user_attr(DRIVER_ATTR, self.lease.driver_id)
            key = arch_hash(arch)
            latency = float(self._costs.latency_ms(arch))
            n_params = int(self._costs.params(arch))
            ot_trial.set_user_attr("arch_hash", key)
            ot_trial.set_user_attr("predicted_latency_ms", latency)
            ot_trial.set_user_attr("params", n_params)
            # Read the study after tagging the trial (see SharedStudy.evaluating_elsewhere).
            self._shared.refresh(force=True)
            place_in_generation(self._study, self._shared.view, ot_trial.number)
            if self._shared.claims(below=ot_trial.number) >= self._n_trials:
                # Another driver filled the budget meanwhile: not counted, not evaluated.
                self._tell(ot_trial, "surplus", None)
                continue
            violations = self._constraints.violations(latency, n_params)
            for name, value in violations.items():
                ot_trial.set_constraint(name, value)
            if any(v > 0 for v in violations.values()):
                self._tell(ot_trial, "infeasible", [INFEASIBLE_ACCURACY, latency])
                continue
            if self._resolve(ot_trial, key):
                continue
            if key in self._in_flight:
                self._waiting.setdefault(key, []).append(ot_trial)
                continue
            info = {"arch": arch, "arch_hash": key, "latency_ms": latency, "params": n_params}
            if self._shared.evaluating_elsewhere(key, ot_trial.number):
                self._elsewhere.setdefault(key, []).append(ot_trial)
                self._elsewhere_info.setdefault(key, info)
                continue
            return self._evaluation(trial_id, ot_trial, info)

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        """Decline a Tune ``param_space`` (Tune then refuses one with search domains): the
        space is the sites, and metric and mode are the study's two objectives."""
        return False

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Multi-objective trials report once; nothing to do until they complete."""

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        started = time.perf_counter()
        try:
            self._complete(trial_id, result, error)
        finally:
            self.searcher_seconds += time.perf_counter() - started

    def _complete(self, trial_id: str, result: dict | None, error: bool) -> None:
        if trial_id not in self._ray_trials:
            return
        if result and result.get("eval_seconds") is not None:
            self.evaluation_seconds += float(result["eval_seconds"])
        info = self._ray_trials.pop(trial_id)
        ot_trial = self._running.pop(trial_id)
        key = info["arch_hash"]
        self._in_flight.pop(key, None)
        waiting = self._waiting.pop(key, [])
        if not error and not result:
            # Stopped before it reported (Ctrl-C, Tune shutting down): not a result, so not
            # counted; it is re-run first when the search resumes.
            for trial in [ot_trial, *waiting]:
                self._tell(trial, "interrupted", None)
            return
        outcome = read_report(result or {}, error, info["latency_ms"])
        if outcome.values is None:
            self._tell(ot_trial, "failed", None, outcome.attrs)
            self._shared.failed[key] = (ot_trial.number, outcome.attrs["error"])
            for repeat in waiting:
                attrs = {"duplicate_of": ot_trial.number, **outcome.attrs}
                self._tell(repeat, "failed", None, attrs)
            return
        self._tell(ot_trial, "evaluated", outcome.values, outcome.attrs)
        self._shared.cache[key] = (outcome.values, ot_trial.number, outcome.carried)
        for repeat in waiting:
            attrs = {"duplicate_of": ot_trial.number, **outcome.carried}
            self._tell(repeat, "cached", outcome.values, attrs)

    def __getstate__(self) -> dict[str, Any]:
        # Ray Tune pickles its config (search_alg included) into tuner.pkl for Tuner.restore.
        # This searcher holds a live study, a TensorBoard writer and a progress bar, and its
        # resume path is reopening the study, so only a pointer is pickled.
        return {"study_name": self._study.study_name, "_unpickled": True}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        """The study is the state: write where it lives (Ray Tune checkpoints call this)."""
        pointer = {
            "study_name": self._study.study_name,
            "saved_at": time.time(),
            "counted_trials": self._shared.counted(),
        }
        with open(checkpoint_path, "w") as handle:
            json.dump(pointer, handle)

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore: a resumed search reopens the study in ``__init__``."""
