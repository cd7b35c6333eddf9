"""Architecture files: site -> op, with the space's name, options and hash.

File layout (YAML)::

    space: hrnet_lite            # shipped name or path of the space file
    space_options: {}            # overrides the space was loaded with
    space_hash: 0123456789abcdef
    arch: {stage2.module0.branch0.block0: add, ...}
    metrics: {accuracy: 0.91, latency_ms: 3.2}
    data:                        # optional: what the network was searched/trained on
      dataset: digits
      in_chans: 1
      num_classes: 10
      input_size: 16
      mean: [0.3079]
      std: [0.3813]
      interpolation: bilinear
      crop_pct: 1.0

``data`` is what a user of the file needs to rebuild the network for its data
(``timm.create_model("nasfuse_<space>", arch=FILE)`` reads it); files written before it
existed load without it.

Loading refuses an architecture made for another space, for an edited space (hash
mismatch), with a missing or unknown site, or with an op not allowed at its site.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from nasfuse.files import atomic_write_text
from nasfuse.spaces import SearchSpace, SpaceError, load_recorded_space
from nasfuse.spaces._loading import read_yaml_mapping

if TYPE_CHECKING:
    from nasfuse.data import DataBundle

__all__ = [
    "arch_hash",
    "save_arch",
    "load_arch",
    "read_arch",
    "ArchFile",
    "data_fields",
    "arch_from_argument",
    "ARCH_FILE_KEYS",
    "DATA_KEYS",
]

ARCH_FILE_KEYS = ("space", "space_options", "space_hash", "arch", "metrics", "data")
DATA_KEYS = (
    "dataset",
    "in_chans",
    "num_classes",
    "input_size",
    "mean",
    "std",
    "interpolation",
    "crop_pct",
)
# timm's names (timm.data.create_transform); nasfuse's loaders resize bilinearly.
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass
class ArchFile:
    """An architecture file's content (see :func:`read_arch`).

    Attributes:
        arch: site -> op, validated against ``space``.
        space: the space it belongs to.
        metrics: the numbers kept with it (may be empty).
        data: the recorded data facts, a subset of :data:`DATA_KEYS` (empty for files
            written before they were recorded).
        path: where it was read from.
    """

    arch: dict[str, str]
    space: SearchSpace
    metrics: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def arch_hash(arch: Mapping[str, str]) -> str:
    """16 hex chars identifying ``arch``; independent of the order of its items."""
    canonical = json.dumps({str(k): str(v) for k, v in arch.items()}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    """``value`` with numpy/torch scalars turned into Python numbers, so YAML can hold it."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def data_fields(bundle: DataBundle) -> dict[str, Any]:
    """The data facts of ``bundle``, as keyword arguments of :func:`save_arch`.

    Example:
        >>> save_arch(arch, "best.yaml", space, metrics, **data_fields(bundle))
    """
    return {
        "dataset": bundle.name,
        "in_chans": bundle.in_chans,
        "num_classes": bundle.num_classes,
        "input_size": bundle.input_size,
        "mean": list(bundle.mean),
        "std": list(bundle.std),
        "interpolation": "bilinear",  # v2.Resize's default, which every nasfuse loader uses
        "crop_pct": bundle.crop_pct,
    }


def _check_data(data: Any, space: SearchSpace, source: str) -> dict[str, Any]:
    """``data`` (a file's ``data`` mapping) checked; raises SpaceError naming ``source``."""
    if not isinstance(data, Mapping):
        raise SpaceError(f"{source}: key 'data': expected a mapping, got {data!r}")
    unknown = [str(k) for k in data if k not in DATA_KEYS]
    if unknown:
        raise SpaceError(
            f"{source}: key 'data': unknown key(s) {', '.join(unknown)}; "
            f"expected: {', '.join(DATA_KEYS)}"
        )

    def refuse(key: str, expected: str) -> SpaceError:
        return SpaceError(f"{source}: key 'data.{key}': expected {expected}, got {data[key]!r}")

    checked: dict[str, Any] = {}
    if "dataset" in data:
        if not isinstance(data["dataset"], str) or not data["dataset"]:
            raise refuse("dataset", "a name")
        checked["dataset"] = data["dataset"]
    for key in ("in_chans", "num_classes", "input_size"):
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise refuse(key, "a positive integer")
            checked[key] = value
    if checked.get("input_size", space.input_size) != space.input_size:
        raise SpaceError(
            f"{source}: key 'data.input_size': {checked['input_size']} is not the input size "
            f"of its space ({space.input_size})"
        )
    channels = checked.get("in_chans", space.in_chans)
    for key in ("mean", "std"):
        if key in data:
            value = data[key]
            numbers = isinstance(value, list) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
            )
            if not numbers or len(value) != channels or (key == "std" and min(value) <= 0):
                what = "positive numbers" if key == "std" else "numbers"
                raise refuse(key, f"a list of {channels} {what} (one per input channel)")
            checked[key] = [float(v) for v in value]
    if "interpolation" in data:
        if data["interpolation"] not in INTERPOLATIONS:
            raise refuse("interpolation", f"one of {', '.join(INTERPOLATIONS)}")
        checked["interpolation"] = data["interpolation"]
    if "crop_pct" in data:
        value = data["crop_pct"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise refuse("crop_pct", "a number in (0, 1]")
        checked["crop_pct"] = float(value)
    return checked


def save_arch(
    arch: Mapping[str, str],
    path: str | Path,
    space: SearchSpace,
    metrics: Mapping[str, Any] | None = None,
    *,
    dataset: str | None = None,
    in_chans: int | None = None,
    num_classes: int | None = None,
    input_size: int | None = None,
    mean: list[float] | tuple[float, ...] | None = None,
    std: list[float] | tuple[float, ...] | None = None,
    interpolation: str | None = None,
    crop_pct: float | None = None,
) -> None:
    """Write ``arch`` (validated against ``space``) as YAML, atomically.

    Args:
        arch: site -> op.
        path: the file to write.
        space: the space ``arch`` belongs to; its source, options and hash are recorded.
        metrics: optional numbers to keep with it (accuracy, latency_ms, params, ...).
        dataset, in_chans, num_classes, input_size, mean, std, interpolation, crop_pct:
            the data the network is for (``**data_fields(bundle)`` gives them all); those
            given are recorded under ``data``, checked as :func:`read_arch` checks them.
            One keyword-only argument per :data:`DATA_KEYS` entry, rather than one
            mapping, so that a misspelt fact is a ``TypeError`` at the call.

    Raises:
        SpaceError: for an architecture that does not fit ``space`` or inconsistent data
            facts (nothing is written).
    """
    arch = space.validate_arch(arch)
    given = {
        "dataset": dataset,
        "in_chans": in_chans,
        "num_classes": num_classes,
        "input_size": input_size,
        "mean": mean,
        "std": std,
        "interpolation": interpolation,
        "crop_pct": crop_pct,
    }
    data = _check_data(_plain({k: v for k, v in given.items() if v is not None}), space, str(path))
    document = {
        "space": space.source,
        "space_options": _plain(space.options),
        "space_hash": space.hash,
        "arch": arch,
        "metrics": _plain(dict(metrics or {})),
    }
    if data:
        document["data"] = data
    atomic_write_text(path, yaml.safe_dump(document, sort_keys=False))


def load_arch(
    path: str | Path, space: SearchSpace | None = None
) -> tuple[dict[str, str], SearchSpace]:
    """Read an architecture file; return ``(arch, space)`` (see :func:`read_arch`)."""
    loaded = read_arch(path, space)
    return loaded.arch, loaded.space


def read_arch(path: str | Path, space: SearchSpace | None = None) -> ArchFile:
    """Read an architecture file, with its metrics and data facts.

    Args:
        path: the YAML file written by :func:`save_arch`.
        space: the space it must belong to; None loads the space the file names, with
            the options it records.

    Raises:
        SpaceError: naming the file, for another space, an edited space (hash mismatch),
            a missing or unknown site, an op not allowed at its site, data facts that
            contradict each other or the space, or a malformed file.
        FileNotFoundError: if ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: architecture file not found")
    document = read_yaml_mapping(path, "an architecture mapping")
    unknown = [str(k) for k in document if k not in ARCH_FILE_KEYS]
    if unknown:
        raise SpaceError(
            f"{path}: unknown key(s) {', '.join(unknown)}; expected: {', '.join(ARCH_FILE_KEYS)}"
        )
    missing = [k for k in ("space", "space_hash", "arch") if k not in document]
    if missing:
        raise SpaceError(f"{path}: missing key(s) {', '.join(missing)}")
    options = document.get("space_options") or {}
    if not isinstance(options, Mapping):
        raise SpaceError(f"{path}: key 'space_options': expected a mapping, got {options!r}")
    remedy = "use the space it was saved for, or save the architecture again for this one"
    if space is None:
        space = load_recorded_space(document, "this architecture", path, remedy)
    else:
        space.check_hash(document, "this architecture", path, remedy)
    arch = document["arch"]
    if not isinstance(arch, Mapping):
        raise SpaceError(f"{path}: key 'arch': expected a mapping of site -> op, got {arch!r}")
    metrics = document.get("metrics") or {}
    if not isinstance(metrics, Mapping):
        raise SpaceError(f"{path}: key 'metrics': expected a mapping, got {metrics!r}")
    return ArchFile(
        arch=space.validate_arch(arch, source=str(path)),
        space=space,
        metrics=dict(metrics),
        data=_check_data(document.get("data") or {}, space, str(path)),
        path=path,
    )


def arch_from_argument(value: str | Path | Mapping[str, str], space: SearchSpace) -> dict[str, str]:
    """The architecture a user means by ``value`` in ``space``.

    Args:
        value: an architecture file (checked against ``space``), an op name (every site
            gets it), or a mapping site -> op.
        space: the space the architecture must belong to.

    Raises:
        SpaceError: for an architecture that does not fit ``space``.
        FileNotFoundError: for a string that is neither a file nor an op of ``space``.
    """
    if isinstance(value, Mapping):
        return space.validate_arch(value)
    if Path(value).is_file():
        return load_arch(value, space)[0]
    if str(value) in space.config["ops"]:
        return space.uniform_arch(str(value))
    raise FileNotFoundError(
        f"{value}: neither an architecture file nor an op of space {space.name!r} "
        f"({', '.join(space.config['ops'])})"
    )
