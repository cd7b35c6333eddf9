"""Finding and loading space files: shipped names, paths, overrides, recorded spaces."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nasfuse import files
from nasfuse.spaces._memory import check_training_memory
from nasfuse.spaces._resolve import resolve_space, with_overrides
from nasfuse.spaces._schema import SpaceError, Where
from nasfuse.spaces._space import SearchSpace, SpaceMismatchError

__all__ = [
    "list_spaces",
    "load_recorded_space",
    "load_space",
    "read_yaml_mapping",
    "shipped_space_dirs",
]


def shipped_space_dirs() -> list[Path]:
    """Where shipped spaces are looked up: in the wheel, then the repository's top level."""
    package = Path(__file__).resolve().parent.parent
    return [package / "search_spaces", package.parent / "search_spaces"]


def list_spaces() -> list[str]:
    """Names of the shipped spaces (``hrnet_lite``, ``resnet18``, ``resnet20``)."""
    names: set[str] = set()
    for folder in shipped_space_dirs():
        if folder.is_dir():
            names.update(path.stem for path in folder.glob("*.yaml"))
    return sorted(names)


def _find_space_file(name_or_path: str | Path) -> tuple[Path, str]:
    """The file to read and the ``source`` to record (shipped name or resolved path)."""
    text = str(name_or_path)
    path = Path(text)
    if path.is_file():
        return path, str(path.resolve())
    if (
        not isinstance(name_or_path, Path)
        and "/" not in text
        and not text.endswith((".yaml", ".yml"))
    ):
        for folder in shipped_space_dirs():
            candidate = folder / f"{text}.yaml"
            if candidate.is_file():
                return candidate, text
        raise SpaceError(
            f"unknown search space {text!r}: not a shipped space ({', '.join(list_spaces()) or 'none found'}) "
            "and not a file"
        )
    raise FileNotFoundError(f"{text}: search space file not found")


def read_yaml_mapping(path: Path, what: str = "a mapping") -> dict[str, Any]:
    """Parse ``path`` as YAML within nasfuse's limits; ``SpaceError`` naming the file."""
    return files.read_yaml_mapping(path, what, SpaceError)


def load_space(name_or_path: str | Path, overrides: Mapping[str, Any] | None = None) -> SearchSpace:
    """Load and validate a search space.

    Args:
        name_or_path: a shipped name (``"hrnet_lite"``, see :func:`list_spaces`) or a YAML
            file.
        overrides: ``{"width_mult": 0.5, "stages.0.modules": 1}``: dotted keys into the
            file's mapping, validated like the file; they change the space's hash.

    Raises:
        SpaceError: naming the file and the key, for unknown keys or ops, channel lists
            that do not match the branch count, non-positive sizes, invalid YAML (with the
            line), an unknown shipped name, a width or input size whose training could
            not fit in this machine's memory even at batch size 1.
        FileNotFoundError: for a path that does not exist.

    Example:
        >>> space = load_space("hrnet_lite", {"width_mult": 0.5})
        >>> site = space.sites["stage3.module1.fuse.branch2"]  # Site(channels=80, ...)
    """
    path, source = _find_space_file(name_or_path)
    raw = read_yaml_mapping(path, "a search-space mapping")
    options = dict(overrides or {})
    label = str(path)
    if options:
        label = f"{path} (with overrides {options})"
        raw = with_overrides(raw, options, label)
    config, sites = resolve_space(raw, Where(label))
    space = SearchSpace(config, sites, source, options)
    check_training_memory(space, 1, label)
    return space


def load_recorded_space(
    record: Mapping[str, Any], what: str, where: str | Path, remedy: str
) -> SearchSpace:
    """The space that ``record`` was saved for, refused if it is not the same any more.

    Args:
        record: what an architecture file or checkpoint keeps of its space: ``space`` (a
            shipped name or a file), ``space_options`` and ``space_hash``.
        what, where, remedy: as for :meth:`SearchSpace.check_hash`.

    Raises:
        SpaceMismatchError: naming ``where``, if the space cannot be loaded as recorded
            (a file gone, options no longer valid) or its hash is not the recorded one.
    """
    source = str(record["space"])
    try:
        space = load_space(source, record.get("space_options") or {})
    except (ValueError, FileNotFoundError) as exc:
        raise SpaceMismatchError(
            f"{where}: cannot load the space {source!r} {what} was saved for: {exc}; {remedy}"
        ) from exc
    space.check_hash(record, what, where, remedy)
    return space
