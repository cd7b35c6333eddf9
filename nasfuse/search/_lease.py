"""Driver leases: which search drivers of a study are alive, so only orphans are failed.

Several ``nasfuse search`` drivers may share one study (a server RDB or a journal file).
Each driver writes a lease into the study's user attributes (``driver:<id>`` -> host, PID,
time of its last beat) and renews it from a thread every ``interval`` seconds; every trial
it runs carries its id in the user attribute ``driver``. A RUNNING trial is an orphan, to
be failed and re-run, only when its driver is gone: its lease says it ended, its beat is
older than ``grace`` seconds, or it ran on this host under a PID that no longer exists (a
killed driver is seen at once there, without waiting out the grace period).

This serves every Optuna storage alike through the public study API (Optuna's own RDB
heartbeat is per trial, needs the storage's private trial ids and is meant for
``Study.optimize``; the journal storage has none).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["DriverLease", "LEASE_PREFIX", "DRIVER_ATTR"]

LEASE_PREFIX = "driver:"
DRIVER_ATTR = "driver"
DEFAULT_INTERVAL = 10.0
DEFAULT_GRACE = 60.0


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


class DriverLease:
    """This driver's lease on ``study`` (see the module doc).

    Args:
        study: the shared study.
        interval: seconds between beats.
        grace: a lease not renewed for this long belongs to a driver that is gone.

    Example:
        >>> with DriverLease(study) as lease:
        ...     trial.set_user_attr("driver", lease.driver_id)
    """

    def __init__(
        self,
        study: optuna.Study,
        interval: float = DEFAULT_INTERVAL,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        self.study = study
        self.interval = float(interval)
        self.grace = max(float(grace), 2 * self.interval)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.driver_id = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def key(self) -> str:
        return LEASE_PREFIX + self.driver_id

    def renew(self, ended: bool = False) -> None:
        """Write the lease now (``ended``: this driver is done)."""
        self.study.set_user_attr(
            self.key,
            {"host": self.host, "pid": self.pid, "beat": time.time(), "ended": ended},
        )

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            # A storage hiccup must not kill the driver; the next beat retries.
            with contextlib.suppress(Exception):
                self.renew()

    def start(self) -> DriverLease:
        self.renew()
        self._thread = threading.Thread(target=self._beat, name="nasfuse-lease", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating and mark the lease ended (this driver's trials are all told)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with contextlib.suppress(Exception):
            self.renew(ended=True)

    def __enter__(self) -> DriverLease:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reading the others' leases ------------------------------------------------------

    def _is_live(self, lease: Any, now: float) -> bool:
        if not isinstance(lease, Mapping) or lease.get("ended"):
            return False
        if now - float(lease.get("beat", 0.0)) > self.grace:
            return False
        return not (lease.get("host") == self.host and not _pid_exists(int(lease.get("pid", 0))))

    def live_drivers(self, user_attrs: Mapping[str, Any] | None = None) -> set[str]:
        """Ids of the drivers whose lease is live (this one included)."""
        attrs = self.study.user_attrs if user_attrs is None else user_attrs
        now = time.time()
        live = {
            key[len(LEASE_PREFIX) :]
            for key, lease in attrs.items()
            if key.startswith(LEASE_PREFIX) and self._is_live(lease, now)
        }
        live.add(self.driver_id)
        return live

    def others_live(self) -> bool:
        """Whether another driver holds a live lease on the study."""
        return bool(self.live_drivers() - {self.driver_id})

    def orphans(self, trials: list[FrozenTrial], live: set[str] | None = None) -> list[FrozenTrial]:
        """The RUNNING trials whose driver is gone.

        A RUNNING trial without a driver (one a driver has just asked and not yet tagged,
        or one of a search that predates leases) is an orphan once it is older than the
        grace period, or at once when no other driver is live.
        """
        live = self.live_drivers() if live is None else live
        alone = live == {self.driver_id}
        now = time.time()
        found = []
        for trial in trials:
            if trial.state != TrialState.RUNNING:
                continue
            owner = trial.user_attrs.get(DRIVER_ATTR)
            if owner is None:
                started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
                if alone or now - started > self.grace:
                    found.append(trial)
            elif owner not in live:
                found.append(trial)
        return found
