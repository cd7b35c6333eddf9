"""nasfuse: neural architecture search over feature-fusion operators.

The public API, one name per stage of the pipeline::

    create_op, list_ops                         # nasfuse.ops: the fusion operators
    load_space, list_spaces, SearchSpace, Site  # nasfuse.spaces: YAML search spaces
    Supernet, build_model, arch_cost            # nasfuse.supernet: weight sharing, models
    save_arch, load_arch, arch_hash             # nasfuse.arch: architecture files
    build_loaders                               # nasfuse.data: datasets
    train_supernet, load_supernet, recalibrate_bn, evaluate, evaluate_arch, retrain
                                                # nasfuse.training
    measure_latency, LatencyTable               # nasfuse.latency
    SearchConfig, run_search, export_run        # nasfuse.search: Optuna inside Ray Tune

Names outside ``nasfuse.ops`` are imported on first use, so that ``import nasfuse`` (and
``timm.create_model("nasfuse_...")``) does not pay for Ray, Optuna and TensorBoard.
"""

from __future__ import annotations

from nasfuse._lazy import after_import, lazy_exports
from nasfuse.ops import create_op, list_ops

__version__ = "0.1.0"

_LAZY = {
    "nasfuse.spaces": ("SearchSpace", "Site", "list_spaces", "load_space"),
    "nasfuse.supernet": ("Supernet", "arch_cost", "build_model"),
    "nasfuse.arch": ("arch_hash", "load_arch", "save_arch"),
    "nasfuse.data": ("build_loaders",),
    "nasfuse.training": (
        "evaluate",
        "evaluate_arch",
        "load_supernet",
        "recalibrate_bn",
        "retrain",
        "train_supernet",
    ),
    "nasfuse.latency": ("LatencyTable", "measure_latency"),
    "nasfuse.search": ("SearchConfig", "export_run", "run_search"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = ["__version__", "create_op", "list_ops", *_WHERE]


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)

# timm.create_model("nasfuse_<space>") works once both are imported, in either order.
after_import("timm", "nasfuse.timm_models")
