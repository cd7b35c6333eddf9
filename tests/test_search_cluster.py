"""The search with the real things, on loopback only: a Ray cluster, a PostgreSQL server.

- A Ray head (``ray start --head``, its own temp dir, stopped by PID) inside a network
  namespace that has only loopback (Ray advertises the machine's address otherwise): a small
  ``nasfuse search --ray-address`` runs its trials there, and ``--num-cpus`` sizes a local Ray.
- A PostgreSQL server (``initdb`` into a temporary folder as the ``postgres`` user,
  ``listen_addresses=127.0.0.1``): two drivers search one study at once and end with exactly
  the trials asked for, no architecture evaluated twice and no live driver's trial failed.

Both need root (the namespace, the ``postgres`` user) and Debian's ``postgresql``, which
``.ci/run`` installs: under ``CI=true`` a missing piece fails the test instead of skipping it.
The storage and address checks that refuse before any training are fast and always run.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest

REPO = Path(__file__).parent.parent
TINY_RESNET = REPO / "tests" / "fixtures" / "tiny_resnet.yaml"
OPS = ["add", "concat"]
# 2**20 architectures: the drivers' samplers are not expected to repeat one by chance.
WIDE_SITES = {f"stage{i // 5}.s{i}": list(OPS) for i in range(20)}


def _require(present: Any, what: str) -> None:
    """Skip without ``what``; under CI (which installs everything) fail instead."""
    if present:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what}: CI must provide it (see .ci/run)")
    pytest.skip(what)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def _kill_tree(process: subprocess.Popen, sig: int = signal.SIGTERM, wait: float = 30) -> None:
    """Stop ``process`` by its PID (and whatever it started that outlives it)."""
    __import__("ray")  # puts the psutil Ray ships on the path
    import psutil

    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        process.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


# -- refused before any training (fast) --------------------------------------------------


def _search_argv(out: Path, *extra: str) -> list[str]:
    return [
        "search", "--space", str(TINY_RESNET), "--budget", "quick", "--epochs", "1",
        "--trials", "4", "--threads", "1", "--out", str(out), *extra,
    ]  # fmt: skip


def _refused_search_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    """What ``nasfuse search ... EXTRA`` prints when it fails (exit code 2) before training."""
    from nasfuse.cli import main

    assert main(_search_argv(tmp_path / "run", *extra)) == 2
    assert not (tmp_path / "run" / "supernet").exists()  # nothing was trained
    return capsys.readouterr().err.strip()


def test_a_storage_that_cannot_be_opened_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://alice:s3cret@127.0.0.1:{_free_port()}/nas"
    err = _refused_search_error(tmp_path, capsys, "--storage", url)
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "postgresql://alice:***@127.0.0.1" in err and "s3cret" not in err
    assert "check that the server runs" in err


def test_a_journal_file_in_a_missing_folder_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "no" / "such" / "study.log"
    err = _refused_search_error(tmp_path, capsys, "--storage", str(journal))
    assert str(journal) in err and "folder exists" in err


def test_a_ray_address_nothing_listens_on_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{_free_port()}"
    err = _refused_search_error(tmp_path, capsys, "--ray-address", address)
    assert f"cannot join the Ray cluster at {address}" in err and "Traceback" not in err


def test_validate_supernet_refuses_a_dead_ray_address_before_scoring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nasfuse.cli import main

    address = f"127.0.0.1:{_free_port()}"
    argv = ["validate-supernet", "--run", str(tmp_path), "--ray-address", address]
    assert main(argv) == 2
    assert f"cannot join the Ray cluster at {address}" in capsys.readouterr().err


def test_a_missing_postgresql_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from nasfuse.search import _study

    def no_driver(url: str) -> None:
        raise ModuleNotFoundError("No module named 'psycopg'")

    monkeypatch.setattr(_study, "open_storage", no_driver)
    with pytest.raises(ValueError) as refused:
        _study.check_storage("postgresql://bob:hunter2@db.example:5432/nas")
    message = str(refused.value)
    assert message.startswith("storage postgresql://bob:***@db.example:5432/nas cannot be opened")
    assert "pip install 'nasfuse[postgres]'" in message and "hunter2" not in message


def test_the_password_is_masked_in_storage_urls() -> None:
    from nasfuse.search._study import masked_url

    assert masked_url("postgresql://u:p%40ss@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert masked_url("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"
    assert masked_url("runs/study.log") == "runs/study.log"


# -- a Ray cluster ------------------------------------------------------------------------


@pytest.fixture
def loopback_netns() -> Iterator[str]:
    """A network namespace with only loopback, deleted afterwards."""
    _require(os.geteuid() == 0, "a network namespace needs root")
    _require(shutil.which("ip"), "iproute2's ip is needed for a loopback-only namespace")
    name = f"nasfuse-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.mark.slow
def test_search_runs_its_trials_on_a_joined_cluster_and_num_cpus_sizes_a_local_ray(
    loopback_netns: str, tmp_path: Path
) -> None:
    ray_cli = Path(sys.executable).parent / "ray"
    _require(ray_cli.is_file(), f"{ray_cli} (Ray's command line) is needed")
    netns = ["ip", "netns", "exec", loopback_netns]
    temp_dir = Path(tempfile.mkdtemp(prefix="nfray-"))  # short: Ray's socket paths are
    head_log = tmp_path / "head.log"
    port = 6380  # the namespace has no other servers
    with head_log.open("w") as log:
        head = subprocess.Popen(
            [
                *netns,
                str(ray_cli),
                "start",
                "--head",
                "--port",
                str(port),
                "--num-cpus",
                "2",
                "--temp-dir",
                str(temp_dir),
                "--node-ip-address",
                "127.0.0.1",
                "--include-dashboard=false",
                "--disable-usage-stats",
                "--block",
            ],  # fmt: skip
            env=_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in head_log.read_text():
            assert head.poll() is None and time.monotonic() < deadline, head_log.read_text()
            time.sleep(0.5)
        # A cluster with token authentication (Ray's default) is joined with the token
        # mode set, as the README says.
        joined = subprocess.run(
            [
                *netns,
                sys.executable,
                "-m",
                "nasfuse",
                *_search_argv(tmp_path / "joined", "--ray-address", f"127.0.0.1:{port}"),
            ],  # fmt: skip
            env=_env(RAY_AUTH_MODE="token"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert joined.returncode == 0, joined.stderr[-3000:]
        assert f"ray: joined the cluster at 127.0.0.1:{port} (2 CPUs on 1 node(s))" in (
            joined.stdout
        )
        # The cluster's own logs hold the search's driver (job 1) and the workers that ran
        # its trials for that job: the trials ran there, not in a Ray of the driver's.
        logs = temp_dir / "session_latest" / "logs"
        assert glob.glob(str(logs / "python-core-driver-01000000*.log"))
        assert glob.glob(str(logs / "worker-*-01000000-*.out"))
        study = optuna.load_study(
            study_name="nasfuse", storage=f"sqlite:///{tmp_path / 'joined' / 'study.db'}"
        )
        assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 4

        # Without an address, --num-cpus sizes the local Ray the search starts (and stops).
        local = tmp_path / "local"
        local.mkdir()
        shutil.copy(tmp_path / "joined" / "latency_table.json", local / "latency_table.json")
        supernet = tmp_path / "joined" / "supernet" / "supernet.pt"
        alone = subprocess.run(
            [
                *netns,
                sys.executable,
                "-m",
                "nasfuse",
                *_search_argv(local, "--num-cpus", "1", "--supernet", str(supernet)),
            ],  # fmt: skip
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert alone.returncode == 0, alone.stderr[-3000:]
        line = next(x for x in alone.stdout.splitlines() if x.startswith("ray: "))
        assert line.startswith("ray: started a local Ray at 127.0.0.1:"), line
        assert line.endswith("(1 CPUs on 1 node(s))"), line
        assert not glob.glob(str(logs / "python-core-driver-02000000*.log"))  # not joined
    finally:
        _kill_tree(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


# -- a PostgreSQL server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of its own on 127.0.0.1 (trust authentication), stopped by PID."""
    initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    _require(initdb, "PostgreSQL is needed (apt-get install postgresql)")
    _require(os.geteuid() == 0 and shutil.which("runuser"), "starting PostgreSQL needs root")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        _require(False, "the postgres user is needed (apt-get install postgresql)")
    _require(
        __import__("importlib").util.find_spec("psycopg"),
        "psycopg is needed: pip install -e '.[postgres]'",
    )
    bindir = Path(initdb[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="nfpg-"))  # under /tmp, which postgres can reach
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    for path in (root, sockets):
        shutil.chown(path, "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_postgres, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U",
         "postgres", "--no-sync", "-E", "UTF8"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = _free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off"
    subprocess.run(
        [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"),
         "-w", "-t", "60", "-o", options, "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    pid = int((data / "postmaster.pid").read_text().split()[0])
    try:
        # The password is not checked (trust) but shows that the URL's is masked.
        yield f"postgresql://postgres:unused@127.0.0.1:{port}/postgres"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)  # fast shutdown
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        shutil.rmtree(root, ignore_errors=True)


def run_driver(url: str, run_dir: str, n_trials: int, log: str) -> None:
    """One driver of the shared study (run in a subprocess by the test below)."""
    from nasfuse.search import SyntheticCosts, SyntheticEvaluator, search_architectures

    search_architectures(
        sites=WIDE_SITES,
        evaluator=SyntheticEvaluator(OPS, log_path=log, seconds=1.0),
        costs=SyntheticCosts(OPS),
        run_dir=run_dir,
        n_trials=n_trials,
        population_size=4,
        storage=url,
        study_name="shared",
        resume=True,  # whichever comes first creates the study, the other joins it
        concurrency=1,
        num_cpus=1,
        progress=False,
    )


_DRIVER = """
import sys
sys.path.insert(0, {tests!r})
from test_search_cluster import run_driver
run_driver({url!r}, {run_dir!r}, {n}, {log!r})
"""


@pytest.mark.slow
def test_two_drivers_search_one_postgresql_study_at_once(postgres_url: str, tmp_path: Path) -> None:
    from nasfuse.search._study import record_from_trial

    n_trials = 12
    log = tmp_path / "evaluations.log"
    drivers: list[subprocess.Popen] = []
    try:
        for name in ("a", "b"):
            code = _DRIVER.format(
                tests=str(Path(__file__).parent),
                url=postgres_url,
                run_dir=str(tmp_path / name),
                n=n_trials,
                log=str(log),
            )
            drivers.append(
                subprocess.Popen(
                    [sys.executable, "-c", code],
                    env=_env(),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        outputs = [driver.communicate(timeout=300) for driver in drivers]
    finally:
        for driver in drivers:
            if driver.poll() is None:
                _kill_tree(driver, signal.SIGKILL)
    for driver, (_, err) in zip(drivers, outputs, strict=True):
        assert driver.returncode == 0, err[-3000:]

    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials()
    statuses = Counter(record_from_trial(t).status for t in trials)
    counted = statuses["evaluated"] + statuses["cached"] + statuses["infeasible"]
    assert counted + statuses["failed"] == n_trials, statuses
    assert statuses["interrupted"] == 0, statuses  # neither failed the other's live trial
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    evaluations = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert max(evaluations.values()) == 1, evaluations  # no architecture evaluated twice
    assert len(evaluations) == statuses["evaluated"]
    # Both drivers evaluated, and at the same time.
    spans: dict[str, list[float]] = {}
    for trial in trials:
        if record_from_trial(trial).status == "evaluated":
            spans.setdefault(trial.user_attrs["driver"], []).extend(
                [trial.datetime_start.timestamp(), trial.datetime_complete.timestamp()]
            )
    assert len(spans) == 2, spans.keys()
    (a_start, a_end), (b_start, b_end) = ((min(s), max(s)) for s in spans.values())
    assert a_start < b_end and b_start < a_end


@pytest.mark.slow
def test_a_second_search_of_a_postgresql_study_without_resume_is_refused_before_training(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nasfuse.cli import main

    optuna.create_study(
        storage=postgres_url, study_name="taken", directions=["maximize", "minimize"]
    )
    argv = _search_argv(tmp_path / "run", "--storage", postgres_url, "--study-name", "taken")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "already holds study 'taken'" in err and "--resume" in err
    assert "postgres:***@127.0.0.1" in err and "unused" not in err
    assert not (tmp_path / "run" / "supernet").exists()
