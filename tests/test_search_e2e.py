"""End-to-end searches through Ray Tune (slow): outputs, study, dedup, constraints, failures,
resume after a kill, TensorBoard over HTTP, and the ``nasfuse search`` command on a tiny space.

One Ray session serves the whole module; the searches use the synthetic evaluator on the
tiny HRNet space (10 sites, add/concat), except the CLI test, which trains a real supernet.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
from live_study import trials_in_state

from nasfuse.search import (
    Constraints,
    SyntheticCosts,
    SyntheticEvaluator,
    export_run,
    search_architectures,
)

pytestmark = pytest.mark.slow

OPS = ["add", "concat"]
FIXTURES = Path(__file__).parent / "fixtures"
TINY_SPACE = FIXTURES / "tiny_hrnet.yaml"
# 2**20 architectures: a sampler that replays nothing is not expected to repeat any by chance.
WIDE_SITES = {f"stage{i // 5}.s{i}": list(OPS) for i in range(20)}


def _sites() -> dict[str, list[str]]:
    from nasfuse.spaces import load_space

    space = load_space(TINY_SPACE)
    return {name: list(site.ops) for name, site in space.sites.items()}


def _study_attrs() -> dict[str, Any]:
    from nasfuse.spaces import load_space

    space = load_space(TINY_SPACE)
    return {"space": str(TINY_SPACE.resolve()), "space_options": {}, "space_hash": space.hash}


def _search(run_dir: Path, n_trials: int, log: Path, **kwargs: Any) -> Any:
    sites = kwargs.pop("sites", None) or _sites()
    options: dict[str, Any] = {
        "sampler": "nsga2",
        "population_size": 4,
        "seed": 0,
        "progress": False,
        "study_attrs": _study_attrs(),
        "space_hash": _study_attrs()["space_hash"],
    }
    evaluator_options = kwargs.pop("evaluator_options", {})
    options.update(kwargs)
    return search_architectures(
        sites=sites,
        evaluator=SyntheticEvaluator(OPS, log_path=log, **evaluator_options),
        costs=SyntheticCosts(OPS),
        run_dir=run_dir,
        n_trials=n_trials,
        **options,
    )


def _logged_hashes(log: Path) -> list[str]:
    if not log.is_file():
        return []
    return [line.split()[0] for line in log.read_text().splitlines() if line.strip()]


def _study(run_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name="nasfuse", storage=f"sqlite:///{run_dir / 'study.db'}")


def _status_counts(study: optuna.Study) -> Counter:
    return Counter(t.user_attrs.get("status") for t in study.get_trials())


@pytest.fixture(scope="module")
def ray_session() -> Any:
    import ray

    from nasfuse.search import local_ray

    with local_ray(num_cpus=2):  # on 127.0.0.1, as the search starts it
        yield ray


@pytest.fixture(scope="module")
def finished_run(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run_dir = tmp_path_factory.mktemp("search")
    log = run_dir / "evaluations.log"
    stats = _search(run_dir, 12, log)
    best = export_run(run_dir)
    return {"run_dir": run_dir, "log": log, "stats": stats, "best": best}


def _csv_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "pareto.csv") as handle:
        return list(csv.DictReader(handle))


def test_search_writes_every_output(finished_run: dict[str, Any]) -> None:
    from nasfuse.arch import load_arch

    run_dir = finished_run["run_dir"]
    rows = _csv_rows(run_dir)
    assert rows
    arch_files = sorted((run_dir / "pareto").glob("*.yaml"))
    assert len(arch_files) == len(rows)
    for row in rows:
        arch, _space = load_arch(run_dir / row["file"])
        assert {s: arch[s] for s in _sites()} == {s: row[s] for s in _sites()}
    best_arch, _space = load_arch(finished_run["best"])
    import yaml

    metrics = yaml.safe_load(finished_run["best"].read_text())["metrics"]
    assert set(metrics) >= {"accuracy", "latency_ms", "params", "flops", "device", "pick"}
    assert metrics["device"] == "synthetic"
    assert best_arch in [load_arch(path)[0] for path in arch_files]
    report = (run_dir / "report.md").read_text()
    assert "## Pareto front" in report and "knee" in report
    assert "## Is fusion worth it here?" in report
    assert "| all-add | 0 | evaluated |" in report and "| all-concat | 1 |" in report
    # tiny_hrnet allows concat only where H*W <= 64: the report says where add stands in.
    assert "concat at the " in report and "add at the other" in report
    assert all(site in report for site in _sites())
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_the_search_starts_from_the_baselines_and_keeps_all_add_on_the_front(
    finished_run: dict[str, Any],
) -> None:
    from nasfuse.arch import arch_hash

    study = _study(finished_run["run_dir"])
    trials = study.get_trials()
    # tiny_hrnet: all-add, all-concat (concat only where H*W <= 64), two variants.
    names = [t.user_attrs.get("baseline") for t in trials[:4]]
    assert names[:2] == ["all-add", "all-concat"]
    assert all(n is not None and "@" in n for n in names[2:])
    assert all(t.user_attrs.get("baseline") is None for t in trials[4:])
    all_add = trials[0]
    assert set(all_add.params.values()) == {"add"}
    assert all_add.user_attrs["status"] == "evaluated"
    assert arch_hash(all_add.params) in _logged_hashes(finished_run["log"])
    front = {r["arch_hash"]: float(r["latency_ms"]) for r in _csv_rows(finished_run["run_dir"])}
    assert all_add.user_attrs["arch_hash"] in front
    assert min(front.values()) == pytest.approx(all_add.values[1])


def test_study_opens_and_its_best_trials_are_pareto_csv(finished_run: dict[str, Any]) -> None:
    run_dir = finished_run["run_dir"]
    study = _study(run_dir)
    statuses = _status_counts(study)
    assert sum(statuses[s] for s in ("evaluated", "cached", "infeasible", "failed")) == 12
    best = {t.user_attrs["arch_hash"]: tuple(t.values) for t in study.best_trials}
    rows = {
        r["arch_hash"]: (float(r["accuracy"]), float(r["latency_ms"])) for r in _csv_rows(run_dir)
    }
    assert set(best) == set(rows)
    for key, (accuracy, latency) in rows.items():
        assert best[key] == pytest.approx((accuracy, latency), abs=1e-6)


def test_no_architecture_is_evaluated_twice(finished_run: dict[str, Any]) -> None:
    study = _study(finished_run["run_dir"])
    logged = _logged_hashes(finished_run["log"])
    assert len(logged) == len(set(logged))
    evaluated = [
        t.user_attrs["arch_hash"]
        for t in study.get_trials()
        if t.user_attrs.get("status") == "evaluated"
    ]
    assert sorted(logged) == sorted(evaluated)
    # Cached trials repeat an evaluated architecture and carry its values.
    by_number = {t.number: t for t in study.get_trials()}
    for trial in study.get_trials():
        if trial.user_attrs.get("status") == "cached":
            original = by_number[trial.user_attrs["duplicate_of"]]
            assert original.user_attrs["arch_hash"] == trial.user_attrs["arch_hash"]
            assert original.values == trial.values


def test_the_summary_splits_the_stage_into_evaluation_and_driver_time(
    finished_run: dict[str, Any],
) -> None:
    stats = finished_run["stats"]
    study = _study(finished_run["run_dir"])
    measured = [
        t.user_attrs["eval_seconds"]
        for t in study.get_trials()
        if t.user_attrs.get("status") == "evaluated"
    ]
    assert stats.evaluations_started == len(measured) > 0
    # The stats add up what each trial measured of itself, nothing else.
    assert stats.evaluation_seconds == pytest.approx(sum(measured))
    assert 0 < stats.searcher_seconds < stats.wall_seconds
    assert 0 < stats.ray_start_seconds < stats.wall_seconds
    busy = stats.evaluation_seconds / stats.concurrency
    expected = (stats.wall_seconds - stats.ray_start_seconds - stats.waiting_seconds - busy) / len(
        measured
    )
    assert stats.driver_seconds_per_trial() == pytest.approx(max(expected, 0.0))
    text = stats.describe()
    assert text.startswith(f"search stage {stats.wall_seconds:.0f} s: ")
    assert f"{stats.evaluation_seconds:.0f} s evaluating" in text and "in the driver" in text


def test_the_sqlite_study_is_in_write_ahead_log_mode(finished_run: dict[str, Any]) -> None:
    import sqlite3

    # One commit per suggested parameter: with the default rollback journal each one
    # waits for the disk (the driver's largest cost per trial).
    with contextlib.closing(sqlite3.connect(finished_run["run_dir"] / "study.db")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_export_picks_again(finished_run: dict[str, Any], tmp_path: Path) -> None:
    import yaml

    run_dir = finished_run["run_dir"]
    path = export_run(run_dir, "max-acc", out=tmp_path / "fast.yaml")
    metrics = yaml.safe_load(path.read_text())["metrics"]
    assert metrics["accuracy"] == pytest.approx(
        max(float(r["accuracy"]) for r in _csv_rows(run_dir))
    )
    fastest = min(float(r["latency_ms"]) for r in _csv_rows(run_dir))
    with pytest.raises(ValueError, match="no architecture is within"):
        export_run(run_dir, f"max-latency={fastest / 2}", out=tmp_path / "none.yaml")
    # The synthetic evaluation reports no validation size, so there is no noise to pick by.
    with pytest.raises(ValueError, match="number of validation images"):
        export_run(run_dir, "within-noise", out=tmp_path / "noise.yaml")
    assert not (tmp_path / "noise.yaml").exists()


def test_constraints_prune_without_evaluation(ray_session: Any, tmp_path: Path) -> None:
    log = tmp_path / "evaluations.log"
    bound = 3.0  # synthetic latency = 1 ms + 1 ms per concat: at most 2 concats fit
    _search(tmp_path, 10, log, sampler="random", constraints=Constraints(max_latency_ms=bound))
    study = _study(tmp_path)
    trials = study.get_trials()
    infeasible = [t for t in trials if t.user_attrs.get("status") == "infeasible"]
    assert infeasible, "the random sampler should propose some slow architectures"
    assert all(t.user_attrs["predicted_latency_ms"] > bound for t in infeasible)
    assert all(t.constraints["latency_ms"] > 0 for t in infeasible)
    logged = set(_logged_hashes(log))
    assert not logged & {t.user_attrs["arch_hash"] for t in infeasible}
    evaluated = [t for t in trials if t.user_attrs.get("status") == "evaluated"]
    assert len(_logged_hashes(log)) == len(evaluated)
    assert all(t.values[1] <= bound for t in study.best_trials)


def test_failing_trials_do_not_stop_the_search(ray_session: Any, tmp_path: Path) -> None:
    log = tmp_path / "evaluations.log"
    site = next(s for s, ops in _sites().items() if "concat" in ops)
    _search(tmp_path, 8, log, sampler="random", evaluator_options={"fail_when": {site: "concat"}})
    study = _study(tmp_path)
    statuses = _status_counts(study)
    assert statuses["failed"] > 0 and statuses["evaluated"] > 0
    assert sum(statuses.values()) == 8
    for trial in study.get_trials():
        if trial.user_attrs.get("status") == "failed":
            assert trial.state == optuna.trial.TrialState.FAIL
            assert "synthetic failure" in trial.user_attrs["error"]
            assert trial.params[site] == "concat"


_KILLED_SEARCH = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
import test_search_e2e as t
t._search(Path({run_dir!r}), {n}, Path({log!r}), num_cpus=2, sites=t.WIDE_SITES,
          evaluator_options={{"seconds": 1.0}}, sampler="random")
"""


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _start_logged(args: list[str], env: dict[str, str], stderr_path: Path) -> subprocess.Popen:
    """Start a child whose stderr goes to ``stderr_path``. Not a pipe: a pipe that nobody
    reads while the test polls fills with Ray's logging and stalls the child."""
    with open(stderr_path, "wb") as stderr_file:
        return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=stderr_file)


def _kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a process and every process it started (its Ray workers), then reap it."""
    children = _descendants(process.pid)
    process.kill()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def test_resume_after_kill_ends_with_exactly_the_requested_trials(
    ray_session: Any, tmp_path: Path
) -> None:
    """Issue 18: the resumed sampler replayed its first suggestions (cached repeats of trials
    0-2), and the trials cut short were never run again."""
    from nasfuse.search._study import record_from_trial

    n_trials = 10
    log = tmp_path / "evaluations.log"
    code = _KILLED_SEARCH.format(
        tests=str(Path(__file__).parent), run_dir=str(tmp_path), n=n_trials, log=str(log)
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    stderr_path = tmp_path / "child.stderr"
    process = _start_logged([sys.executable, "-c", code], env, stderr_path)
    # A generous bound, not a timing goal: under a loaded CI the child's own Ray can take
    # minutes to come up beside the ones already running.
    deadline = time.monotonic() + 420
    done = 0
    try:
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.5)
            done = trials_in_state(tmp_path, "COMPLETE")
            if done >= 7:  # as in the issue: replays of sampled trials would be cached
                break
    finally:
        exited = process.poll()
        _kill_tree(process)
    stderr = stderr_path.read_text(errors="replace")[-3000:]
    assert 7 <= done < n_trials, (
        f"the search was not caught mid-way ({done} trials done, "
        f"child exit {exited}); its stderr ends:\n{stderr}"
    )
    running = _study(tmp_path).get_trials(states=(optuna.trial.TrialState.RUNNING,))
    # Those killed before their architecture was complete have nothing to re-run.
    cut_short = {t.number: t.params for t in running if len(t.params) == len(WIDE_SITES)}

    _search(tmp_path, n_trials, log, sampler="random", resume=True, sites=WIDE_SITES)
    study = _study(tmp_path)
    records = [record_from_trial(t) for t in study.get_trials()]
    statuses = Counter(r.status for r in records)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == n_trials
    # Ten counted trials are ten architectures evaluated, none a cached repeat.
    assert statuses["evaluated"] == n_trials and statuses["cached"] == 0, statuses
    evaluated = [r.arch_hash for r in records if r.status == "evaluated"]
    assert len(set(evaluated)) == n_trials
    # The trials the kill cut short were failed as interrupted and run again, first.
    interrupted = [r for r in records if r.status == "interrupted"]
    assert {r.number for r in interrupted} == {t.number for t in running}
    reruns = [t for t in complete if t.user_attrs.get("rerun_of") is not None]
    assert {t.user_attrs["rerun_of"] for t in reruns} == set(cut_short)
    assert all(t.params == cut_short[t.user_attrs["rerun_of"]] for t in reruns)
    # An architecture was evaluated twice only if the kill cut its first evaluation short.
    twice = {h for h, n in Counter(_logged_hashes(log)).items() if n > 1}
    assert twice <= {r.arch_hash for r in interrupted}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, body: dict | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _get_bytes(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def test_tensorboard_serves_the_runs_scalars_hparams_images_and_verdict(
    finished_run: dict[str, Any],
) -> None:
    """The README's ``tensorboard --logdir`` over a finished run, read through its HTTP API."""
    import io

    from PIL import Image

    run_dir = finished_run["run_dir"]
    port = _free_port()
    tensorboard = Path(sys.executable).parent / "tensorboard"
    process = subprocess.Popen(
        [
            str(tensorboard),
            "--logdir",
            str(run_dir),  # the run directory, Ray Tune's results included
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--reload_interval",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    root = "tensorboard"  # nasfuse's run, as TensorBoard names it under --logdir <run>
    try:
        tags: dict[str, Any] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                tags = _get(f"{base}/data/plugin/scalars/tags")
                if "search/hypervolume" in tags.get(root, {}):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert {"search/hypervolume", "trial/accuracy", "trial/latency_ms"} <= set(tags[root])
        # Only nasfuse's runs: Ray Tune's trial logger wrote no event files.
        assert all(run == root or run.startswith(f"{root}/trials/") for run in tags), list(tags)
        study = _study(run_dir)
        counted = sum(
            t.user_attrs.get("status") in ("evaluated", "cached", "infeasible", "failed")
            for t in study.get_trials()
        )
        series = _get(f"{base}/data/plugin/scalars/scalars?run={root}&tag=search/hypervolume")
        assert len(series) == counted  # a point per counted trial, not a single point
        assert [point[1] for point in series] == sorted(point[1] for point in series)
        experiment = _get(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        columns = {h["name"] for h in experiment["hparamInfos"]}
        assert columns >= set(_sites()) | {"status"}
        metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
        assert {"hparam/accuracy", "hparam/latency_ms"} <= metrics
        groups = _get(
            f"{base}/data/plugin/hparams/session_groups",
            {
                "experimentName": "",
                "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"],
                "colParams": [],
                "startIndex": 0,
                "sliceSize": 1000,
            },
        )
        assert groups["totalSize"] == len(study.get_trials())
        accuracy_by_trial = {
            g["name"]: next(
                m["value"] for m in g["metricValues"] if m["name"]["tag"] == "hparam/accuracy"
            )
            for g in groups["sessionGroups"]
        }
        for trial in study.get_trials():
            if trial.user_attrs["status"] in ("evaluated", "cached"):
                assert accuracy_by_trial[f"{root}/trials/{trial.number:05d}"] == pytest.approx(
                    trial.values[0], abs=1e-6
                )
        images = _get(f"{base}/data/plugin/images/tags")
        assert "pareto/scatter" in images[root]
        entries = _get(f"{base}/data/plugin/images/images?run={root}&tag=pareto/scatter")
        last = entries[-1]
        png = _get_bytes(f"{base}/data/plugin/images/individualImage?{last['query']}")
        width, height = Image.open(io.BytesIO(png)).size
        assert width >= 800 and height >= 600
        # torch's add_text names its tags <tag>/text_summary.
        texts = {
            t.removesuffix("/text_summary") for t in _get(f"{base}/data/plugin/text/tags")[root]
        }
        assert {"verdict", "op_choice/front", "op_choice/evaluated"} <= texts
        text_route = f"{base}/data/plugin/text/text?run={root}&tag="
        verdict = _get(f"{text_route}verdict/text_summary")
        assert "Is fusion worth it here?" in verdict[-1]["text"]
        table = _get(f"{text_route}op_choice/evaluated/text_summary")
        assert "concat" in table[-1]["text"] and next(iter(_sites())) in table[-1]["text"]
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_cli_search_on_a_tiny_space_then_export(
    ray_session: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nasfuse.cli import main

    out = tmp_path / "run"
    argv = [
        "search",
        "--space",
        str(TINY_SPACE),
        "--set",
        "width_mult=1.0",
        "--budget",
        "quick",
        "--trials",
        "6",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--max-params",
        "1.0",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Is fusion worth it here?" in printed
    assert "all-add (trial 0" in printed or "all-add was not evaluated" in printed
    for name in (
        "search_config.yaml",
        "supernet/supernet.pt",
        "latency_table.json",
        "study.db",
        "pareto.csv",
        "best.yaml",
        "report.md",
    ):
        assert (out / name).is_file(), name
    from nasfuse.arch import read_arch

    # The exported files know their data: digits, 1 channel, 10 classes (issue 15).
    data = read_arch(out / "best.yaml").data
    assert (data["dataset"], data["in_chans"], data["num_classes"]) == ("digits", 1, 10)
    assert read_arch(next((out / "pareto").glob("*.yaml"))).data == data
    study = _study(out)
    assert sum(1 for t in study.get_trials() if t.user_attrs.get("status") != "interrupted") == 6
    evaluated = [t for t in study.get_trials() if t.user_attrs.get("status") == "evaluated"]
    assert evaluated and all(0.0 <= t.values[0] <= 1.0 for t in evaluated)
    assert all(t.user_attrs["flops"] > 0 and t.user_attrs["params"] > 0 for t in evaluated)
    # A second search into the same directory must be asked to resume.
    assert main(argv) == 2
    # Resuming with more trials reuses the supernet and the table and adds trials.
    mtime = (out / "supernet" / "supernet.pt").stat().st_mtime
    assert (
        main([*argv[:-4], "--trials", "8", "--out", str(out), "--max-params", "1.0", "--resume"])
        == 0
    )
    assert (out / "supernet" / "supernet.pt").stat().st_mtime == mtime
    assert (
        len([t for t in _study(out).get_trials() if t.user_attrs.get("status") != "interrupted"])
        == 8
    )
    assert (
        main(["export", "--run", str(out), "--pick", "max-acc", "--out", str(tmp_path / "a.yaml")])
        == 0
    )
    assert (tmp_path / "a.yaml").is_file()


def test_supernet_evaluator_scores_flops_and_measured_latency(ray_session: Any) -> None:
    import torch

    from nasfuse.data import build_loaders
    from nasfuse.profile import count_flops
    from nasfuse.search import SupernetEvaluator
    from nasfuse.spaces import load_space
    from nasfuse.supernet import Supernet

    space = load_space(TINY_SPACE)
    bundle = build_loaders("digits", space.input_size, batch_size=32)
    supernet = Supernet(space, num_classes=bundle.num_classes, in_chans=bundle.in_chans).eval()
    evaluator = SupernetEvaluator(supernet, bundle, calib_batches=1, measure_latency=True)
    arch = supernet.sample_arch(3)
    metrics = evaluator.evaluate(arch)
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert metrics["latency_ms"] > 0
    sample = torch.zeros(1, bundle.in_chans, space.input_size, space.input_size)
    assert metrics["flops"] == count_flops(supernet.extract(arch), sample)


def test_supernet_evaluator_scores_with_few_shot_and_finetuning(
    ray_session: Any, tmp_path: Path
) -> None:
    from nasfuse.data import build_loaders
    from nasfuse.search import SupernetEvaluator
    from nasfuse.training import (
        SupernetTrainConfig,
        evaluate_arch,
        load_supernet,
        train_few_shot,
        train_supernet,
    )

    checkpoint = train_supernet(
        SupernetTrainConfig(
            space=str(TINY_SPACE), epochs=1, train_subset=64, batch_size=32, eval_archs=0,
            warmup_epochs=0, threads=1, progress=False,
        ),
        tmp_path / "sn",
    )  # fmt: skip
    split = train_few_shot(checkpoint, epochs=1)
    supernet = load_supernet(checkpoint)
    bundle = build_loaders("digits", supernet.space.input_size, batch_size=32, train_subset=64)
    evaluator = SupernetEvaluator(supernet, bundle, 2, finetune_steps=3, few_shot=split)
    for op in split.supernets:
        arch = {**supernet.sample_arch(1), split.site: op}
        # The trial's score is its own sub-supernet's, fine-tuned: computed here directly.
        expected = evaluate_arch(split.supernets[op], arch, bundle, 2, finetune_steps=3)
        assert evaluator.evaluate(arch)["accuracy"] == expected


def test_a_given_supernet_decides_the_space_and_the_config_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 18: --supernet with another --space searched the checkpoint's space while
    search_config.yaml recorded the flags' space and the budget's width."""
    from nasfuse.search import SearchConfig
    from nasfuse.search._driver import _adopt_supernet, _resolved, resolve_plan
    from nasfuse.training import SupernetTrainConfig, train_supernet

    checkpoint = train_supernet(
        SupernetTrainConfig(
            space=str(TINY_SPACE), space_options={"width_mult": 0.5}, epochs=1,
            train_subset=64, batch_size=32, eval_archs=0, threads=1, progress=False,
        ),
        tmp_path / "sn",
    )  # fmt: skip
    cfg = SearchConfig(space="resnet20", budget="quick", supernet=str(checkpoint))
    adopted = _adopt_supernet(cfg)
    assert "is a supernet of tiny_hrnet" in capsys.readouterr().out
    resolved = _resolved(adopted, resolve_plan(adopted))
    assert Path(resolved.space) == TINY_SPACE.resolve()
    assert resolved.space_options == {"width_mult": 0.5}
    assert (resolved.width_mult, resolved.input_size, resolved.supernet_epochs) == (0.5, 16, 1)
    # Asking for exactly the checkpoint's space says nothing.
    same = SearchConfig(
        space="tiny_hrnet", space_options={"width_mult": 0.5}, width_mult=0.5, input_size=16,
        supernet=str(checkpoint),
    )  # fmt: skip
    _adopt_supernet(same)
    assert capsys.readouterr().out == ""


def test_ctrl_c_exports_nothing_exits_130_and_resume_finishes(tmp_path: Path) -> None:
    """Issue 18: Ctrl-C exited 0 after exporting a front of 6 of 40 trials."""
    out = tmp_path / "run"
    argv = [
        "search", "--space", str(TINY_SPACE), "--set", "width_mult=1.0", "--budget", "quick",
        "--epochs", "1", "--sampler", "random", "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    stderr_path = tmp_path / "search.stderr"
    process = _start_logged(
        [sys.executable, "-m", "nasfuse", *argv, "--trials", "40"], env, stderr_path
    )
    done, deadline = 0, time.monotonic() + 420
    try:
        while time.monotonic() < deadline and process.poll() is None and done < 2:
            time.sleep(0.5)
            done = trials_in_state(out, "COMPLETE")
        assert process.poll() is None and done >= 2, "the search was not caught mid-way"
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    finally:
        _kill_tree(process)
    err = stderr_path.read_text(errors="replace")
    assert process.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err.strip().splitlines()[-1]
    assert not (out / "pareto.csv").exists() and not (out / "best.yaml").exists()
    study = _study(out)
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    counted = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    assert counted < 40

    from nasfuse.cli import main

    assert main([*argv, "--trials", str(counted + 2), "--resume"]) == 0
    assert (out / "best.yaml").is_file()
    assert len(_study(out).get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == counted + 2


def test_the_local_ray_listens_on_loopback_only(ray_session: Any) -> None:
    import psutil

    ray_session.get(ray_session.remote(lambda: 1).remote())  # a worker is up
    ours = {os.getpid(), *(p.pid for p in psutil.Process().children(recursive=True))}
    listening = [
        c.laddr.ip
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in ours
    ]
    assert listening, "Ray's servers should be listening"
    assert all(ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for ip in listening), listening
