"""Stand-alone trainings of many architectures as Ray Tune trials, kept across reruns.

Each (architecture, seed) is retrained from scratch with :func:`nasfuse.training.retrain`
(the same loop as ``nasfuse retrain``) in its own directory::

    <cache>/<budget key>/budget.yaml           the shared budget (RetrainConfig without seed)
    <cache>/<budget key>/<arch hash>-s<seed>/  arch.yaml, metrics.json, model.pt, tb/

The budget key hashes the space and every setting that changes the result, so a rerun,
another validation of the same space (another supernet, another sampler) or a baseline
table with the same budget reuses every training that finished, and a training killed
half-way resumes from its last epoch's checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nasfuse.config import config_fingerprint, result_fields
from nasfuse.files import atomic_write_text

__all__ = ["StandaloneJob", "budget_key", "standalone_dir", "train_standalone"]

# A job's seed names its own directory inside the budget's, so the budget leaves it out.
_JOB_FIELDS = ("seed",)


@dataclass(frozen=True)
class StandaloneJob:
    """One stand-alone training: an architecture and the seed it is trained with.

    Jobs compare and hash by ``(arch_hash, seed)``; build them with :meth:`of`.
    """

    arch_hash: str
    seed: int
    arch: dict[str, str] = field(compare=False, hash=False, repr=False)

    @classmethod
    def of(cls, arch: Mapping[str, str], seed: int = 0) -> StandaloneJob:
        """The job training ``arch`` with ``seed``."""
        from nasfuse.arch import arch_hash

        return cls(arch_hash(arch), int(seed), dict(arch))


def budget_key(space: Any, cfg: Any) -> str:
    """12 hex chars naming the space and the result-changing fields of a RetrainConfig.

    The fields are those a resumed training refuses to change
    (:func:`nasfuse.config.config_fingerprint`), less the seed: a cached training is
    reused exactly where its checkpoint could be resumed.
    """
    return config_fingerprint(cfg, exclude=_JOB_FIELDS, extra={"space_hash": space.hash})


def standalone_dir(cache_dir: str | Path, space: Any, cfg: Any, job: StandaloneJob) -> Path:
    """Directory of one job's training (see the module doc)."""
    return Path(cache_dir) / budget_key(space, cfg) / f"{job.arch_hash}-s{job.seed}"


def _read_metrics(job_dir: Path) -> dict[str, Any] | None:
    from nasfuse.training import METRICS_FILE

    path = job_dir / METRICS_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _standalone_trial(config: dict[str, Any], retrain_settings: dict[str, Any]) -> None:
    """Ray Tune trainable: train one job (resuming a killed one) and report its metrics."""
    from ray import tune

    from nasfuse.training import RetrainConfig, retrain

    job_dir = Path(config["job"]["job_dir"])
    metrics = _read_metrics(job_dir)
    if metrics is None:
        cfg = RetrainConfig(**{**retrain_settings, "seed": int(config["job"]["seed"])})
        resume = (job_dir / "checkpoint.pt").is_file()
        metrics = retrain(job_dir / "arch.yaml", cfg, job_dir, resume=resume)
    tune.report({k: v for k, v in metrics.items() if isinstance(v, (int, float))})


def train_standalone(
    space: Any,
    jobs: Sequence[StandaloneJob],
    cfg: Any,
    cache_dir: str | Path,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    allow_failures: bool = False,
) -> dict[StandaloneJob, dict[str, Any]]:
    """Retrain every job from scratch as one Ray Tune trial each; reuse finished ones.

    Args:
        space: the :class:`~nasfuse.spaces.SearchSpace` of every job's architecture.
        jobs: the (architecture, seed) pairs; duplicates are trained once.
        cfg: a :class:`~nasfuse.training.RetrainConfig` (its ``seed`` is replaced by each
            job's). ``threads`` should be 1 per CPU a trial asks for.
        cache_dir: where the trainings live (see the module doc).
        ray_address: join this Ray cluster; None: a local Ray with ``num_cpus`` CPUs.
        num_cpus: CPUs of the local Ray (None: all of this machine's).
        cpus_per_trial: CPUs each trial asks Ray for.
        gpus_per_trial: GPUs (or a share of one) each trial asks Ray for.
        allow_failures: return the jobs that finished (with a warning) instead of raising
            when some did not (a training that diverged, a killed run).

    Returns:
        job -> the ``metrics.json`` of its training (finished jobs only) (``test_acc``, ``val_acc``, ``params``,
        ``flops``, ``wall_time_s``, ...).

    Raises:
        RuntimeError: some trainings did not finish (unless ``allow_failures``); the message names them and where Ray
            keeps their errors. Rerunning retries only those.
    """
    from nasfuse.arch import save_arch

    cache_dir = Path(cache_dir).resolve()
    unique = list(dict.fromkeys(jobs))
    budget_dir = cache_dir / budget_key(space, cfg)
    budget_dir.mkdir(parents=True, exist_ok=True)
    shared = result_fields(cfg, exclude=_JOB_FIELDS)
    budget_file = budget_dir / "budget.yaml"
    if not budget_file.is_file():
        atomic_write_text(
            budget_file,
            yaml.safe_dump({"space": space.name, "space_hash": space.hash, **shared}),
        )
    directories = {job: standalone_dir(cache_dir, space, cfg, job) for job in unique}
    pending = [job for job in unique if _read_metrics(directories[job]) is None]
    if pending:
        for job in pending:
            if not (directories[job] / "arch.yaml").is_file():
                save_arch(job.arch, directories[job] / "arch.yaml", space)
        _run_trials(
            [(str(directories[job]), job.seed) for job in pending],
            dataclasses.asdict(cfg),
            budget_dir / "ray",
            ray_address,
            num_cpus,
            {"cpu": cpus_per_trial, "gpu": gpus_per_trial},
        )
    results: dict[StandaloneJob, dict[str, Any]] = {}
    missing = []
    for job in unique:
        metrics = _read_metrics(directories[job])
        if metrics is None:
            missing.append(directories[job].name)
        else:
            results[job] = metrics
    if missing:
        message = (
            f"{len(missing)} stand-alone training(s) did not finish ({', '.join(missing[:4])}"
            f"{', ...' if len(missing) > 4 else ''}); Ray's error logs are under "
            f"{budget_dir / 'ray'}; rerun to retry them (finished ones are reused)"
        )
        if not allow_failures:
            raise RuntimeError(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)
    return results


def _run_trials(
    job_dirs_and_seeds: Sequence[tuple[str, int]],
    retrain_settings: dict[str, Any],
    storage_dir: Path,
    ray_address: str | None,
    num_cpus: int | None,
    resources: dict[str, float],
) -> None:
    """One Ray Tune trial per ``(job_dir, seed)``, as many at once as Ray has CPUs for."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from ray import tune

    from nasfuse.search import local_ray

    settings = {key: value for key, value in retrain_settings.items() if key != "seed"}
    settings["progress"] = False
    with local_ray(ray_address, num_cpus):
        trainable = tune.with_resources(
            tune.with_parameters(_standalone_trial, retrain_settings=settings),
            {name: amount for name, amount in resources.items() if amount},
        )
        tuner = tune.Tuner(
            trainable,
            param_space={
                "job": tune.grid_search([{"job_dir": d, "seed": s} for d, s in job_dirs_and_seeds])
            },
            tune_config=tune.TuneConfig(reuse_actors=True),
            run_config=tune.RunConfig(
                name=f"standalone-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
                storage_path=str(storage_dir),
                verbose=0,
                log_to_file=True,
            ),
        )
        tuner.fit()
