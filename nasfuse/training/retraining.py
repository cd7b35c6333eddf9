"""Retraining an exported architecture (``nasfuse retrain``) and scoring a trained model.

The standalone network of an arch file is trained from scratch (``init="scratch"``) or
from the supernet's weights for that path (``init="supernet"``), then scored on the test
split. The run directory gets ``model.pt`` (kind ``"model"``), ``model.safetensors`` (the
same weights, loadable without pickle), ``arch.yaml`` (the architecture with the data it was
trained on and its test metrics, for ``timm.create_model``), ``metrics.json``,
``config.yaml``, TensorBoard curves in ``tb/`` and, while training, ``checkpoint.pt``
(kind ``"retrain_state"``) for ``--resume``.

Example:
    >>> metrics = retrain("runs/search/best.yaml", RetrainConfig(epochs=15), "runs/retrain")
    >>> metrics["test_acc"]
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from nasfuse.files import (
    CheckpointError,
    atomic_write_bytes,
    atomic_write_text,
    load_checkpoint,
    save_checkpoint,
)
from nasfuse.training._config import TrainingConfig, seeded_bundle
from nasfuse.training._loop import TrainingRun
from nasfuse.training.evaluation import evaluate
from nasfuse.training.supernet_training import load_supernet, space_from_info, space_info

if TYPE_CHECKING:
    from nasfuse.data import DataBundle
    from nasfuse.spaces import SearchSpace

__all__ = [
    "RetrainConfig",
    "Retrainer",
    "retrain",
    "load_model",
    "model_from_checkpoint",
    "model_cost",
    "save_weights",
    "save_model_files",
    "MODEL_FILE",
    "WEIGHTS_FILE",
    "ARCH_FILE",
    "METRICS_FILE",
]

MODEL_FILE = "model.pt"
WEIGHTS_FILE = "model.safetensors"
ARCH_FILE = "arch.yaml"
METRICS_FILE = "metrics.json"


@dataclass
class RetrainConfig(TrainingConfig):
    """Retraining: the shared hyperparameters, and where the weights start.

    Defaults: digits, 15 epochs, batch 32, SGD lr 0.05 cosine (see
    :class:`~nasfuse.training._config.TrainingConfig`).

    Attributes:
        init: ``scratch`` (fresh weights) or ``supernet`` (the supernet's weights for this
            path, from ``supernet``).
        supernet: a ``supernet.pt`` checkpoint, needed with ``init: supernet``.
    """

    epochs: int = 15
    init: Literal["scratch", "supernet"] = "scratch"
    supernet: str | None = None


def model_cost(model: nn.Module, in_chans: int, input_size: int) -> tuple[int, int]:
    """``(params, FLOPs)`` of ``model`` for one ``(1, in_chans, input_size, input_size)`` image."""
    from nasfuse.profile import count_flops, count_params

    device = next(model.parameters()).device
    image = torch.zeros(1, in_chans, input_size, input_size, device=device)
    return count_params(model), count_flops(model, image)


def save_weights(
    model: nn.Module, path: str | Path, metadata: Mapping[str, Any] | None = None
) -> None:
    """Write ``model``'s state dict as a safetensors file, atomically.

    Args:
        model: its tensors are copied to the CPU, contiguous.
        path: the file (``model.safetensors``); timm's ``load_state_dict`` reads it.
        metadata: strings to keep in the file's header (values are turned into text).
    """
    from safetensors.torch import save

    tensors = {
        name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()
    }
    header = {str(k): str(v) for k, v in (metadata or {}).items()}
    atomic_write_bytes(path, save(tensors, metadata=header))


def save_model_files(
    out_dir: str | Path,
    model: nn.Module,
    arch: Mapping[str, str],
    space: SearchSpace,
    bundle: DataBundle,
    metrics: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write a trained ``model`` of ``arch`` as ``nasfuse retrain`` hands it over.

    ``out_dir`` gets ``model.pt`` (kind ``"model"``: weights, data facts, metrics, arch,
    space, and ``extra``), ``model.safetensors`` (the weights alone) and ``arch.yaml``
    (``arch`` with ``bundle``'s data facts and the test metrics), from which
    ``timm.create_model("nasfuse_<space>", arch=...)`` builds a model the weights load
    into strictly.
    """
    from nasfuse.arch import arch_hash, data_fields, save_arch

    out_dir = Path(out_dir)
    state = {
        "kind": "model",
        "format": 1,
        "model": model.state_dict(),
        "num_classes": bundle.num_classes,
        "in_chans": bundle.in_chans,
        "input_size": bundle.input_size,
        "dataset": bundle.name,
        "metrics": dict(metrics),
        **dict(extra or {}),
        "arch": dict(arch),
        **space_info(space),
    }
    # Unpacked: timm.create_model(..., checkpoint_path=model.pt) reads its state dict.
    save_checkpoint(state, out_dir / MODEL_FILE, packed=False)
    header = {"space": space.name, "space_hash": space.hash, "arch_hash": arch_hash(arch)}
    save_weights(model, out_dir / WEIGHTS_FILE, {**header, "dataset": bundle.name})
    kept = ("test_acc", "val_acc", "params", "flops")
    save_arch(
        arch,
        out_dir / ARCH_FILE,
        space,
        {key: metrics[key] for key in kept if key in metrics},
        **data_fields(bundle),
    )


class Retrainer(TrainingRun):
    """A retraining run (see :func:`retrain`); ``.net`` is the standalone model."""

    checkpoint_name = "checkpoint.pt"
    checkpoint_kind = "retrain_state"
    find_unused_parameters = False  # a fixed network: every parameter gets a gradient

    def __init__(
        self,
        arch_path: str | Path,
        cfg: RetrainConfig,
        out_dir: str | Path,
        resume: bool = False,
        context: Any = None,
    ) -> None:
        from nasfuse.arch import load_arch
        from nasfuse.supernet import build_model
        from nasfuse.training.distributed import setup_distributed

        context = context if context is not None else setup_distributed()
        arch, space = load_arch(arch_path)
        bundle = seeded_bundle(cfg, space, context)
        if cfg.init == "supernet":
            if not cfg.supernet:
                raise ValueError(
                    "init 'supernet' needs a supernet checkpoint: pass --supernet CKPT"
                )
            supernet = load_supernet(cfg.supernet)
            remedy = f"pass a supernet of the space of {arch_path}"
            space.check_hash(supernet.space, "this supernet", cfg.supernet, remedy)
            if (supernet.num_classes, supernet.in_chans) != (bundle.num_classes, bundle.in_chans):
                raise ValueError(
                    f"{cfg.supernet}: this supernet has {supernet.num_classes} classes and "
                    f"{supernet.in_chans} input channels; {bundle.name} has "
                    f"{bundle.num_classes} and {bundle.in_chans}"
                )
            model = supernet.extract(arch).train()
        else:
            model = build_model(space, arch, bundle.num_classes, bundle.in_chans)
        self.arch = arch
        self.space = space
        self.arch_path = Path(arch_path)
        super().__init__(cfg, out_dir, model, bundle, context, resume=resume)

    def after_epoch(self, epoch: int) -> dict[str, float]:
        return {"val/acc": evaluate(self.net, self.bundle.val)}

    def checkpoint_info(self) -> dict[str, Any]:
        return {"arch": dict(self.arch), **space_info(self.space)}

    def finish(self) -> dict[str, Any]:
        """Score the test split; write the model files and ``metrics.json`` (rank 0)."""
        from nasfuse.runtime import device_name

        test_acc = evaluate(self.net, self.bundle.test)
        val_acc = evaluate(self.net, self.bundle.val)
        params, flops = model_cost(self.net, self.bundle.in_chans, self.bundle.input_size)
        metrics = {
            "test_acc": test_acc,
            "val_acc": val_acc,
            "params": params,
            "flops": flops,
            "epochs": self.start_epoch,
            "wall_time_s": round(self.wall_time, 2),
            "dataset": self.bundle.name,
            "input_size": self.bundle.input_size,
            "space": self.space.name,
            "init": self.cfg.init,
            "device": device_name(self.context.device),
            "world_size": self.context.world_size,
        }
        if self.context.is_main:
            save_model_files(
                self.out_dir,
                self.net,
                self.arch,
                self.space,
                self.bundle,
                metrics,
                {"config": dataclasses.asdict(self.cfg)},
            )
            atomic_write_text(self.out_dir / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
            from torch.utils.tensorboard import SummaryWriter

            with SummaryWriter(str(self.out_dir / "tb")) as writer:
                writer.add_scalar("test/acc", test_acc, self.start_epoch)
        return metrics


def retrain(
    arch_path: str | Path, cfg: RetrainConfig, out_dir: str | Path, resume: bool = False
) -> dict[str, Any]:
    """Train the architecture of ``arch_path`` and score it on the test split.

    Under ``torchrun`` this runs DDP over all processes; only rank 0 writes files.

    Args:
        arch_path: an arch YAML file (``nasfuse.arch.save_arch``).
        cfg: the config.
        out_dir: the run directory.
        resume: continue the run in ``out_dir`` from its ``checkpoint.pt``.

    Returns:
        The metrics also written to ``metrics.json``: ``test_acc``, ``val_acc``, ``params``,
        ``flops``, ``epochs``, ``wall_time_s`` and what they were measured on.
    """
    from nasfuse.run_lock import lock_run_dir

    with lock_run_dir(out_dir, "retrain"):  # before anything is loaded
        trainer = Retrainer(arch_path, cfg, out_dir, resume=resume)
        try:
            trainer.fit()
            return trainer.finish()
        finally:
            trainer.context.close()


def load_model(
    path: str | Path,
    arch: Mapping[str, str] | None = None,
    space: Any = None,
    map_location: str = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """The trained model in a ``model.pt`` checkpoint, and the checkpoint's other entries.

    Args:
        path: the checkpoint (kind ``"model"``).
        arch, space: if given, the checkpoint must hold this architecture of this space.

    Returns:
        ``(model in eval mode, checkpoint without its weights)``.

    Raises:
        CheckpointError: missing, corrupted, of another kind, of another architecture or
            space, or with weights that do not fit.
    """
    checkpoint = load_checkpoint(path, kind="model", map_location=map_location)
    return model_from_checkpoint(checkpoint, path, arch=arch, space=space)


def model_from_checkpoint(
    checkpoint: Mapping[str, Any],
    path: str | Path,
    arch: Mapping[str, str] | None = None,
    space: Any = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`load_model` of a checkpoint already loaded (kind ``"model"``) from ``path``.

    For a caller that read the checkpoint to see its kind, so it is read once.
    """
    from nasfuse.supernet import build_model

    if space is not None:
        remedy = "use it with the architecture file it was trained from"
        space.check_hash(checkpoint, "this model", path, remedy)
    saved_arch = checkpoint.get("arch")
    if arch is not None and saved_arch != dict(arch):
        differing = sorted(
            site
            for site in set(arch) | set(saved_arch or {})
            if (saved_arch or {}).get(site) != arch.get(site)
        )
        raise CheckpointError(
            f"{path}: this model is of another architecture (sites that differ: "
            f"{', '.join(differing[:5])}{', ...' if len(differing) > 5 else ''})"
        )
    space = space if space is not None else space_from_info(checkpoint, path)
    try:
        model = build_model(
            space, saved_arch, int(checkpoint["num_classes"]), int(checkpoint["in_chans"])
        )
        model.load_state_dict(checkpoint["model"])
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: weights do not fit the model of its architecture: {exc}"
        ) from exc
    info = {key: value for key, value in checkpoint.items() if key != "model"}
    return model.eval(), info
