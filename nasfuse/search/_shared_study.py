"""The study as the drivers of a search share it: budget, results, and drivers gone.

Several drivers (one :class:`~nasfuse.search._searcher.FusionSearcher` each) may search one
study at once. None of them keeps the truth in its own memory: each reads the study again
(:meth:`SharedStudy.refresh`, at most every ``poll_seconds`` unless forced) and decides from
what every driver has written there:

- the budget is counted over the whole study (:meth:`SharedStudy.claims`): counted trials,
  trials running under a live driver, and enqueued ones hold a place in it;
- every driver's results are known to all (:attr:`SharedStudy.cache`,
  :attr:`SharedStudy.failed`), so no architecture is evaluated twice, and a trial of an
  architecture another live driver is evaluating right now waits for that result
  (:meth:`SharedStudy.evaluating_elsewhere`);
- a RUNNING trial whose driver is gone, as its lease (:mod:`nasfuse.search._lease`) tells,
  is failed as ``interrupted`` (not counted) and its architecture enqueued again, as are the
  trials an interrupted run cut short (:meth:`SharedStudy.enqueue_reruns`), ahead of
  anything new.

The study is opened here too (:func:`open_search_study`): whichever driver comes first
creates it, and each checks that it searches the same space.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nasfuse.search._baselines import Baseline
from nasfuse.search._lease import DRIVER_ATTR, DriverLease
from nasfuse.search._study import COUNTED_STATUSES, DIRECTIONS, OBJECTIVES, trial_status

__all__ = ["SharedStudy", "open_search_study"]

# Evaluation results a cached repeat carries over from its original.
_CACHED_ATTRS = ("flops", "params", "eval_samples")


def _counted(trial: FrozenTrial) -> bool:
    return trial_status(trial) in COUNTED_STATUSES


def _trial_params(trial: FrozenTrial) -> Mapping[str, Any]:
    """The architecture of a trial: its params, or for a waiting one those it was given."""
    if trial.state == TrialState.WAITING:
        # Optuna keeps an enqueued trial's parameters in this system attribute until it is
        # asked (FrozenTrial.system_attrs is public; no other public reader exists).
        return trial.system_attrs.get("fixed_params", trial.params)
    return trial.params


def open_search_study(
    study_name: str,
    storage: optuna.storages.BaseStorage,
    sampler: optuna.samplers.BaseSampler,
    sites: Mapping[str, list[str]],
    space_hash: str,
) -> optuna.Study:
    """Create the search's study, or load it when ``storage`` holds it already (a resumed
    search, or another driver that created it first: Optuna settles that race itself), and
    check it is a study of this space.

    No pruner: a trial reports once, and Optuna cannot prune a multi-objective trial.
    """
    study = optuna.create_study(
        storage=storage,
        sampler=sampler,
        pruner=optuna.pruners.NopPruner(),
        study_name=study_name,
        directions=list(DIRECTIONS),
        load_if_exists=True,
    )
    _check_study(study, sites, space_hash)
    return study


def _check_study(study: optuna.Study, sites: Mapping[str, list[str]], space_hash: str) -> None:
    """Refuse a study that is not a search of this space; record the space in a new one."""
    attrs = study.user_attrs
    directions = [d.name.lower() for d in study.directions]
    if directions != ["maximize", "minimize"]:
        raise ValueError(
            f"study {study.study_name!r} optimises {directions}, not "
            "[maximize accuracy, minimize latency_ms]; use another --storage or study name"
        )
    if "space_hash" in attrs and space_hash and attrs["space_hash"] != space_hash:
        raise ValueError(
            f"study {study.study_name!r} belongs to the space with hash "
            f"{attrs['space_hash']}, not {space_hash}; resume it with the same space "
            "and options, or start a new run directory"
        )
    if "space_hash" not in attrs:
        study.set_user_attr("space_hash", space_hash)
        study.set_user_attr("sites", sites)
    # optuna-dashboard and trials_dataframe() then name the objectives.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(OBJECTIVES))


class SharedStudy:
    """This driver's latest reading of a study other drivers may search too.

    Args:
        study: the search's study.
        lease: this driver's lease, which also tells which other drivers are alive.
        sites: site name -> ops allowed there.
        n_trials: counted trials the study should hold when the search ends.
        poll_seconds: the least time between two unforced reads of the study.
    """

    def __init__(
        self,
        study: optuna.Study,
        lease: DriverLease,
        sites: Mapping[str, list[str]],
        n_trials: int,
        poll_seconds: float,
    ) -> None:
        self.study = study
        self.lease = lease
        self._sites = sites
        self._n_trials = n_trials
        self._poll_seconds = poll_seconds
        self.view: list[FrozenTrial] = []  # the study's trials, as last read
        self._live: set[str] = set()
        self._read_at = -math.inf
        self._orphans_at = -math.inf
        # arch hash -> (values, trial number, carried attributes) of its evaluation
        self.cache: dict[str, tuple[list[float], int, dict[str, Any]]] = {}
        self.failed: dict[str, tuple[int, str]] = {}  # arch hash -> (trial number, error)
        self.reruns: list[int] = []  # trials cut short whose architectures were re-enqueued

    def counted(self) -> int:
        """Trials of the study, as last read, told in a counted status."""
        return sum(1 for t in self.view if _counted(t))

    def refresh(self, force: bool = False) -> None:
        """Read the study again (at most every ``poll_seconds`` unless forced): its trials,
        the live drivers, every driver's evaluations; fail the trials of gone drivers."""
        now = time.monotonic()
        if not force and now - self._read_at < self._poll_seconds:
            return
        self._read_at = now
        self._live = self.lease.live_drivers()
        self.view = self.study.get_trials(deepcopy=False)
        if now - self._orphans_at >= min(self.lease.interval, self._poll_seconds * 5):
            self._orphans_at = now
            if self._fail_orphans():
                self.view = self.study.get_trials(deepcopy=False)
        for trial in self.view:
            status = trial.user_attrs.get("status")
            key = trial.user_attrs.get("arch_hash")
            if key is None or not trial.state.is_finished() or "duplicate_of" in trial.user_attrs:
                continue
            if status == "evaluated" and trial.state == TrialState.COMPLETE:
                self.cache.setdefault(
                    key,
                    (
                        list(trial.values),
                        trial.number,
                        {k: trial.user_attrs.get(k) for k in _CACHED_ATTRS},
                    ),
                )
            elif status == "failed":
                self.failed.setdefault(key, (trial.number, str(trial.user_attrs.get("error", ""))))

    def claims(self, below: int | None = None, waiting: bool = True) -> int:
        """Trials that hold a place in the budget (counted, running under a live driver, and
        with ``waiting`` the enqueued ones), among those numbered below ``below`` if given."""
        orphans = {t.number for t in self.lease.orphans(self.view, self._live)}
        return sum(
            1
            for t in self.view
            if (below is None or t.number < below)
            and (
                _counted(t)
                or (waiting and t.state == TrialState.WAITING)
                or (t.state == TrialState.RUNNING and t.number not in orphans)
            )
        )

    def evaluating_elsewhere(self, key: str, number: int) -> bool:
        """Whether a live trial of another driver numbered below ``number`` holds ``key``.

        Each driver tags a trial with its architecture before reading the study, so of two
        trials of one architecture at least the later reader sees the other: the lower
        number evaluates, the higher waits for its result.
        """
        orphans = {t.number for t in self.lease.orphans(self.view, self._live)}
        return any(
            t.state == TrialState.RUNNING
            and t.number < number
            and t.number not in orphans
            and t.user_attrs.get("arch_hash") == key
            and t.user_attrs.get(DRIVER_ATTR) != self.lease.driver_id
            for t in self.view
        )

    def _fail_orphans(self) -> list[FrozenTrial]:
        """Fail (``interrupted``: not counted) the RUNNING trials whose driver is gone, and
        enqueue their architectures again. Returns the trials this driver failed."""
        failed = []
        for trial in self.lease.orphans(self.view, self._live):
            try:
                # No status attribute: a failed trial without one reads as interrupted.
                self.study.tell(trial.number, state=TrialState.FAIL)
            except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
                continue  # another driver failed it first (or its driver told it after all)
            failed.append(trial)
        if failed:
            self.view = self.study.get_trials(deepcopy=False)
            self.enqueue_reruns(only={t.number for t in failed})
        return failed

    def _held(self) -> set[str]:
        """Hashes of the architectures the study holds, apart from interrupted trials."""
        from nasfuse.arch import arch_hash

        held: set[str] = set()
        for trial in self.view:
            if trial.state.is_finished() and not _counted(trial):
                continue
            params = {k: str(v) for k, v in _trial_params(trial).items()}
            if set(params) == set(self._sites):
                held.add(arch_hash(params))
            elif trial.user_attrs.get("arch_hash"):
                held.add(str(trial.user_attrs["arch_hash"]))
        return held

    def _room(self) -> int:
        return self._n_trials - self.claims()

    def enqueue_reruns(self, only: set[int] | None = None) -> list[int]:
        """Enqueue the architectures of interrupted trials again, before anything else.

        Returns the numbers of the trials re-enqueued.
        """
        from nasfuse.arch import arch_hash

        held = self._held()
        room = self._room()
        rerun: list[int] = []
        for trial in self.view:
            if only is not None and trial.number not in only:
                continue
            if trial.state != TrialState.FAIL or trial_status(trial) != "interrupted":
                continue
            params = {k: str(v) for k, v in trial.params.items()}
            if set(params) != set(self._sites) or arch_hash(params) in held:
                continue
            if len(rerun) >= room:
                break
            attrs = {k: v for k, v in trial.user_attrs.items() if k.startswith("baseline")}
            self.study.enqueue_trial(params, user_attrs={**attrs, "rerun_of": trial.number})
            held.add(arch_hash(params))
            rerun.append(trial.number)
        if rerun:
            self.view = self.study.get_trials(deepcopy=False)
        self.reruns.extend(rerun)
        return rerun

    def enqueue_baselines(self, baselines: Sequence[Baseline]) -> list[Baseline]:
        """Enqueue the baselines the study does not hold yet, within the trial budget."""
        from nasfuse.arch import arch_hash

        held = self._held()
        room = self._room()
        enqueued: list[Baseline] = []
        for baseline in baselines:
            if len(enqueued) >= room:
                break
            if arch_hash(baseline.arch) in held:
                continue
            self.study.enqueue_trial(
                dict(baseline.arch),
                user_attrs={
                    "baseline": baseline.name,
                    "baseline_kind": baseline.kind,
                    "baseline_note": baseline.note,
                },
            )
            enqueued.append(baseline)
        if enqueued:
            self.view = self.study.get_trials(deepcopy=False)
        return enqueued
