"""The artifacts a search starts from: its supernet and its latency table.

Each is reused when the run directory holds it, taken from what the config hands over
(``SearchConfig.supernet``, ``SearchConfig.latency_table``), or made here (the supernet
trained, the table measured), so a caller with a trained supernet or a measured table never
copies files into a run directory::

    <run>/supernet/supernet.pt       (or --supernet CKPT), with supernet/done once trained
    <run>/supernet/few_shot/<op>/    the few-shot sub-supernets, when asked for
    <run>/latency_table.json         (a --latency-table is checked, then copied here)

A table is checked against the search's settings before any training
(:func:`check_latency_table`), so a misfit is refused in one line, not after the supernet's
epochs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from nasfuse.config import config_from_dict
from nasfuse.files import atomic_write_bytes, atomic_write_text
from nasfuse.search._config import SearchConfig, SearchPlan
from nasfuse.spaces import load_space

__all__ = [
    "LATENCY_TABLE_FILE",
    "SUPERNET_DIR",
    "check_latency_table",
    "ensure_few_shot",
    "ensure_latency_table",
    "ensure_supernet",
    "latency_table_settings",
    "supernet_train_config",
]

LATENCY_TABLE_FILE = "latency_table.json"
SUPERNET_DIR = "supernet"


def supernet_train_config(
    cfg: SearchConfig, plan: SearchPlan, space_options: dict[str, Any]
) -> Any:
    """The :class:`~nasfuse.training.SupernetTrainConfig` a search trains its supernet with."""
    from nasfuse.training import SupernetTrainConfig

    train_cfg = SupernetTrainConfig(
        space=cfg.space,
        space_options=space_options,
        dataset=cfg.dataset,
        data_dir=cfg.data_dir,
        download=cfg.download,
        train_subset=cfg.train_subset,
        epochs=plan.supernet_epochs,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        eval_archs=2,
        eval_calib_batches=plan.calib_batches,
        threads=cfg.threads,
    )
    return config_from_dict(
        SupernetTrainConfig,
        {**dataclasses.asdict(train_cfg), **plan.supernet_options, **cfg.supernet_options},
        "search config: supernet_options",
    )


def ensure_supernet(cfg: SearchConfig, plan: SearchPlan, run_dir: Path, space_options: dict) -> Any:
    """The given supernet, else the run's trained one, else one trained (or resumed) now."""
    from nasfuse.training import load_supernet, train_supernet

    if cfg.supernet:
        return load_supernet(cfg.supernet)
    checkpoint = run_dir / SUPERNET_DIR / "supernet.pt"
    done_marker = run_dir / SUPERNET_DIR / "done"
    if checkpoint.is_file() and done_marker.is_file():
        return load_supernet(checkpoint)
    train_cfg = supernet_train_config(cfg, plan, space_options)
    print(f"supernet: training {plan.supernet_epochs} epochs -> {checkpoint}", flush=True)
    path = train_supernet(train_cfg, run_dir / SUPERNET_DIR, resume=checkpoint.is_file())
    atomic_write_text(done_marker, "trained\n")
    return load_supernet(path)


def ensure_few_shot(cfg: SearchConfig, run_dir: Path) -> Any:
    """The few-shot sub-supernets the config asks for (trained, or reused), or None."""
    if cfg.few_shot_epochs <= 0:
        return None
    from nasfuse.training import train_few_shot
    from nasfuse.training.few_shot import FEW_SHOT_DIR

    checkpoint = Path(cfg.supernet) if cfg.supernet else run_dir / SUPERNET_DIR / "supernet.pt"
    return train_few_shot(
        checkpoint,
        cfg.few_shot_epochs,
        cfg.few_shot_site,
        out_dir=run_dir / SUPERNET_DIR / FEW_SHOT_DIR,
    )


def _latency_batch_size(cfg: SearchConfig) -> int:
    return 1 if cfg.dataset == "digits" else 32


def _load_latency_table(cfg: SearchConfig, space: Any, path: Path, remedy: str) -> Any:
    """The table at ``path``, refused (as ``nasfuse latency`` refuses one) unless measured for
    this search: the space's hash and size, batch size, device, one thread, clock, memory
    format, dtype and torch version."""
    import torch

    from nasfuse.latency import LatencyTable
    from nasfuse.runtime import default_device

    return LatencyTable.load(
        path,
        space=space,
        batch_size=_latency_batch_size(cfg),
        device=default_device(),
        threads=1,
        channels_last=False,
        dtype=torch.float32,
        clock=cfg.latency_clock,
        remedy=remedy,
    )


_RUN_TABLE_REMEDY = (
    "delete it, and the search builds one for these settings, or start another --out"
)
_GIVEN_TABLE_REMEDY = "measure one for these settings (nasfuse latency build) or give none"


def _given_table(cfg: SearchConfig, run_dir: Path) -> tuple[Path, str] | None:
    """The table file this run starts from, and what to do if it does not fit: the run's
    own, else ``cfg.latency_table``, else None (one is built)."""
    if (run_dir / LATENCY_TABLE_FILE).is_file():
        return run_dir / LATENCY_TABLE_FILE, _RUN_TABLE_REMEDY
    if cfg.latency_table:
        return Path(cfg.latency_table), _GIVEN_TABLE_REMEDY
    return None


def check_latency_table(cfg: SearchConfig, run_dir: Path, space_options: dict) -> None:
    """Before any training: a table the run holds, or is given, must fit this search."""
    given = _given_table(cfg, run_dir)
    if given is not None:
        _load_latency_table(cfg, load_space(cfg.space, space_options), *given)


def ensure_latency_table(cfg: SearchConfig, space: Any, run_dir: Path, plan: SearchPlan) -> Any:
    """The run's latency table: its own, a given one (copied in), or one built now."""
    from nasfuse.latency import LatencyTable

    path = run_dir / LATENCY_TABLE_FILE
    given = _given_table(cfg, run_dir)
    if given is not None:
        table = _load_latency_table(cfg, space, *given)
        if given[0] != path:
            print(f"latency: the table {given[0]} -> {path}", flush=True)
            atomic_write_bytes(path, given[0].read_bytes())
        return table
    print(f"latency: building the table of {space.name} -> {path}", flush=True)
    options, calibration = latency_table_settings(cfg, plan)
    table = LatencyTable.build(space, options)
    table.calibrate(space, **calibration)
    table.save(path)
    return table


def latency_table_settings(cfg: SearchConfig, plan: SearchPlan) -> tuple[Any, dict[str, Any]]:
    """How a search measures its latency table: the build options, and the keyword
    arguments of its calibration. The quick budget takes fewer timed runs and one round;
    the others the table's own defaults."""
    from nasfuse.latency import BuildOptions

    light: dict[str, int] = {"runs": 10, "rounds": 1} if plan.budget == "quick" else {}
    options = BuildOptions(
        batch_size=_latency_batch_size(cfg), threads=1, clock=cfg.latency_clock, **light
    )
    calibration = {"samples": 6 if plan.budget == "quick" else 20, "seed": cfg.seed, **light}
    return options, calibration
