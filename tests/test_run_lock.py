"""The run-directory lock (issue 19): a second process on a run directory is refused at
once, naming the directory and the holder; a killed holder's lock is taken over with a
warning; the lock goes when its block ends, however it ends."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nasfuse.run_lock import LOCK_FILE, RunDirLockedError, lock_run_dir, read_lock_holder

REPO = Path(__file__).resolve().parent.parent
TINY_RESNET = REPO / "tests" / "fixtures" / "tiny_resnet.yaml"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}

# Takes the lock, says so, and holds it; with "fork", a forked child keeps the descriptor
# (as a data-loader worker would) while the holder itself exits. The module is loaded from
# its file, without the package (and torch): it needs only the standard library.
_HOLDER = """
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location("run_lock", sys.argv[3])
run_lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_lock)
with run_lock.lock_run_dir(sys.argv[1], "search"):
    if sys.argv[2] == "fork":
        child = os.fork()
        if child == 0:
            time.sleep(120)
            os._exit(0)
        print(child, flush=True)
        os._exit(0)
    print("held", flush=True)
    time.sleep(120)
"""


def _start_holder(run_dir: Path, mode: str = "hold") -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(run_dir), mode, str(REPO / "nasfuse" / "run_lock.py")],
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline().strip()
    assert line, "the holder did not start"
    return process, line


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen]]:
    run_dir = tmp_path / "run"
    process, _ = _start_holder(run_dir)
    try:
        yield run_dir, process
    finally:
        process.kill()
        process.wait()


def test_a_second_process_is_refused_with_the_holder_named(holder) -> None:
    run_dir, process = holder
    with pytest.raises(RunDirLockedError) as caught, lock_run_dir(run_dir, "retrain"):
        pass
    message = str(caught.value)
    assert str(run_dir) in message and f"PID {process.pid}" in message
    assert socket.gethostname() in message and "nasfuse search" in message
    assert read_lock_holder(run_dir / LOCK_FILE)["pid"] == process.pid  # left as it was


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        ("train-supernet", "--space", str(TINY_RESNET), "--epochs", "1"),
        ("retrain", "{arch}", "--epochs", "1"),
        ("search", "--space", str(TINY_RESNET), "--budget", "quick", "--epochs", "1"),
    ],
    ids=["train-supernet", "retrain", "search"],
)
def test_the_cli_refuses_a_locked_run_dir_before_any_work(holder, tmp_path, command) -> None:
    from nasfuse.arch import save_arch
    from nasfuse.spaces import load_space

    run_dir, process = holder
    arch = tmp_path / "all_add.yaml"
    space = load_space(TINY_RESNET)
    save_arch(space.uniform_arch("add"), arch, space)
    args = [a.format(arch=arch) for a in command]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "nasfuse", *args, "--threads", "1", "--out", str(run_dir)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"nasfuse {command[0]}: error: {run_dir} is in use by nasfuse search")
    assert f"PID {process.pid}" in line
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE]  # nothing written
    assert time.monotonic() - started < 60  # no data loaded, nothing trained


def test_the_lock_of_a_killed_run_is_taken_over_with_a_warning(tmp_path, capsys) -> None:
    run_dir = tmp_path / "run"
    process, _ = _start_holder(run_dir)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert read_lock_holder(run_dir / LOCK_FILE)["pid"] == process.pid  # left behind
    with lock_run_dir(run_dir, "train-supernet") as path:
        assert read_lock_holder(path)["pid"] == os.getpid()
        assert read_lock_holder(path)["command"] == "train-supernet"
    err = capsys.readouterr().err
    assert f"taking over the stale lock of nasfuse search (PID {process.pid}" in err
    assert not (run_dir / LOCK_FILE).exists()


def test_a_lock_held_by_an_orphan_of_a_dead_holder_is_taken_over(tmp_path, capsys) -> None:
    run_dir = tmp_path / "run"
    process, child = _start_holder(run_dir, "fork")
    process.wait()  # the holder is gone; its forked child still holds the descriptor
    try:
        with lock_run_dir(run_dir, "search") as path:
            assert read_lock_holder(path)["pid"] == os.getpid()
        assert f"(PID {process.pid} on host" in capsys.readouterr().err
    finally:
        os.kill(int(child), signal.SIGKILL)


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_the_lock_is_released_when_its_block_raises(tmp_path, capsys, error) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(error), lock_run_dir(run_dir, "search"):
        assert (run_dir / LOCK_FILE).is_file()
        raise error("stop")
    assert not (run_dir / LOCK_FILE).exists()
    with lock_run_dir(run_dir, "search"):  # free again, and not reported as stale
        pass
    assert capsys.readouterr().err == ""


def test_under_torchrun_only_rank_0_takes_the_lock(holder, monkeypatch) -> None:
    run_dir, _ = holder
    monkeypatch.setenv("RANK", "1")
    with lock_run_dir(run_dir, "train-supernet"):  # rank 1 writes nothing: no lock needed
        pass


def test_a_lock_file_of_junk_with_no_holder_is_taken(tmp_path, capsys) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK_FILE).write_bytes(b"\xff\x00 not json")
    with lock_run_dir(run_dir, "search") as path:
        assert read_lock_holder(path)["pid"] == os.getpid()
    assert not (run_dir / LOCK_FILE).exists()


def test_a_lock_path_that_cannot_be_opened_is_one_line(tmp_path, capsys) -> None:
    from nasfuse.cli import main

    run_dir = tmp_path / "run"
    (run_dir / LOCK_FILE).mkdir(parents=True)  # a directory where the lock file goes
    code = main(["train-supernet", "--space", str(TINY_RESNET), "--out", str(run_dir)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"nasfuse train-supernet: error: {run_dir / LOCK_FILE}: Is a directory")


def test_a_full_disk_while_writing_the_lock_names_it_and_lets_go(tmp_path, monkeypatch) -> None:
    import errno

    import nasfuse.run_lock as run_lock

    def no_space(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    run_dir = tmp_path / "run"
    monkeypatch.setattr(run_lock.os, "pwrite", no_space)
    with pytest.raises(OSError) as caught, lock_run_dir(run_dir, "search"):
        pass
    assert caught.value.filename == str(run_dir / LOCK_FILE)
    monkeypatch.undo()
    with lock_run_dir(run_dir, "search"):  # not held by the failed attempt
        pass
