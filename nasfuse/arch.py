"""Architecture files: site -> op, with the space's name, options and hash.

File layout (YAML)::

    space: hrnet_lite            # shipped name or path of the space file
    space_options: {}            # overrides the space was loaded with
    space_hash: 0123456789abcdef
    arch: {stage2.module0.branch0.block0: add, ...}
    metrics: {accuracy: 0.91, latency_ms: 3.2}

Loading refuses an architecture made for another space, for an edited space (hash
mismatch), with a missing or unknown site, or with an op not allowed at its site.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from nasfuse.files import atomic_write_text
from nasfuse.spaces import SearchSpace, SpaceError, load_space
from nasfuse.spaces._space import read_yaml_mapping

__all__ = ["arch_hash", "save_arch", "load_arch", "arch_from_argument", "ARCH_FILE_KEYS"]

ARCH_FILE_KEYS = ("space", "space_options", "space_hash", "arch", "metrics")


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


def save_arch(
    arch: Mapping[str, str],
    path: str | Path,
    space: SearchSpace,
    metrics: Mapping[str, Any] | None = None,
) -> None:
    """Write ``arch`` (validated against ``space``) as YAML, atomically.

    Args:
        arch: site -> op.
        path: the file to write.
        space: the space ``arch`` belongs to; its source, options and hash are recorded.
        metrics: optional numbers to keep with it (accuracy, latency_ms, params, ...).
    """
    arch = space.validate_arch(arch)
    document = {
        "space": space.source,
        "space_options": _plain(space.options),
        "space_hash": space.hash,
        "arch": arch,
        "metrics": _plain(dict(metrics or {})),
    }
    atomic_write_text(path, yaml.safe_dump(document, sort_keys=False))


def load_arch(
    path: str | Path, space: SearchSpace | None = None
) -> tuple[dict[str, str], SearchSpace]:
    """Read an architecture file; return ``(arch, space)``.

    Args:
        path: the YAML file written by :func:`save_arch`.
        space: the space it must belong to; None loads the space the file names, with
            the options it records.

    Raises:
        SpaceError: naming the file, for another space, an edited space (hash mismatch),
            a missing or unknown site, an op not allowed at its site, or a malformed file.
        FileNotFoundError: if ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: architecture file not found")
    data = read_yaml_mapping(path, "an architecture mapping")
    unknown = [str(k) for k in data if k not in ARCH_FILE_KEYS]
    if unknown:
        raise SpaceError(
            f"{path}: unknown key(s) {', '.join(unknown)}; expected: {', '.join(ARCH_FILE_KEYS)}"
        )
    missing = [k for k in ("space", "space_hash", "arch") if k not in data]
    if missing:
        raise SpaceError(f"{path}: missing key(s) {', '.join(missing)}")
    recorded = str(data["space"])
    options = data.get("space_options") or {}
    if not isinstance(options, Mapping):
        raise SpaceError(f"{path}: key 'space_options': expected a mapping, got {options!r}")
    if space is None:
        try:
            space = load_space(recorded, options)
        except (SpaceError, FileNotFoundError) as exc:
            raise SpaceError(f"{path}: cannot load its space {recorded!r}: {exc}") from exc
    if str(data["space_hash"]) != space.hash:
        if recorded not in (space.source, space.name):
            raise SpaceError(
                f"{path}: this architecture is for space {recorded!r}, not {space.name!r} "
                f"(hash {data['space_hash']} != {space.hash})"
            )
        raise SpaceError(
            f"{path}: space {recorded!r} has changed since this architecture was saved: "
            f"hash {data['space_hash']} (options {dict(options)}) != {space.hash} "
            f"(options {space.options}); the space file was edited or loaded with other options"
        )
    arch = data["arch"]
    if not isinstance(arch, Mapping):
        raise SpaceError(f"{path}: key 'arch': expected a mapping of site -> op, got {arch!r}")
    return space.validate_arch(arch, source=str(path)), space


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
