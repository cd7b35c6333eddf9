"""Hostile and broken inputs end in one clear line naming the file, exit code 2, no traceback.

Each case writes a file (a space, an architecture, a config, a checkpoint) or a ``--set``
value built to break a naive reader, runs the ``nasfuse`` command on it in a subprocess
(a runaway case must not take the test process with it) and checks what a user sees.
Issue 19: an alias bomb ended in ``MemoryError`` after a minute and 3 GB; a checkpoint
whose ``model`` is not a state dict in ``TypeError: Expected state_dict to be dict-like``.
"""

from __future__ import annotations

import fractions
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from nasfuse.files import MAX_YAML_BYTES, save_checkpoint

REPO = Path(__file__).resolve().parent.parent
RESNET20 = (REPO / "search_spaces" / "resnet20.yaml").read_text()


def anchors_nested(depth: int, fan_out: int = 9) -> str:
    """A flow list ``[&a [x, ...], &b [*a, ...], ...]`` of ``fan_out ** depth`` scalars."""
    items = [f"&l0 [{', '.join(['x'] * fan_out)}]"]
    for level in range(1, depth):
        items.append(f"&l{level} [{', '.join([f'*l{level - 1}'] * fan_out)}]")
    return f"[{', '.join(items)}]"


def space_with(description: str) -> str:
    return RESNET20.replace("description: CIFAR ResNet-20", f"description: {description}")


def write_text(text: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(text)


def write_checkpoint(**entries) -> Callable[[Path], None]:
    return lambda path: save_checkpoint(entries, path)


def supernet_entries(**changed) -> dict:
    return {
        "kind": "supernet",
        "format": 1,
        "model": {"w": torch.zeros(1)},
        "num_classes": 10,
        "in_chans": 1,
        "space": "resnet20",
        "space_options": {},
        "space_hash": "0" * 16,
        **changed,
    }


@dataclass
class Case:
    """``args`` holds ``{file}`` where the hostile file's path goes, ``{arch}`` for a valid arch."""

    name: str
    file_name: str
    write: Callable[[Path], None] | None
    args: tuple[str, ...]
    message: str  # a regex the error line must match


SPACE_SHOW = ("space", "show", "{file}")
CASES = [
    # --- YAML: search spaces
    Case(
        "space alias bomb",
        "bomb.yaml",
        write_text(space_with(anchors_nested(9))),
        SPACE_SHOW,
        "aliases expand",
    ),
    Case(
        "space recursive alias",
        "loop.yaml",
        write_text(space_with("&d [*d]")),
        SPACE_SHOW,
        "refers to itself",
    ),
    Case(
        "space nested 50,000 deep",
        "deep.yaml",
        write_text(space_with("[" * 50_000 + "]" * 50_000)),
        SPACE_SHOW,
        "nested too deeply",
    ),
    Case(
        "space larger than the cap",
        "big.yaml",
        write_text(RESNET20 + "#" * MAX_YAML_BYTES + "\n"),
        SPACE_SHOW,
        "bytes",
    ),
    Case(
        "space not UTF-8",
        "latin1.yaml",
        lambda p: p.write_bytes(b"name: r\xe9s\xff\n"),
        SPACE_SHOW,
        "UTF-8",
    ),
    Case(
        "space key given twice",
        "twice.yaml",
        write_text(RESNET20 + "width_mult: 2.0\n"),
        SPACE_SHOW,
        "given twice",
    ),
    Case(
        "space YAML syntax error",
        "syntax.yaml",
        write_text("name: [unclosed\n"),
        SPACE_SHOW,
        "not valid YAML",
    ),
    Case(
        "space top level a list",
        "list.yaml",
        write_text("- 1\n- 2\n"),
        SPACE_SHOW,
        "expected a search-space mapping",
    ),
    Case("space file is a directory", "adir.yaml", lambda p: p.mkdir(), SPACE_SHOW, "not found"),
    Case(
        "space with a 10^9-node description",
        "desc.yaml",
        write_text(space_with(anchors_nested(9, 10))),
        SPACE_SHOW,
        "aliases expand",
    ),
    # --- YAML: architecture and stage config files
    Case(
        "arch alias bomb",
        "arch.yaml",
        write_text(f"space: resnet20\nspace_hash: x\narch: {anchors_nested(9)}\n"),
        ("eval", "{file}", "--checkpoint", "missing.pt"),
        "aliases expand",
    ),
    Case(
        "arch nested deep",
        "arch.yaml",
        write_text("arch: " + "{a: " * 20_000 + "1" + "}" * 20_000 + "\n"),
        ("retrain", "{file}"),
        "nested too deeply",
    ),
    Case(
        "config alias bomb",
        "cfg.yaml",
        write_text(f"tags: {anchors_nested(9)}\n"),
        ("train-supernet", "--space", "resnet20", "--config", "{file}", "--out", "{tmp}/run"),
        "aliases expand",
    ),
    Case(
        "config recursive alias",
        "cfg.yaml",
        write_text("epochs: &e [*e]\n"),
        ("retrain", "{arch}", "--config", "{file}", "--out", "{tmp}/run"),
        "refers to itself",
    ),
    Case(
        "override alias bomb",
        "",
        None,
        ("space", "show", "resnet20", "--set", f"description={anchors_nested(7)}"),
        "override.*aliases expand",
    ),
    # --- checkpoints
    Case(
        "eval: model entry a list",
        "ck.pt",
        write_checkpoint(kind="model", model=[1, 2], num_classes=10, in_chans=1),
        ("eval", "{arch}", "--checkpoint", "{file}"),
        "entry 'model' should be a state dict",
    ),
    Case(
        "eval: model entry of strings",
        "ck.pt",
        write_checkpoint(kind="model", model={"w": "x"}, num_classes=10, in_chans=1),
        ("eval", "{arch}", "--checkpoint", "{file}"),
        "entry 'model'",
    ),
    Case(
        "eval: num_classes a string",
        "ck.pt",
        write_checkpoint(**supernet_entries(num_classes="ten")),
        ("eval", "{arch}", "--checkpoint", "{file}"),
        "entry 'num_classes'",
    ),
    Case(
        "eval: space_options a list",
        "ck.pt",
        write_checkpoint(**supernet_entries(space_options=[1])),
        ("eval", "{arch}", "--checkpoint", "{file}"),
        "entry 'space_options'",
    ),
    Case(
        "eval: a pickled object",
        "ck.pt",
        lambda p: torch.save({"kind": fractions.Fraction(1, 3)}, p),
        ("eval", "{arch}", "--checkpoint", "{file}"),
        "not a readable",
    ),
    Case(
        "eval: a text file",
        "ck.pt",
        write_text("not a checkpoint\n"),
        ("eval", "{arch}", "--checkpoint", "{file}"),
        "not a readable",
    ),
    Case(
        "eval: top level a list",
        "ck.pt",
        lambda p: torch.save([1, 2], p),
        ("eval", "{arch}", "--checkpoint", "{file}"),
        "expected a checkpoint dict",
    ),
    Case(
        "retrain --init supernet: model a tensor",
        "ck.pt",
        write_checkpoint(**supernet_entries(model=torch.zeros(3))),
        ("retrain", "{arch}", "--init", "supernet", "--supernet", "{file}", "--out", "{tmp}/run"),
        "entry 'model'",
    ),
    Case(
        "search --supernet: model a list",
        "ck.pt",
        write_checkpoint(**supernet_entries(model=[1])),
        ("search", "--space", "resnet20", "--supernet", "{file}", "--out", "{tmp}/run"),
        "entry 'model'",
    ),
    # --- sizes that cannot fit (3 TiB, 6 TiB at batch 1; 180 GiB at batch 32)
    Case(
        "width_mult 1000",
        "",
        None,
        ("space", "show", "resnet20", "--set", "width_mult=1000"),
        "resnet20.*refused before allocating.*of weights",
    ),
    Case(
        "input_size 100000",
        "",
        None,
        ("space", "show", "resnet20", "--set", "input_size=100000"),
        "resnet20.*refused before allocating.*per sample",
    ),
    Case(
        "train at input_size 3000",
        "",
        None,
        (
            "train-supernet",
            "--space",
            "resnet20",
            "--set",
            "input_size=3000",
            "--out",
            "{tmp}/run",
        ),
        "at batch size 32 needs at least",
    ),
    Case(
        "search --supernet: weights of another net",
        "ck.pt",
        write_checkpoint(**supernet_entries()),
        ("search", "--space", "resnet20", "--supernet", "{file}", "--out", "{tmp}/run"),
        "has changed|do not fit",
    ),
]


@pytest.fixture(scope="module")
def arch_file(tmp_path_factory) -> Path:
    from nasfuse.arch import save_arch
    from nasfuse.spaces import load_space

    space = load_space("resnet20")
    path = tmp_path_factory.mktemp("arch") / "all_add.yaml"
    save_arch(space.uniform_arch("add"), path, space)
    return path


def run_in_process(args: list[str], capsys) -> tuple[int, str]:
    from nasfuse.cli import main

    code = main(args)  # an exception here is what a user would see as a traceback
    return code, capsys.readouterr().err


def run_in_subprocess(args: list[str], cwd: Path) -> tuple[int, str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "nasfuse", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stderr


@pytest.mark.parametrize("mode", ["in-process", pytest.param("subprocess", marks=pytest.mark.slow)])
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_input_gives_one_line_naming_the_file(
    case, mode, tmp_path, arch_file, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / case.file_name if case.file_name else None
    if case.write is not None:
        case.write(target)
    args = [
        a.format(file=target, arch=arch_file, tmp=tmp_path) if "{" in a and "[" not in a else a
        for a in case.args
    ]
    if mode == "in-process":
        code, stderr = run_in_process(args, capsys)
    else:
        code, stderr = run_in_subprocess(args, tmp_path)
    assert code == 2, (code, stderr[-3000:])
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, stderr[-3000:]
    assert errors[0].startswith("nasfuse "), errors[0]
    if target is not None:
        assert str(target) in errors[0]
    assert re.search(case.message, errors[0]), errors[0]
    assert len(errors[0]) < 600, "one readable line, not a dump of the input"


def test_a_full_disk_mid_training_is_one_line_and_resumable(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second epoch's checkpoint hits ENOSPC: one line naming the file, exit 2, the
    first epoch's checkpoint byte-identical, and ``--resume`` finishes the run."""
    import errno

    import nasfuse.files as files
    from nasfuse.cli import main

    out = tmp_path / "run"
    argv = [
        "train-supernet", "--space", str(REPO / "tests" / "fixtures" / "tiny_resnet.yaml"),
        "--epochs", "2", "--train-subset", "64", "--batch-size", "32", "--threads", "1",
        "--no-progress", "--out", str(out), "eval_archs=0",
    ]  # fmt: skip
    real_fsync, calls = os.fsync, []
    saved: dict[str, bytes] = {}

    def fsync_then_fill(fd: int) -> None:
        calls.append(fd)
        checkpoint = out / "supernet.pt"
        if checkpoint.is_file() and not saved:
            saved["bytes"] = checkpoint.read_bytes()  # the first epoch's checkpoint
        if saved:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync_then_fill)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{out / 'supernet.pt'}: No space left on device" in err and "--resume" in err
    assert (out / "supernet.pt").read_bytes() == saved["bytes"]
    assert not list(out.glob(".supernet.pt.*.tmp"))  # no half-written file left behind
    monkeypatch.setattr(files.os, "fsync", real_fsync)
    assert main([*argv, "--resume"]) == 0
    assert torch.load(out / "supernet.pt", weights_only=True)["epoch"] == 2
