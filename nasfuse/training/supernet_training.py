"""Single-path supernet training (``nasfuse train-supernet``) and loading its checkpoint.

Each step trains one path: the sampler (uniform or fair) picks an op at every site, the
supernet runs only those ops, and only their weights (and the shared ones) get gradients.
Every DDP rank draws the same path at the same step from the sampler's shared seed.

Example:
    >>> cfg = load_config(SupernetTrainConfig, overrides=["space=resnet20", "epochs=5"])
    >>> path = train_supernet(cfg, "runs/supernet-resnet20-digits")     # .../supernet.pt
    >>> supernet = load_supernet(path)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from nasfuse.config import run_only
from nasfuse.files import CheckpointError, load_checkpoint
from nasfuse.training._config import TrainingConfig, seeded_bundle
from nasfuse.training._loop import TrainingRun
from nasfuse.training.evaluation import evaluate_arch, preserved_bn_stats
from nasfuse.training.samplers import UniformSampler, create_sampler

__all__ = [
    "SupernetTrainConfig",
    "SupernetTrainer",
    "train_supernet",
    "load_supernet",
    "supernet_from_checkpoint",
    "space_info",
    "SUPERNET_FILE",
]

SUPERNET_FILE = "supernet.pt"


@dataclass
class SupernetTrainConfig(TrainingConfig):
    """Supernet training: the space, the path sampler, and the shared hyperparameters.

    Defaults: hrnet_lite on digits, 30 epochs, uniform sampling, and the
    :class:`~nasfuse.training._config.TrainingConfig` defaults (batch 32, SGD lr 0.05, cosine).

    Attributes:
        space: a shipped space's name or a space YAML file.
        space_options: overrides applied when the space is loaded (e.g. ``width_mult: 0.5``).
        sampler: ``uniform`` (SPOS) or ``fair`` (every op at every site equally often).
        eval_archs: score this many fixed random archs on val (with BN recalibration) for
            the ``val/acc_*`` curves; 0 to skip.
        eval_every: score them every this many epochs and after the last (default 5: on
            the quick search's supernet one scoring cost about 30% of an epoch's time).
        eval_calib_batches: BN recalibration batches for those scores.
        op_init: ``sum`` (every candidate op starts as close to the sum of its inputs as it
            can, so all paths share one channel basis) or ``paper``; see ``Supernet``.
        clip_grad: gradient-norm clipping, on by default (5.0) for supernets: a step's
            random path can send one large gradient into weights every path shares.
        fixed_sites: sites held at one op during training (a few-shot sub-supernet).
        init_from: a supernet checkpoint of the same space whose weights training starts
            from (a few-shot sub-supernet inherits the one-shot supernet's).
        few_shot_epochs: after training, split the supernet by the op at
            ``few_shot_site`` into one sub-supernet per op, each trained this many more
            epochs from these weights (:func:`~nasfuse.training.train_few_shot`); 0: none.
        few_shot_site: the site to split on; None: the last site.

    Run-only (may change on resume): the training's own (see
    :class:`~nasfuse.training._config.TrainingConfig`) and ``few_shot_epochs``,
    ``few_shot_site``.
    """

    space: str = "hrnet_lite"
    space_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 30
    sampler: Literal["uniform", "fair"] = "uniform"
    op_init: Literal["sum", "paper"] = "sum"
    clip_grad: float | None = 5.0
    eval_archs: int = 2
    eval_every: int = run_only(5)
    eval_calib_batches: int = 5
    fixed_sites: dict[str, str] = field(default_factory=dict)
    init_from: str | None = None
    # The few-shot split runs after this training, from its final weights, and keeps its
    # own record (few_shot.json, which refuses another split); the supernet is the same.
    few_shot_epochs: int = run_only(0)
    few_shot_site: str | None = run_only(None)


def space_info(space: Any) -> dict[str, Any]:
    """How a checkpoint names its space: the source, the load options and the hash.

    A source that is a file is stored as an absolute path, so the checkpoint still finds
    it from another working directory.
    """
    source = str(space.source)
    if Path(source).is_file():
        source = str(Path(source).resolve())
    return {
        "space": source,
        "space_name": space.name,
        "space_options": dict(space.options),
        "space_hash": space.hash,
    }


def space_from_info(info: Mapping[str, Any], path: str | Path) -> Any:
    """Load the space a checkpoint names, refusing one that changed since it was written."""
    from nasfuse.spaces import load_recorded_space

    missing = [key for key in ("space", "space_options", "space_hash") if key not in info]
    if missing:
        raise CheckpointError(
            f"{path}: the checkpoint does not say which space it is (no {', '.join(missing)})"
        )
    remedy = "restore the space file it was trained on, or train a new supernet"
    return load_recorded_space(info, "this checkpoint", path, remedy)


def _inherited_weights(path: str | Path, space: Any) -> Mapping[str, Any]:
    """The model weights of supernet checkpoint ``path``, which must be of ``space``."""
    checkpoint = load_checkpoint(path, kind="supernet")
    remedy = "set init_from to a supernet of this space"
    space.check_hash(checkpoint, "the init_from supernet", path, remedy)
    return checkpoint["model"]


class SupernetTrainer(TrainingRun):
    """A supernet training run (see :func:`train_supernet`); ``.net`` is the :class:`Supernet`.

    Args:
        cfg: the config.
        out_dir: the run directory (``supernet.pt``, ``config.yaml``, ``tb/``).
        resume: continue from ``out_dir/supernet.pt``.
        context: the distributed context; by default from torchrun's environment.
    """

    checkpoint_name = SUPERNET_FILE
    checkpoint_kind = "supernet"
    # Each step leaves every inactive candidate without a gradient; DDP has to look for
    # them. All ranks share the path, so the unused set agrees across ranks.
    find_unused_parameters = True

    def __init__(
        self,
        cfg: SupernetTrainConfig,
        out_dir: str | Path,
        resume: bool = False,
        context: Any = None,
    ) -> None:
        from nasfuse.spaces import load_space
        from nasfuse.supernet import Supernet
        from nasfuse.training.distributed import setup_distributed

        context = context if context is not None else setup_distributed()
        space = load_space(cfg.space, cfg.space_options)
        bundle = seeded_bundle(cfg, space, context, every_op=True)
        supernet = Supernet(
            space, num_classes=bundle.num_classes, in_chans=bundle.in_chans, op_init=cfg.op_init
        )
        self.space = space
        self.sampler = create_sampler(cfg.sampler, space, seed=cfg.seed, fixed=cfg.fixed_sites)
        # A fixed set of archs scored after every epoch, so the val curve is comparable.
        fixed = UniformSampler(space, seed=cfg.seed + 1, fixed=cfg.fixed_sites)
        self.eval_arch_list = [fixed.next_arch() for _ in range(cfg.eval_archs)]
        super().__init__(cfg, out_dir, supernet, bundle, context, resume=resume)
        if cfg.init_from and not self.resumed:
            # In place, so the optimiser already holds these parameters.
            self.net.load_state_dict(_inherited_weights(cfg.init_from, space))

    def before_step(self, step: int) -> None:
        self.net.set_arch(self.sampler.next_arch())

    def after_epoch(self, epoch: int) -> dict[str, float]:
        if not self.eval_arch_list or not self.context.is_main:
            return {}
        with preserved_bn_stats(self.net):
            scores = [
                evaluate_arch(self.net, arch, self.bundle, self.cfg.eval_calib_batches)
                for arch in self.eval_arch_list
            ]
        return {
            "val/acc_mean": sum(scores) / len(scores),
            "val/acc_min": min(scores),
            "val/acc_max": max(scores),
        }

    def log_extra(self, writer: Any, epoch: int) -> None:
        # Cumulative steps each op was active at each site: flat lines for "fair".
        for site, ops in self.sampler.counts.items():
            for op, count in ops.items():
                writer.add_scalar(f"sampling/{site}/{op}", count, epoch)

    def extra_state(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])

    def checkpoint_info(self) -> dict[str, Any]:
        return space_info(self.space)


def train_supernet(cfg: SupernetTrainConfig, out_dir: str | Path, resume: bool = False) -> Path:
    """Train a supernet; write ``config.yaml``, ``supernet.pt`` every epoch, ``tb/``.

    Under ``torchrun`` this runs DDP over all processes; only rank 0 writes files.

    Args:
        cfg: the config.
        out_dir: the run directory.
        resume: continue the run in ``out_dir`` from its last checkpoint (to the very same
            weights an uninterrupted run reaches). Without it, a directory that already
            holds a checkpoint is refused.

    ``out_dir`` is locked first (:func:`nasfuse.run_lock.lock_run_dir`): a directory
    another live process is training into is refused before anything is loaded.

    With ``cfg.few_shot_epochs``, the few-shot sub-supernets are trained afterwards into
    ``out_dir/few_shot`` (by every rank together under torchrun).

    Returns:
        The path of ``supernet.pt`` (kind ``"supernet"``).
    """
    from nasfuse.run_lock import lock_run_dir

    with lock_run_dir(out_dir, "train-supernet"):
        trainer = SupernetTrainer(cfg, out_dir, resume=resume)
        try:
            trainer.fit()
        finally:
            trainer.context.close()
        if cfg.few_shot_epochs > 0:
            # Under torchrun every rank takes part, as in the one-shot training.
            from nasfuse.training.few_shot import train_few_shot

            train_few_shot(trainer.checkpoint_path, cfg.few_shot_epochs, cfg.few_shot_site)
    return trainer.checkpoint_path


def load_supernet(path: str | Path, map_location: str = "cpu") -> Any:
    """The :class:`~nasfuse.supernet.Supernet` saved in a ``supernet.pt`` checkpoint.

    The space is loaded from the name/file and options the checkpoint gives and must still
    have the hash it had; the supernet is returned in eval mode.

    Raises:
        CheckpointError: missing, corrupted or not a supernet checkpoint, a changed space,
            weights that do not fit, or non-finite weights.
    """
    checkpoint = load_checkpoint(path, kind="supernet", map_location=map_location)
    return supernet_from_checkpoint(checkpoint, path)


def supernet_from_checkpoint(checkpoint: Mapping[str, Any], path: str | Path) -> Any:
    """:func:`load_supernet` of a checkpoint already loaded (kind ``"supernet"``) from
    ``path``; for a caller that read it to see its kind, so it is read once."""
    from nasfuse.supernet import Supernet

    for name, tensor in checkpoint["model"].items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(
                f"{path}: weight {name} is not finite (NaN or inf): the supernet diverged; "
                "it would score every architecture at chance. Train it again with a lower lr"
            )
    space = space_from_info(checkpoint, path)
    try:
        supernet = Supernet(space, int(checkpoint["num_classes"]), int(checkpoint["in_chans"]))
        supernet.load_state_dict(checkpoint["model"])
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: weights do not fit the supernet of {space.name}: {exc}"
        ) from exc
    return supernet.eval()
