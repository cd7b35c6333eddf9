"""The Optuna study of a search: where it is stored, and its trials read back as records.

The study is the search's memory: every suggested architecture is an Optuna trial whose
params are ``{site: op}``, whose values are ``(accuracy, latency_ms)`` and whose user
attributes say what happened to it (``status``) and its costs. Export, TensorBoard and
resume all read it through :func:`trial_records`.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

__all__ = [
    "TrialRecord",
    "STUDY_FILE",
    "DIRECTIONS",
    "OBJECTIVES",
    "storage_url",
    "open_storage",
    "check_storage",
    "masked_url",
    "load_search_study",
    "trial_records",
    "record_from_trial",
    "trial_status",
    "front_records",
]

STUDY_FILE = "study.db"
OBJECTIVES = ("accuracy", "latency_ms")
DIRECTIONS = ("maximize", "minimize")

# Trial statuses (user attribute "status"):
#   evaluated   scored on the supernet by a Ray Tune trial
#   cached      the same architecture was evaluated before; its values were reused
#   infeasible  broke --max-latency / --max-params; never evaluated (objectives are sentinels)
#   failed      its evaluation raised or gave NaN
#   interrupted was running when its driver was killed or stopped (a failed trial without a
#               status reads so: another driver failed it); not counted, re-run first
#   running, waiting  (no attribute yet) in flight or enqueued, in a study being searched
#   surplus     asked by one driver while others filled the budget; not counted, not evaluated
COUNTED_STATUSES = ("evaluated", "cached", "infeasible", "failed")
_COMPLETE_STATUSES = ("evaluated", "cached", "infeasible")


@dataclass(frozen=True)
class TrialRecord:
    """One Optuna trial of a search, flattened."""

    number: int
    status: str
    arch: dict[str, str]
    arch_hash: str
    accuracy: float | None
    latency_ms: float | None
    params: int | None
    flops: int | None
    feasible: bool
    duplicate_of: int | None = None
    baseline: str | None = None
    """Name of the enqueued baseline this trial is (``all-add``, ``dwff@stage3``), else None."""
    baseline_kind: str | None = None
    """``uniform`` or ``variant`` for baselines."""
    baseline_note: str = ""
    eval_samples: int | None = None
    """Images the accuracy was measured on (its binomial noise depends on it)."""

    @property
    def on_objectives(self) -> bool:
        """True when the trial has real objective values (evaluated or cached, feasible)."""
        return (
            self.status in ("evaluated", "cached")
            and self.feasible
            and self.accuracy is not None
            and self.latency_ms is not None
            and math.isfinite(self.accuracy)
            and math.isfinite(self.latency_ms)
        )


def storage_url(run_dir: str | Path, storage: str | None) -> str:
    """The storage URL of a run: ``storage`` if given, else SQLite ``<run_dir>/study.db``."""
    if storage:
        return storage
    # SQLAlchemy percent-decodes the URL's path: quote it, or '%20' in a folder name
    # becomes a space and '#' or '?' cut the path short.
    path = urllib.parse.quote(str((Path(run_dir) / STUDY_FILE).resolve()), safe="/")
    return f"sqlite:///{path}"


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage for a URL; journal files (``*.log`` paths) use JournalStorage."""
    if url.endswith(".log") and "://" not in url:
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url))
    if url.startswith("sqlite"):
        return _fast_sqlite(_rdb_storage(url))
    # A server may drop idle connections during a long trial: test each before use.
    return _rdb_storage(url, engine_kwargs={"pool_pre_ping": True})


def _rdb_storage(url: str, **kwargs: Any) -> optuna.storages.RDBStorage:
    """An RDB storage that several processes may open at the same moment.

    Optuna creates its tables on first use, one by one; two processes opening an empty
    database together both try, and the later one fails: on PostgreSQL with a unique
    violation or a duplicate table (the ``studydirection`` enum, ``alembic_version``), on
    SQLite with "table ... already exists" (two drivers started together, or a monitor
    reading a run that is starting). The other process is creating the schema: wait a
    moment and open it again.
    """
    import time

    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for pause in (0.5, 1.0, 1.5):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except (IntegrityError, ProgrammingError):
            time.sleep(pause)
        except OperationalError as exc:
            if "already exists" not in str(exc):
                raise
            time.sleep(pause)
    return optuna.storages.RDBStorage(url, **kwargs)


def _fast_sqlite(storage: optuna.storages.RDBStorage) -> optuna.storages.RDBStorage:
    """SQLite in write-ahead-log mode with ``synchronous=NORMAL``.

    Optuna commits once per suggested parameter (72 per trial for hrnet_lite), and each
    commit of SQLite's default rollback journal waits for the disk: about 16 ms apiece
    here, over a second per trial. With a write-ahead log a commit is an append, synced at
    checkpoints; a killed process loses nothing committed, and a power cut can lose at most
    the last commits, never the file's consistency.
    """
    from sqlalchemy import event

    @event.listens_for(storage.engine, "connect")
    def _pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    storage.engine.dispose()  # the connections opened so far lack the pragmas
    return storage


def masked_url(url: str) -> str:
    """``url`` with its password, if any, shown as ``***``."""
    if "://" not in url:
        return url
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: show no part after the scheme
        return url.split("://", 1)[0] + "://***"


def _storage_fix(url: str, exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ModuleNotFoundError) or "No module named" in text:
        if url.startswith("postgresql"):
            return "install the PostgreSQL driver: pip install 'nasfuse[postgres]'"
        return f"install the database driver this URL needs ({exc})"
    if url.startswith("sqlite") or "://" not in url:
        return "check that the file's folder exists and is writable"
    return "check that the server runs and the URL's host, port, database, user and password"


def check_storage(url: str) -> optuna.storages.BaseStorage:
    """Open the storage at ``url`` and read its studies, or raise one clear ``ValueError``.

    Called before any training, so a wrong URL, a server that is down or a missing database
    driver is reported at once, with the URL (its password masked) and the fix.
    """
    try:
        storage = open_storage(url)
        optuna.get_all_study_summaries(storage)
    except Exception as exc:  # any failure to reach the storage is the user's to fix
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "://" in url:
            from sqlalchemy.engine import make_url

            try:
                password = make_url(url).password
            except Exception:
                password = None
            if password:
                reason = reason.replace(str(password), "***")
        raise ValueError(
            f"storage {masked_url(url)} cannot be opened ({type(exc).__name__}: {reason[:300]}); "
            f"{_storage_fix(url, exc)}"
        ) from exc
    return storage


def load_search_study(
    run_dir: str | Path, storage: str | None = None, study_name: str | None = None
) -> optuna.Study:
    """Open the study of a finished or running search (no sampler needed to read it)."""
    run_dir = Path(run_dir)
    url = storage_url(run_dir, storage)
    if storage is None and not (run_dir / STUDY_FILE).is_file():
        raise FileNotFoundError(f"{run_dir / STUDY_FILE}: no Optuna study in this run directory")
    storage_obj = open_storage(url)
    if study_name is None:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage_obj)]
        if len(names) != 1:
            raise ValueError(
                f"{url}: holds {len(names)} studies ({', '.join(names) or 'none'}); name one"
            )
        study_name = names[0]
    return optuna.load_study(study_name=study_name, storage=storage_obj)


def trial_status(trial: optuna.trial.FrozenTrial) -> str:
    """What happened to a trial, read from its ``status`` attribute and its state together.

    A driver sets the attribute just before it tells the trial: a trial still RUNNING (or
    WAITING) is open whatever it says, and one failed with a status that needs COMPLETE (its
    driver was killed in between, and another failed it) or with none was cut short.
    """
    state = trial.state
    if state == optuna.trial.TrialState.RUNNING:
        return "running"
    if state == optuna.trial.TrialState.WAITING:
        return "waiting"
    status = trial.user_attrs.get("status")
    if state == optuna.trial.TrialState.COMPLETE:
        return str(status or "evaluated")
    if status is None or status in _COMPLETE_STATUSES:
        return "interrupted"
    return str(status)


def record_from_trial(trial: optuna.trial.FrozenTrial) -> TrialRecord:
    """Flatten one trial; trials of states other than COMPLETE have no objective values."""
    attrs: Mapping[str, Any] = trial.user_attrs
    status = trial_status(trial)
    values = trial.values if trial.state == optuna.trial.TrialState.COMPLETE else None
    feasible = all(v <= 0.0 for v in trial.constraints.values())
    return TrialRecord(
        number=trial.number,
        status=str(status),
        arch={str(k): str(v) for k, v in trial.params.items()},
        arch_hash=str(attrs.get("arch_hash", "")),
        accuracy=float(values[0]) if values else None,
        latency_ms=float(values[1]) if values else None,
        params=int(attrs["params"]) if attrs.get("params") is not None else None,
        flops=int(attrs["flops"]) if attrs.get("flops") is not None else None,
        feasible=feasible,
        duplicate_of=attrs.get("duplicate_of"),
        baseline=attrs.get("baseline"),
        baseline_kind=attrs.get("baseline_kind"),
        baseline_note=str(attrs.get("baseline_note") or ""),
        eval_samples=int(attrs["eval_samples"]) if attrs.get("eval_samples") else None,
    )


def trial_records(study: optuna.Study) -> list[TrialRecord]:
    """Every trial of the study as a :class:`TrialRecord`, by trial number."""
    return [record_from_trial(t) for t in study.get_trials(deepcopy=False)]


def front_records(records: list[TrialRecord]) -> list[TrialRecord]:
    """The Pareto-optimal records, one per architecture, by latency ascending.

    Only feasible trials with objective values take part; among trials of the same
    architecture (a cached repeat and its original) the first one stands for both.
    """
    from nasfuse.search._pareto import pareto_front

    unique: dict[str, TrialRecord] = {}
    for record in records:
        if record.on_objectives and record.arch_hash not in unique:
            unique[record.arch_hash] = record
    candidates = list(unique.values())
    points = [(r.accuracy, r.latency_ms) for r in candidates]
    return [candidates[i] for i in pareto_front(points)]  # type: ignore[misc]
