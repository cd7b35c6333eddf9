"""One process per run directory: ``nasfuse.lock``, held while a run writes there.

``search``, ``train-supernet`` and ``retrain`` take the lock before anything else (before
loading data or training), so a second process pointed at the same ``--out`` is refused at
once with one line naming the directory and the holder, instead of training for minutes
and then overwriting, or refusing on, the first one's files.

Why ``fcntl.flock`` and not a file created with ``O_CREAT | O_EXCL``: the kernel drops a
flock when its holder dies, however it dies (SIGKILL, the OOM killer, a native crash), so a
killed run never leaves a lock that blocks the next one; an ``O_EXCL`` file would stay
behind, and telling it stale would rest on the recorded PID alone, which the system may
have given to another process since. The file still records the holder's PID, host and
start time, for the refusal's message and to recognise a stale lock: one left by a killed
run is taken over with a warning. A lock whose recorded holder is dead on this host but
that is still held (a child the holder forked, such as a data-loader worker, outlived it
with the descriptor) is stale too: the file is replaced and the new one locked.

The lock is released (the file removed) when the block ends: normally, on an error, on
Ctrl-C. Example::

    with lock_run_dir("runs/x", "search"):
        ...  # write into runs/x
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["LOCK_FILE", "RunDirLockedError", "lock_run_dir", "read_lock_holder"]

LOCK_FILE = "nasfuse.lock"


class RunDirLockedError(RuntimeError):
    """Another live process holds the run directory's lock."""


def read_lock_holder(path: str | Path) -> dict[str, Any]:
    """The holder recorded in a lock file (``pid``, ``host``, ``started``, ``command``);
    ``{}`` when the file is missing, empty or unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process (its lock file is still being written)"
    command = holder.get("command") or "a nasfuse run"
    return (
        f"nasfuse {command} (PID {holder.get('pid')} on host {holder.get('host')}, "
        f"started {holder.get('started')})"
    )


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _dead_here(holder: dict[str, Any]) -> bool:
    """The recorded holder ran on this host and is gone."""
    return holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid"))


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _acquire(path: Path, command: str) -> int:
    """Lock ``path``; the locked file's descriptor."""
    for _ in range(20):  # retried only when another process replaced or removed the file
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise OSError(exc.errno, exc.strerror, str(path)) from exc
            holder = read_lock_holder(path)
            if holder and _dead_here(holder):
                _warn(
                    f"{path.parent}: the lock of {_describe(holder)} is still held by a "
                    "process it left behind, but it is gone; taking the directory over"
                )
                # Only the file just found locked: another process may have replaced it.
                if _same_file(fd, path):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                os.close(fd)
                continue
            os.close(fd)
            raise RunDirLockedError(
                f"{path.parent} is in use by {_describe(holder)}; wait for it to finish "
                f"or stop it, or choose another --out (lock file {path})"
            ) from None
        if not _same_file(fd, path):  # removed by its releasing holder, or replaced
            os.close(fd)
            continue
        previous = read_lock_holder(path)
        if previous and previous.get("pid") != os.getpid():
            _warn(
                f"{path.parent}: taking over the stale lock of {_describe(previous)}; that "
                "run ended without releasing it (killed?)"
            )
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "command": command,
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
            os.fsync(fd)
        except OSError as exc:  # a full disk: let go, and name the file
            os.close(fd)
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        return fd
    raise RunDirLockedError(f"{path.parent}: its lock file {path} keeps changing; try again")


@contextlib.contextmanager
def lock_run_dir(run_dir: str | Path, command: str) -> Iterator[Path]:
    """Hold ``run_dir/nasfuse.lock`` for the block (the directory is created if needed).

    Args:
        run_dir: the run directory.
        command: what holds it, for the message another process prints (``"search"``).

    Yields:
        The lock file's path.

    Under ``torchrun`` only rank 0 takes the lock (the other ranks write nothing).

    Raises:
        RunDirLockedError: a live process holds the lock; the message names the directory
            and the holder (PID, host, start time).
    """
    path = Path(run_dir) / LOCK_FILE
    if int(os.environ.get("RANK", "0")) != 0:
        yield path  # under torchrun only rank 0 writes files, so only it holds the lock
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path, command)
    try:
        yield path
    finally:
        # Removed while still locked, so a process that opens the path from now on
        # creates a new file; one that opened the old file sees it was removed and retries.
        with contextlib.suppress(OSError):
            if _same_file(fd, path):
                path.unlink()
        os.close(fd)
