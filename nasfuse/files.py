"""Files nasfuse writes and reads: atomic writes, checkpoints and YAML that load safely.

A run may be killed at any moment; nothing it leaves behind may be half-written. Every
file is written to a temporary name in the same directory and renamed into place.

Every YAML file the product reads (space, architecture, config, a run's saved settings)
goes through :func:`read_yaml_mapping`, which refuses, naming the file, what would
otherwise exhaust memory or the stack: a file over :data:`MAX_YAML_BYTES`, aliases that
expand to more than :data:`MAX_YAML_NODES` nodes (a "billion laughs" file is a few hundred
bytes), recursive aliases, and nesting deeper than the parser's recursion can take.
"""

from __future__ import annotations

import io
import math
import os
import re
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

__all__ = [
    "CHECKPOINT_ENTRIES",
    "CheckpointError",
    "MAX_YAML_BYTES",
    "MAX_YAML_NODES",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_checkpoint_entries",
    "save_checkpoint",
    "load_checkpoint",
    "pack_tensors",
    "unpack_tensors",
    "parse_yaml_text",
    "read_yaml_mapping",
    "safe_file_name",
]

#: Largest YAML file read. The shipped spaces are about 1 KiB; a 72-site architecture 3 KiB.
MAX_YAML_BYTES = 1 << 20
#: Most nodes a YAML document may hold once its aliases are expanded (scalars, lists and
#: mappings each count one). The largest file nasfuse writes has about 200.
MAX_YAML_NODES = 100_000


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupted or of the wrong kind."""


_UNSAFE_NAME_CHARS = re.compile(r"[^\w.+-]+")


def safe_file_name(text: str, limit: int = 100) -> str:
    """``text`` as one safe file-name component, for paths built from user strings.

    Space, study, trial and site names come from files and flags: ``../../x``, an absolute
    path or a NUL byte must not move an output out of its folder. Every run of characters
    other than letters, digits, ``.``, ``_``, ``+`` and ``-`` becomes ``_``, leading dots
    and underscores are dropped (no ``..``, no hidden files), and the result is cut to
    ``limit`` characters.

    Example:
        >>> safe_file_name("../../etc/passwd")
        'etc_passwd'
    """
    name = re.sub(r"^[._]+", "", _UNSAFE_NAME_CHARS.sub("_", str(text))).rstrip("_")
    return name[:limit] or "unnamed"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    Raises:
        OSError: the write failed (disk full, read-only, no permission); its ``filename``
            is ``path`` (a failed ``write`` alone does not say which file) and the old
            file, if any, is left as it was.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


# A saved checkpoint keeps its tensors in one flat tensor per dtype and device: torch.save
# costs about 25 us per tensor, and a supernet with its optimiser holds 7,000 of them.
_STORE_KEY = "__nasfuse_tensor_store__"
_TENSOR_KEY = "__nasfuse_tensor__"


def _rebuilt(value: Any, convert: Callable[[Any], Any]) -> Any:
    """``value`` rebuilt through its dicts, lists and tuples, with ``convert(x)`` in place of
    every ``x`` for which it is not None. Dicts keep their type and ``_metadata`` (the
    version record of a state dict)."""
    converted = convert(value)
    if converted is not None:
        return converted
    if isinstance(value, dict):
        rebuilt = type(value)() if type(value) in (dict, OrderedDict) else {}
        rebuilt.update((key, _rebuilt(item, convert)) for key, item in value.items())
        if hasattr(value, "_metadata"):
            rebuilt._metadata = value._metadata  # type: ignore[attr-defined]
        return rebuilt
    if isinstance(value, (list, tuple)):
        return type(value)(_rebuilt(item, convert) for item in value)
    return value


def pack_tensors(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with its tensors moved into one flat tensor per dtype and device.

    Each strided tensor inside dicts, lists and tuples becomes ``{_TENSOR_KEY: [group,
    offset, *shape]}``; the flat tensors go under ``_STORE_KEY``. Everything else (numbers,
    strings, an ``OrderedDict``'s ``_metadata``) is kept as it is. :func:`unpack_tensors`
    is the inverse.
    """
    groups: dict[tuple[torch.dtype, torch.device], int] = {}
    parts: list[list[torch.Tensor]] = []
    sizes: list[int] = []

    def placeholder(value: Any) -> dict[str, list[int]] | None:
        if not isinstance(value, torch.Tensor) or value.layout != torch.strided:
            return None
        if value.is_quantized:
            return None
        group = groups.setdefault((value.dtype, value.device), len(parts))
        if group == len(parts):
            parts.append([])
            sizes.append(0)
        parts[group].append(value.detach().reshape(-1))
        offset = sizes[group]
        sizes[group] += value.numel()
        return {_TENSOR_KEY: [group, offset, *value.shape]}

    packed = _rebuilt(obj, placeholder)
    packed[_STORE_KEY] = [torch.cat(tensors) for tensors in parts]
    return packed


def unpack_tensors(obj: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint :func:`pack_tensors` packed, each tensor its own copy; ``obj``
    unchanged when it is not packed (a checkpoint written before packing).

    Raises:
        ValueError: a placeholder that does not fit the store.
    """
    if _STORE_KEY not in obj:
        return obj
    store = obj[_STORE_KEY]
    if not (isinstance(store, list) and all(isinstance(t, torch.Tensor) for t in store)):
        raise ValueError("its tensor store is not a list of tensors")

    def tensor(value: Any) -> torch.Tensor | None:
        if not (isinstance(value, dict) and len(value) == 1 and _TENSOR_KEY in value):
            return None
        spec = value[_TENSOR_KEY]
        if not (isinstance(spec, list) and len(spec) >= 2 and all(type(n) is int for n in spec)):
            raise ValueError(f"bad tensor placeholder {spec!r}")
        group, offset, *shape = spec
        size = math.prod(shape)
        if not (
            0 <= group < len(store)
            and offset >= 0
            and min(shape, default=0) >= 0
            and offset + size <= store[group].numel()
        ):
            raise ValueError(f"tensor placeholder {spec!r} is outside the store")
        return store[group][offset : offset + size].view(shape).clone()

    return _rebuilt({k: v for k, v in obj.items() if k != _STORE_KEY}, tensor)


def save_checkpoint(obj: dict[str, Any], path: str | Path, packed: bool = True) -> None:
    """Save a checkpoint dict atomically with ``torch.save``.

    Keep the contents to tensors, numbers, strings, lists and dicts so that
    :func:`load_checkpoint` can read it back with ``weights_only=True``. With ``packed``
    the tensors are stored as a few flat tensors (:func:`pack_tensors`): read the file with
    :func:`load_checkpoint`, which unpacks them; scalar entries (``epoch``, ``kind``) can
    be read with ``torch.load`` alone. A file other tools read (timm's ``checkpoint_path``
    reads ``model.pt``'s ``model`` entry) is saved unpacked.
    """
    buffer = io.BytesIO()
    torch.save(pack_tensors(obj) if packed else obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(
    path: str | Path, kind: str | None = None, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Args:
        path: the checkpoint file.
        kind: if given, the checkpoint's ``"kind"`` entry must equal it (for example
            ``"supernet"`` or ``"model"``), so a checkpoint of the wrong sort is refused.
        map_location: where tensors are loaded.

    Raises:
        CheckpointError: naming the file, when it is missing, unreadable, of the wrong kind,
            or holds an entry of the wrong type (see :data:`CHECKPOINT_ENTRIES`).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"{path}: not a readable nasfuse checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dict, found {type(obj).__name__}")
    try:
        obj = unpack_tensors(obj)
    except (IndexError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable nasfuse checkpoint ({exc})") from exc
    if kind is not None and obj.get("kind") != kind:
        raise CheckpointError(
            f"{path}: expected a {kind!r} checkpoint, found kind {obj.get('kind')!r}"
        )
    check_checkpoint_entries(obj, path)
    return obj


def _is_count(value: Any, minimum: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(key, str) and isinstance(tensor, torch.Tensor) for key, tensor in value.items()
    )


#: What each entry a nasfuse checkpoint may hold must be, so that a reader never meets a
#: value of the wrong type deep inside ``load_state_dict`` or ``int()``.
CHECKPOINT_ENTRIES: dict[str, tuple[str, Any]] = {
    "kind": ("a string", lambda v: isinstance(v, str)),
    "format": ("an integer >= 1", lambda v: _is_count(v, 1)),
    "model": ("a state dict (parameter name -> tensor)", _is_state_dict),
    "num_classes": ("an integer >= 0", _is_count),
    "in_chans": ("an integer >= 1", lambda v: _is_count(v, 1)),
    "input_size": ("an integer >= 1", lambda v: _is_count(v, 1)),
    "epoch": ("an integer >= 0", _is_count),
    "global_step": ("an integer >= 0", _is_count),
    "wall_time": (
        "a number",
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    ),
    "history": ("a list", lambda v: isinstance(v, list)),
    "arch": (
        "a mapping of site -> op",
        lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in (*v, *v.values())),
    ),
    **{
        key: ("a string", lambda v: isinstance(v, str))
        for key in ("space", "space_name", "space_hash", "dataset")
    },
    **{
        key: ("a mapping", lambda v: isinstance(v, dict))
        for key in ("optimizer", "scheduler", "scaler", "rng", "config", "extra", "space_options")
    },
}


def check_checkpoint_entries(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Refuse an entry of :data:`CHECKPOINT_ENTRIES` whose value is of the wrong type.

    Raises:
        CheckpointError: naming the file, the entry, what it should be and what it is.
    """
    for key, (expected, is_valid) in CHECKPOINT_ENTRIES.items():
        if key in checkpoint and not is_valid(checkpoint[key]):
            found = type(checkpoint[key]).__name__
            raise CheckpointError(
                f"{path}: not a usable nasfuse checkpoint: entry {key!r} should be "
                f"{expected}, found a {found}"
            )


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_node_count(root: yaml.Node, limit: int) -> int:
    """Nodes of the document with every alias expanded, without expanding them.

    An alias is the very node its anchor names, so the composed document is a graph of the
    file's own size; each node's expanded count is computed once. Stops past ``limit``.

    Raises:
        ValueError: for an alias inside the node it refers to (an infinite document).
    """
    counts: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = []
        if children_done:
            open_nodes.discard(id(node))
            counts[id(node)] = min(limit + 1, 1 + sum(counts[id(c)] for c in children))
            continue
        if id(node) in counts:
            continue
        open_nodes.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:
                raise ValueError(f"line {child.start_mark.line + 1}: an alias refers to itself")
            if id(child) not in counts:
                stack.append((child, False))
    return counts[id(root)]


def parse_yaml_text(text: str, source: str, error: type[ValueError] = ValueError) -> Any:
    """Parse one YAML document with the safe loader, within the limits above.

    Args:
        text: the document.
        source: what to name in errors (a file path, or ``override 'a=b'``).
        error: the ``ValueError`` subclass to raise (``SpaceError``, ``ConfigError``).

    Raises:
        error: ``"<source>: line L, column C: not valid YAML: ..."``, a key given twice,
            aliases expanding past :data:`MAX_YAML_NODES`, a recursive alias, or nesting
            too deep to parse.
    """
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            expanded = _expanded_node_count(node, MAX_YAML_NODES)
        except ValueError as exc:
            raise error(f"{source}: {exc}") from None
        if expanded > MAX_YAML_NODES:
            raise error(
                f"{source}: refused: its aliases expand to more than {MAX_YAML_NODES:,} "
                "YAML nodes (anchors repeated inside anchors); write the values out"
            )
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{source}: {where}not valid YAML: {problem}") from None
    except RecursionError:
        raise error(f"{source}: refused: nested too deeply to parse") from None
    finally:
        loader.dispose()


def read_yaml_mapping(
    path: str | Path,
    what: str = "a mapping",
    error: type[ValueError] = ValueError,
    allow_empty: bool = False,
) -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping, through :func:`parse_yaml_text`.

    Args:
        path: the file.
        what: what the top level should be, for the error (``"a search-space mapping"``).
        error: the ``ValueError`` subclass to raise.
        allow_empty: an empty file gives ``{}`` instead of an error.

    Raises:
        error: naming the file: larger than :data:`MAX_YAML_BYTES`, unreadable, not UTF-8,
            not valid or refused YAML (see :func:`parse_yaml_text`), or not a mapping.
        FileNotFoundError: if ``path`` does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise error(
                f"{path}: refused: {size:,} bytes is more than the {MAX_YAML_BYTES:,} a "
                f"YAML file nasfuse reads may have (expected {what})"
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise error(f"{path}: cannot be read as a UTF-8 text file ({reason})") from None
    data = parse_yaml_text(text, str(path), error)
    if data is None and allow_empty:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: expected {what} at the top level, got {type(data).__name__}")
    return data
