"""timm entry points: ``timm.create_model("nasfuse_<space>", arch=...)`` for every shipped space.

Importing ``nasfuse`` registers ``nasfuse_hrnet_lite``, ``nasfuse_resnet20`` and
``nasfuse_resnet18`` (one per file in ``search_spaces/``).

Example:
    >>> import nasfuse, timm
    >>> model = timm.create_model("nasfuse_hrnet_lite", arch="runs/x/best.yaml", num_classes=10)
    >>> model = timm.create_model("nasfuse_resnet20", arch="aff")       # every site -> aff
    >>> model = timm.create_model("nasfuse_resnet20")                   # every site -> add
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from timm.models import register_model

from nasfuse.arch import arch_from_argument, load_arch
from nasfuse.spaces import FusionNet, SearchSpace, SpaceError, list_spaces, load_space
from nasfuse.supernet import build_model

__all__ = ["create_nasfuse_model", "resolve_arch"]

# Arguments timm's create_model always passes; nasfuse models have no use for them.
_TIMM_PASSTHROUGH = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def resolve_arch(
    space_name: str,
    arch: str | Path | Mapping[str, str] | None,
    space_options: Mapping[str, Any] | None = None,
) -> tuple[dict[str, str], SearchSpace]:
    """The architecture and space that ``arch`` means for the shipped space ``space_name``.

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
        loaded, space = load_arch(arch, space)
        if space.name != space_name:
            raise SpaceError(
                f"{arch}: an architecture of space {space.name!r} cannot build nasfuse_{space_name}; "
                f"use nasfuse_{space.name}"
            )
        return loaded, space
    space = load_space(space_name, space_options)
    if arch is None:
        return space.uniform_arch("add"), space
    return arch_from_argument(arch, space), space


def create_nasfuse_model(
    space_name: str,
    pretrained: bool = False,
    arch: str | Path | Mapping[str, str] | None = None,
    space_options: Mapping[str, Any] | None = None,
    num_classes: int = 10,
    in_chans: int | None = None,
    **kwargs: Any,
) -> FusionNet:
    """Build the standalone model of ``arch`` in the shipped space ``space_name`` (fresh weights).

    Raises:
        ValueError: for ``pretrained=True`` (there are no pretrained nasfuse weights) or an
            argument nasfuse models do not take.
    """
    if pretrained:
        raise ValueError(
            f"nasfuse_{space_name} has no pretrained weights: train the architecture with "
            "`nasfuse retrain ARCH.yaml`, then pass checkpoint_path= to timm.create_model"
        )
    unsupported = sorted(k for k in kwargs if k not in _TIMM_PASSTHROUGH)
    if unsupported:
        raise ValueError(
            f"nasfuse_{space_name} does not take {', '.join(unsupported)}; it takes arch, "
            "space_options, num_classes and in_chans"
        )
    arch_dict, space = resolve_arch(space_name, arch, space_options)
    model = build_model(space, arch_dict, num_classes=num_classes, in_chans=in_chans)
    channels = in_chans if in_chans is not None else space.in_chans
    model.pretrained_cfg = {
        "architecture": f"nasfuse_{space_name}",
        "input_size": (channels, space.input_size, space.input_size),
        "num_classes": num_classes,
        "classifier": "classifier",
        "first_conv": "stem.0",
    }
    model.default_cfg = model.pretrained_cfg
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
