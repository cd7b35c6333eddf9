"""The latency table file: tables written before the split of nasfuse.latency load, save
and predict exactly as they did.

The fixtures under ``tests/fixtures/latency/`` were written by the code before the split
(``git show 25d90fa:nasfuse/latency/table.py``): two tables of the tiny HRNet space (one
measured in the network with corrected entries, calibrated and validated; one isolated and
calibrated) and one table of an experiment (resnet20 on this machine's CPU).
``predictions.json`` holds what that code predicted from them for five random archs each.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from nasfuse.latency import BuildOptions, LatencyTable

FIXTURES = Path(__file__).parent / "fixtures" / "latency"
TABLES = ("tiny_hrnet_network", "tiny_hrnet_isolated", "resnet20_cpu")
FAST = {"warmup": 1, "runs": 3, "rounds": 1, "network_runs": 2, "progress": False, "threads": 1}


def _fixture_copy(name: str, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """The fixture as this torch would accept it: only ``key.torch`` may differ."""
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    data["key"]["torch"] = torch.__version__
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path, data


@pytest.mark.parametrize("name", TABLES)
def test_an_old_table_saves_back_byte_for_byte(name, tmp_path) -> None:
    path, data = _fixture_copy(name, tmp_path)
    table = LatencyTable.load(path)
    assert table.to_dict() == data
    again = table.save(tmp_path / "again.json")
    assert again.read_text() == path.read_text()


@pytest.mark.parametrize("name", TABLES)
def test_an_old_table_predicts_what_it_predicted(name, tmp_path) -> None:
    path, _ = _fixture_copy(name, tmp_path)
    table = LatencyTable.load(path)
    expected = json.loads((FIXTURES / "predictions.json").read_text())[name]
    for case in expected:
        arch = table.decode_arch(case["arch"])
        assert table.predict(arch) == case["predict"]
        assert table.predict_raw(arch) == case["predict_raw"]


def _structure(value: Any) -> Any:
    """The shape of plain data: dict keys and nesting kept, every scalar by kind only
    (numbers and None alike: a noisy correction factor may be either)."""
    if isinstance(value, dict):
        return {key: _structure(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_structure(item) for item in value]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "str"
    return "number or null"


def test_a_new_table_is_written_in_the_old_structure(tmp_path) -> None:
    from nasfuse.spaces import load_space

    space = load_space(os.path.join(os.path.dirname(__file__), "fixtures", "tiny_hrnet.yaml"))
    # built the way the fixture was (see the module docstring)
    table = LatencyTable.build(space, BuildOptions(batch_size=2, correct_entries=True, **FAST))
    table.calibrate(space, samples=4, seed=0, progress=False)
    table.validate(space, samples=3, seed=1, progress=False)
    written = json.loads(table.save(tmp_path / "new.json").read_text())
    old = json.loads((FIXTURES / "tiny_hrnet_network.json").read_text())
    assert _structure(written) == _structure(old)
    assert list(written) == list(old)  # the sections in the same order
    assert (tmp_path / "new.json").read_text() == json.dumps(written, indent=1) + "\n"
