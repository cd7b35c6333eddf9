"""Making the networks learn: supernet training, subnet scoring, retraining.

- :func:`train_supernet` / :func:`load_supernet`: single-path training (uniform or fair
  path sampling), checkpoints every epoch, exact ``resume``, DDP under ``torchrun``.
- :func:`recalibrate_bn`, :func:`evaluate`, :func:`evaluate_arch`: scoring a subnet with
  inherited weights after re-estimating its BatchNorm statistics.
- :func:`retrain` / :func:`load_model`: training an exported architecture and reading it back.
- :func:`train_few_shot` / :class:`FewShotSupernets`: few-shot sub-supernets split on one
  site's op, each scoring the architectures with its op there.
"""

from __future__ import annotations

from nasfuse.training._config import TrainingConfig
from nasfuse.training._state import capture_rng_state, restore_rng_state
from nasfuse.training.distributed import DistributedContext, setup_distributed
from nasfuse.training.evaluation import (
    DEFAULT_FINETUNE_LR,
    batchnorm_layers,
    evaluate,
    evaluate_arch,
    finetune,
    preserved_bn_stats,
    recalibrate_bn,
)
from nasfuse.training.few_shot import FewShotSupernets, train_few_shot
from nasfuse.training.retraining import (
    METRICS_FILE,
    MODEL_FILE,
    RetrainConfig,
    Retrainer,
    load_model,
    model_cost,
    retrain,
)
from nasfuse.training.samplers import (
    SAMPLERS,
    ArchSampler,
    FairSampler,
    UniformSampler,
    create_sampler,
)
from nasfuse.training.supernet_training import (
    SUPERNET_FILE,
    SupernetTrainConfig,
    SupernetTrainer,
    load_supernet,
    train_supernet,
)

__all__ = [
    "METRICS_FILE",
    "MODEL_FILE",
    "SAMPLERS",
    "SUPERNET_FILE",
    "ArchSampler",
    "FewShotSupernets",
    "DistributedContext",
    "FairSampler",
    "RetrainConfig",
    "Retrainer",
    "SupernetTrainConfig",
    "SupernetTrainer",
    "TrainingConfig",
    "UniformSampler",
    "DEFAULT_FINETUNE_LR",
    "batchnorm_layers",
    "capture_rng_state",
    "create_sampler",
    "evaluate",
    "evaluate_arch",
    "finetune",
    "load_model",
    "load_supernet",
    "model_cost",
    "preserved_bn_stats",
    "recalibrate_bn",
    "restore_rng_state",
    "retrain",
    "setup_distributed",
    "train_few_shot",
    "train_supernet",
]
