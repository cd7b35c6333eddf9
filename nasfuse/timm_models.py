"""timm entry points: ``timm.create_model("nasfuse_<space>", arch=...)`` for every shipped space.

``nasfuse_hrnet_lite``, ``nasfuse_resnet20`` and ``nasfuse_resnet18`` (one per file in
``search_spaces/``) are registered as soon as both ``nasfuse`` and ``timm`` are imported, in
either order: ``import nasfuse`` alone does not import timm (:func:`nasfuse._lazy.after_import`).

An architecture file's ``data`` (input channels, classes, mean/std, ...) sets the model's
defaults and its ``pretrained_cfg``, so ``timm.data.resolve_data_config`` gives the data
pipeline the network was trained with; explicit keyword arguments win. Weights come from
``checkpoint_path=`` or ``pretrained=True, pretrained_cfg_overlay=dict(file=...)`` (a
``model.safetensors`` or ``model.pt`` written by ``nasfuse retrain``).

Example:
    >>> import nasfuse, timm
    >>> model = timm.create_model("nasfuse_hrnet_lite", arch="runs/x/best.yaml")
    >>> model = timm.create_model(
    ...     "nasfuse_hrnet_lite", arch="runs/rt/arch.yaml",
    ...     pretrained=True, pretrained_cfg_overlay=dict(file="runs/rt/model.safetensors"))
    >>> model = timm.create_model("nasfuse_resnet20", arch="aff")       # every site -> aff
    >>> model = timm.create_model("nasfuse_resnet20")                   # every site -> add
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from timm.models import load_pretrained, register_model

from nasfuse.arch import arch_from_argument, read_arch
from nasfuse.spaces import FusionNet, SearchSpace, SpaceError, list_spaces, load_space
from nasfuse.supernet import build_model

__all__ = ["create_nasfuse_model", "resolve_arch", "OldArchFileWarning"]

# Arguments timm's create_model always passes; nasfuse models use only the cfg ones.
_TIMM_PASSTHROUGH = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")
# Where timm's load_pretrained can find weights.
_WEIGHT_SOURCES = ("file", "url", "state_dict", "hf_hub_id")
DEFAULT_NUM_CLASSES = 10


class OldArchFileWarning(UserWarning):
    """An architecture file without ``data``: the model gets nasfuse's defaults."""


def resolve_arch(
    space_name: str,
    arch: str | Path | Mapping[str, str] | None,
    space_options: Mapping[str, Any] | None = None,
) -> tuple[dict[str, str], SearchSpace]:
    """The architecture and space that ``arch`` means for the shipped space ``space_name``."""
    arch_dict, space, _data = _resolve(space_name, arch, space_options)
    return arch_dict, space


def _resolve(
    space_name: str,
    arch: str | Path | Mapping[str, str] | None,
    space_options: Mapping[str, Any] | None = None,
) -> tuple[dict[str, str], SearchSpace, dict[str, Any] | None]:
    """``(arch, space, data)``: ``data`` is a file's data facts, None when ``arch`` is no file.

    Args:
        space_name: a shipped space, e.g. ``"hrnet_lite"``.
        arch: an architecture file (its space must be ``space_name``), a mapping
            site -> op, an op name (every site gets it), or None (every site -> ``add``).
        space_options: overrides of the space; for a file, they must match the file's.

    Raises:
        SpaceError: for a file of another space, an invalid mapping or op.
        FileNotFoundError: for a path that does not exist.
    """
    if isinstance(arch, (str, Path)) and Path(arch).is_file():
        space = load_space(space_name, space_options) if space_options is not None else None
        loaded = read_arch(arch, space)
        if loaded.space.name != space_name:
            raise SpaceError(
                f"{arch}: an architecture of space {loaded.space.name!r} cannot build "
                f"nasfuse_{space_name}; use nasfuse_{loaded.space.name}"
            )
        return loaded.arch, loaded.space, loaded.data
    space = load_space(space_name, space_options)
    if arch is None:
        return space.uniform_arch("add"), space, None
    return arch_from_argument(arch, space), space, None


def pretrained_cfg_of(
    space: SearchSpace, data: Mapping[str, Any], num_classes: int, in_chans: int
) -> dict[str, Any]:
    """timm's ``pretrained_cfg`` of a model of ``space`` whose weights are for ``data``.

    As in timm, the cfg describes the weights' data (``data``'s channels and classes
    where recorded, else the model's own), so ``resolve_data_config`` gives the data
    pipeline they were trained with.
    """
    channels = int(data.get("in_chans", in_chans))
    cfg: dict[str, Any] = {
        "input_size": (channels, space.input_size, space.input_size),
        "num_classes": int(data.get("num_classes", num_classes)),
        "classifier": "classifier",
        "first_conv": "stem.0",
    }
    if "mean" in data and "std" in data:
        cfg["mean"], cfg["std"] = tuple(data["mean"]), tuple(data["std"])
    if "interpolation" in data:
        cfg["interpolation"] = data["interpolation"]
    if "crop_pct" in data:
        cfg["crop_pct"] = data["crop_pct"]
    if "dataset" in data:
        cfg["tag"] = data["dataset"]
    return cfg


def create_nasfuse_model(
    space_name: str,
    pretrained: bool = False,
    arch: str | Path | Mapping[str, str] | None = None,
    space_options: Mapping[str, Any] | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
    pretrained_cfg: Mapping[str, Any] | None = None,
    pretrained_cfg_overlay: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> FusionNet:
    """Build the standalone model of ``arch`` in the shipped space ``space_name``.

    ``num_classes`` and ``in_chans`` default to what an architecture file's ``data``
    records, else 10 classes and the space's channels. A file without ``data`` (written
    before nasfuse recorded it) gives an :class:`OldArchFileWarning`.

    Args:
        pretrained: load the weights a ``pretrained_cfg_overlay`` (or ``pretrained_cfg``)
            names with ``file=`` (``model.safetensors`` or ``model.pt``), strictly
            where the model matches them (timm adapts the classifier and stem otherwise).
        pretrained_cfg, pretrained_cfg_overlay: timm's; a dict replaces or updates the
            cfg nasfuse derives from the file.

    Raises:
        ValueError: for ``pretrained=True`` without a weight file, or an argument nasfuse
            models do not take.
    """
    unsupported = sorted(k for k in kwargs if k not in _TIMM_PASSTHROUGH)
    if unsupported:
        raise ValueError(
            f"nasfuse_{space_name} does not take {', '.join(unsupported)}; it takes arch, "
            "space_options, num_classes and in_chans"
        )
    arch_dict, space, data = _resolve(space_name, arch, space_options)
    if data is not None and not data:
        warnings.warn(
            f"{arch}: this architecture file records no data (written before nasfuse kept "
            f"it): building for {in_chans or space.in_chans} input channels and "
            f"{num_classes or DEFAULT_NUM_CLASSES} classes, with timm's default "
            "normalisation; pass in_chans= and num_classes=, use the arch.yaml that "
            "`nasfuse retrain` writes beside model.pt, or re-export the file",
            OldArchFileWarning,
            stacklevel=3,
        )
    data = data or {}
    num_classes = num_classes if num_classes is not None else data.get("num_classes")
    num_classes = num_classes if num_classes is not None else DEFAULT_NUM_CLASSES
    in_chans = in_chans if in_chans is not None else data.get("in_chans", space.in_chans)
    cfg = pretrained_cfg_of(space, data, num_classes, in_chans)
    # timm passes its registry's cfg object when none was given; only a dict is the user's.
    if isinstance(pretrained_cfg, Mapping):
        cfg.update(pretrained_cfg)
    cfg.update(pretrained_cfg_overlay or {})
    cfg["architecture"] = f"nasfuse_{space_name}"
    if pretrained and not any(cfg.get(key) for key in _WEIGHT_SOURCES):
        raise ValueError(
            f"nasfuse_{space_name} has no pretrained weights of its own: train the "
            "architecture with `nasfuse retrain ARCH.yaml`, then pass "
            "pretrained_cfg_overlay=dict(file='<run>/model.safetensors') (with "
            "pretrained=True) or checkpoint_path= to timm.create_model"
        )
    model = build_model(space, arch_dict, num_classes=num_classes, in_chans=in_chans)
    model.pretrained_cfg = cfg
    model.default_cfg = model.pretrained_cfg
    if pretrained:
        load_pretrained(model, cfg, num_classes=num_classes, in_chans=in_chans, strict=True)
    return model


def _entry_point(space_name: str) -> Callable[..., FusionNet]:
    def entry_point(pretrained: bool = False, **kwargs: Any) -> FusionNet:
        return create_nasfuse_model(space_name, pretrained=pretrained, **kwargs)

    entry_point.__name__ = entry_point.__qualname__ = f"nasfuse_{space_name}"
    entry_point.__module__ = __name__
    entry_point.__doc__ = (
        f"The {space_name!r} search space's model of ``arch`` (a file, a site -> op "
        "mapping, an op name, or None for all-add); see ``create_nasfuse_model``."
    )
    return entry_point


for _name in list_spaces():
    globals()[f"nasfuse_{_name}"] = register_model(_entry_point(_name))
