"""Few-shot supernets (Zhao et al., "Few-shot Neural Architecture Search", ICML 2021).

One weight-sharing supernet makes every path a compromise with every other. Few-shot NAS
splits the space by the op at one site: for each op ``o`` allowed there, a sub-supernet
starts from the trained one-shot supernet's weights and trains a few more epochs with
that site held at ``o`` (every other site still sampled). An architecture is then scored
by the sub-supernet of its own op at the split site, whose shared weights were never
pulled toward the site's other ops. The cost is ``ops x epochs`` extra epochs; it is
recorded, as a ratio to the one-shot supernet's training time, in ``few_shot.json``.

Layout, under a supernet run directory::

    few_shot/few_shot.json        site, ops, epochs, the base checkpoint, wall times
    few_shot/<op>/supernet.pt     one sub-supernet per op (an ordinary supernet run)
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nasfuse.files import CheckpointError, atomic_write_text, load_checkpoint

__all__ = [
    "FEW_SHOT_DIR",
    "FEW_SHOT_LR_FACTOR",
    "FewShotSupernets",
    "default_split_site",
    "train_few_shot",
]

FEW_SHOT_DIR = "few_shot"
MANIFEST = "few_shot.json"
FEW_SHOT_LR_FACTOR = 0.2
"""The sub-supernets train at this share of the one-shot run's peak learning rate (cosine,
no warm-up): they refine weights that are already trained rather than start over."""


def default_split_site(space: Any) -> str:
    """The site a few-shot split uses by default: the last one (nearest the classifier)."""
    return list(space.sites)[-1]


def train_few_shot(
    checkpoint: str | Path,
    epochs: int,
    site: str | None = None,
    out_dir: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> FewShotSupernets:
    """Train (or finish, or reuse) the sub-supernets of a trained supernet.

    Args:
        checkpoint: the one-shot ``supernet.pt``.
        epochs: extra epochs of each sub-supernet.
        site: the split site; None: :func:`default_split_site`.
        out_dir: default ``<checkpoint's folder>/few_shot``.
        overrides: further :class:`~nasfuse.training.SupernetTrainConfig` fields.

    Returns:
        The loaded :class:`FewShotSupernets`. A killed run resumes each sub-supernet where
        it stopped; finished ones are reused.

    Raises:
        ValueError: ``epochs < 1``, or a site the space does not have.
        CheckpointError: ``checkpoint`` is not a supernet, or ``out_dir`` holds a split of
            another checkpoint, site or budget.
    """
    from nasfuse.config import config_from_dict
    from nasfuse.training.supernet_training import (
        SUPERNET_FILE,
        SupernetTrainConfig,
        space_from_info,
        train_supernet,
    )

    if epochs < 1:
        raise ValueError(f"few-shot epochs must be >= 1, got {epochs}")
    checkpoint = Path(checkpoint).resolve()
    base = load_checkpoint(checkpoint, kind="supernet")
    space = space_from_info(base, checkpoint)
    site = _split_site(space, site)
    out_dir = Path(out_dir) if out_dir is not None else checkpoint.parent / FEW_SHOT_DIR
    settings = _sub_supernet_settings(base["config"], checkpoint, epochs, overrides)
    manifest_path = out_dir / MANIFEST
    plan = {"site": site, "checkpoint": str(checkpoint), "epochs": int(epochs)}
    _check_manifest(manifest_path, plan)
    ops = list(space.sites[site].ops)
    seconds = {}
    for op in ops:
        cfg = config_from_dict(
            SupernetTrainConfig, {**settings, "fixed_sites": {site: op}}, "few-shot config"
        )
        run_dir = out_dir / op
        print(f"few-shot: sub-supernet {site} = {op} ({epochs} epochs) -> {run_dir}", flush=True)
        path = train_supernet(cfg, run_dir, resume=(run_dir / SUPERNET_FILE).is_file())
        seconds[op] = float(load_checkpoint(path, kind="supernet")["wall_time"])
    base_seconds = float(base.get("wall_time") or 0.0)
    manifest = {
        **plan,
        "ops": ops,
        "lr": settings["lr"],
        "wall_time_s": seconds,
        "base_wall_time_s": base_seconds,
        "cost_ratio": sum(seconds.values()) / base_seconds if base_seconds else None,
    }
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 writes
        atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return FewShotSupernets.load(out_dir)


def _split_site(space: Any, site: str | None) -> str:
    """``site``, or by default :func:`default_split_site`; refused if not of ``space``."""
    site = site or default_split_site(space)
    if site not in space.sites:
        raise ValueError(
            f"few-shot site {site!r} is not a site of {space.name!r} "
            f"(e.g. {', '.join(list(space.sites)[:3])}, ...)"
        )
    return site


def _sub_supernet_settings(
    base_config: Mapping[str, Any],
    checkpoint: Path,
    epochs: int,
    overrides: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The config fields every sub-supernet trains with (all but its fixed site).

    The one-shot run's config, for ``epochs`` more epochs without warm-up at
    :data:`FEW_SHOT_LR_FACTOR` of its peak learning rate, from ``checkpoint``'s weights,
    and not split again; ``overrides`` last.
    """
    base_cfg = dict(base_config)
    return {
        **base_cfg,
        "epochs": int(epochs),
        "warmup_epochs": 0,
        "lr": float(base_cfg.get("lr", 0.05)) * FEW_SHOT_LR_FACTOR,
        "init_from": str(checkpoint),
        "few_shot_epochs": 0,
        "few_shot_site": None,
        **dict(overrides or {}),
    }


def _check_manifest(manifest_path: Path, plan: Mapping[str, Any]) -> None:
    """Refuse a directory whose ``few_shot.json`` records another split than ``plan``.

    Raises:
        CheckpointError: another checkpoint, site or number of epochs.
    """
    if not manifest_path.is_file():
        return
    saved = json.loads(manifest_path.read_text())
    if {key: saved.get(key) for key in plan} != plan:
        raise CheckpointError(
            f"{manifest_path}: holds a few-shot split of {saved.get('checkpoint')} at site "
            f"{saved.get('site')!r} for {saved.get('epochs')} epochs, not {plan}; "
            "choose another directory"
        )


@dataclasses.dataclass
class FewShotSupernets:
    """The sub-supernets of one split, and the rule that picks one for an architecture.

    Attributes:
        site: the split site.
        supernets: op at ``site`` -> its sub-supernet.
        manifest: what ``few_shot.json`` says (epochs, wall times, cost ratio).
    """

    site: str
    supernets: dict[str, Any]
    manifest: dict[str, Any]

    def for_arch(self, arch: Mapping[str, str]) -> Any:
        """The sub-supernet whose split op is ``arch``'s."""
        try:
            return self.supernets[arch[self.site]]
        except KeyError:
            raise ValueError(
                f"few-shot split at {self.site!r} has sub-supernets for "
                f"{', '.join(self.supernets)}; the architecture has {arch.get(self.site)!r}"
            ) from None

    @classmethod
    def load(cls, directory: str | Path) -> FewShotSupernets:
        """Load a split written by :func:`train_few_shot`."""
        from nasfuse.training.supernet_training import SUPERNET_FILE, load_supernet

        directory = Path(directory)
        path = directory / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(
                f"{directory}: no few-shot supernets ({MANIFEST} missing); train them with "
                "few_shot_epochs=N on train-supernet, or --few-shot-epochs N"
            )
        manifest = json.loads(path.read_text())
        supernets = {op: load_supernet(directory / op / SUPERNET_FILE) for op in manifest["ops"]}
        return cls(site=manifest["site"], supernets=supernets, manifest=manifest)
