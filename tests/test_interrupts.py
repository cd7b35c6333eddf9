"""Ctrl-C and SIGKILL mid-epoch of ``train-supernet`` and mid-search of ``search``, then
``--resume`` (issue 19).

Each case runs the command in a subprocess in its own session, on the tiny ResNet space and
the digits data, interrupts it, and checks what a user is left with: the exit code (130
for Ctrl-C), no traceback and one line saying how to resume, every output written before
the interruption byte-identical or replaced by a valid newer one (never a torn file), no
process of that run left behind (found by a marker in their environment, which every
process the run starts, Ray's included, inherits), and a ``--resume`` that completes.

Ctrl-C is sent as a terminal sends it: SIGINT to the whole process group, so Ray's
processes get it too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from live_study import trials_in_state

from nasfuse.files import load_checkpoint
from nasfuse.run_lock import LOCK_FILE

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
TINY_RESNET = REPO / "tests" / "fixtures" / "tiny_resnet.yaml"
MARKER = "NASFUSE_INTERRUPT_TEST"


def _marked_processes(tag: str) -> list[int]:
    """PIDs of the processes whose environment holds ``MARKER=tag``: the run's own."""
    wanted = f"{MARKER}={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry}/environ", "rb") as handle:
            if wanted in handle.read().split(b"\0"):
                found.append(int(entry))
    return found


@pytest.fixture
def run_tag() -> Iterator[str]:
    """A tag for this test's processes (``<tag>-resumed`` for the resumed run's); any left
    at the end are killed, by PID."""
    tag = uuid.uuid4().hex
    yield tag
    for pid in _marked_processes(tag) + _marked_processes(f"{tag}-resumed"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _env(tag: str) -> dict[str, str]:
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, MARKER: tag}


def _nasfuse(argv: list[str], tag: str) -> dict[str, Any]:
    """How the tests run ``nasfuse ARGV`` for the run tagged ``tag``: its command line,
    its marked environment, its stderr kept (as text) and its stdout dropped."""
    return {
        "args": [sys.executable, "-m", "nasfuse", *argv],
        "env": _env(tag),
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.PIPE,
        "text": True,
    }


def _start(argv: list[str], tag: str) -> subprocess.Popen:
    # its own process group, as a command in a terminal
    return subprocess.Popen(**_nasfuse(argv, tag), start_new_session=True)


def _run(argv: list[str], tag: str) -> subprocess.CompletedProcess:
    return subprocess.run(**_nasfuse(argv, tag), timeout=240)


def _wait_until(condition: Callable[[], bool], process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended first: {process.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "the run did not get there in time"
        time.sleep(0.2)


def _interrupt(process: subprocess.Popen, how: str) -> str:
    """Ctrl-C (SIGINT to the process group) or SIGKILL; the run's stderr."""
    try:
        if how == "sigint":
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.kill()
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return err


def _check_interrupted(process: subprocess.Popen, how: str, err: str) -> None:
    if how == "sigint":
        assert process.returncode == 130, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        resume_lines = [line for line in err.splitlines() if "--resume" in line]
        assert len(resume_lines) == 1 and resume_lines[0] == err.strip().splitlines()[-1], err
        assert "interrupted" in resume_lines[0]
    else:
        assert process.returncode == -signal.SIGKILL


# After a SIGKILL nothing runs in the driver to stop Ray: its GCS server and raylet die with
# it (Ray starts them with a parent-death signal), but the workers and agents the raylet
# started exit only when they notice it is gone, which took from 2 s to over 40 s here on a
# loaded machine (a worker still starting up, the dashboard and runtime-env agents). So
# after a SIGKILL only the driver, the GCS server and the raylet are required gone; the
# fixture kills the rest by PID.
_DIE_WITH_THE_DRIVER = ("gcs_server", "raylet")


def _command(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def _dies_with_the_driver(command: list[str]) -> bool:
    return command[1:3] == ["-m", "nasfuse"] or Path(command[0]).name in _DIE_WITH_THE_DRIVER


def _processes_left(tag: str, timeout: float, killed: bool = False) -> list[str]:
    """Command lines of the run's processes still alive after up to ``timeout`` s (with
    ``killed``, only those that die with the driver)."""
    deadline = time.monotonic() + timeout
    while True:
        left = [_command(pid) for pid in _marked_processes(tag)]
        left = [c for c in left if c and (not killed or _dies_with_the_driver(c))]
        if not left or time.monotonic() > deadline:
            return [" ".join(c)[:200] for c in left]
        time.sleep(0.5)


def _no_torn_files(folder: Path) -> None:
    assert not [p for p in folder.rglob(".*.tmp")], "a half-written file was left behind"


@pytest.mark.parametrize("how", ["sigint", "sigkill"])
def test_train_supernet_interrupted_mid_epoch_then_resumed(tmp_path, run_tag, how) -> None:
    out = tmp_path / "run"
    checkpoint = out / "supernet.pt"
    argv = [
        "train-supernet", "--space", str(TINY_RESNET), "--epochs", "4", "--threads", "1",
        "--no-progress", "--out", str(out), "eval_archs=0",
    ]  # fmt: skip
    process = _start(argv, run_tag)
    _wait_until(checkpoint.is_file, process, timeout=120)
    before = checkpoint.read_bytes()  # the first epoch's (written atomically: whole)
    time.sleep(0.3)  # into the second epoch
    err = _interrupt(process, how)
    _check_interrupted(process, how, err)
    assert _processes_left(run_tag, timeout=10) == []
    after = checkpoint.read_bytes()
    if after != before:  # a newer epoch finished in between: it must be whole
        assert load_checkpoint(checkpoint, kind="supernet")["epoch"] > 1
    _no_torn_files(out)
    assert (out / LOCK_FILE).exists() == (how == "sigkill")  # a SIGKILL cannot clean up

    resumed = _run([*argv, "--resume"], f"{run_tag}-resumed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stderr
    assert ("taking over the stale lock" in resumed.stderr) == (how == "sigkill")
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 4
    assert not (out / LOCK_FILE).exists()
    _no_torn_files(out)


@pytest.mark.parametrize("how", ["sigint", "sigkill"])
def test_search_interrupted_mid_search_then_resumed(tmp_path, run_tag, how) -> None:
    import optuna

    out = tmp_path / "run"
    argv = [
        "search", "--space", str(TINY_RESNET), "--set", "width_mult=1.0", "--budget", "quick",
        "--epochs", "1", "--sampler", "random", "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    process = _start([*argv, "--trials", "40"], run_tag)
    # Mid-search: the first trials are being evaluated.
    _wait_until(lambda: trials_in_state(out, "RUNNING") >= 1, process, timeout=240)
    time.sleep(1.0)
    kept = ("supernet/supernet.pt", "latency_table.json", "search_config.yaml")
    before = {name: (out / name).read_bytes() for name in kept}
    err = _interrupt(process, how)
    _check_interrupted(process, how, err)
    # Ray's processes of this run (GCS, raylet, workers, agents) are gone, not only the driver.
    assert _processes_left(run_tag, timeout=10, killed=how == "sigkill") == []
    assert {name: (out / name).read_bytes() for name in kept} == before
    assert not (out / "best.yaml").exists()  # an interrupted search exports nothing
    _no_torn_files(out)
    storage = f"sqlite:///{out / 'study.db'}"
    study = optuna.load_study(study_name="nasfuse", storage=storage)  # a whole database
    counted = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    assert counted < 40
    if how == "sigint":  # the trials in flight were marked, not left running
        assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))

    resumed = _run([*argv, "--trials", str(counted + 1), "--resume"], f"{run_tag}-resumed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stderr
    assert ("taking over the stale lock" in resumed.stderr) == (how == "sigkill")
    assert (out / "best.yaml").is_file() and not (out / LOCK_FILE).exists()
    study = optuna.load_study(study_name="nasfuse", storage=storage)
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == counted + 1
    for name in kept[:2]:  # reused as they were (the config records the new trial count)
        assert (out / name).read_bytes() == before[name], name
    assert _processes_left(f"{run_tag}-resumed", timeout=10) == []  # a finished search
