from __future__ import annotations

import dataclasses

import pytest
import torch

from nasfuse.config import ConfigError, load_config, save_config
from nasfuse.files import CheckpointError, load_checkpoint, save_checkpoint


@dataclasses.dataclass
class StageConfig:
    epochs: int = 10
    lr: float = 0.1
    name: str = "x"
    tags: list[str] = dataclasses.field(default_factory=list)
    limit: float | None = None


def test_overrides_win_over_file_and_keep_types(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nlr: 1\n")
    cfg = load_config(StageConfig, path, ["lr=0.5", "tags=[a, b]", "limit=2"])
    assert cfg.epochs == 3 and cfg.lr == 0.5 and cfg.tags == ["a", "b"]
    assert isinstance(cfg.limit, float) and cfg.limit == 2.0


def test_unknown_key_names_file_and_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochz: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*epochz"):
        load_config(StageConfig, path)


def test_wrong_type_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="epochs.*integer"):
        load_config(StageConfig, overrides=["epochs=three"])
    path = tmp_path / "bad.yaml"
    path.write_text("epochs: [1\n")
    with pytest.raises(ConfigError, match="bad.yaml.*not valid YAML"):
        load_config(StageConfig, path)


def test_saved_config_loads_back_equal(tmp_path):
    cfg = StageConfig(epochs=4, tags=["q"], limit=1.5)
    save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(StageConfig, tmp_path / "resolved.yaml") == cfg


def test_checkpoint_round_trip_and_refusals(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint({"kind": "model", "w": torch.arange(3)}, path)
    assert torch.equal(load_checkpoint(path, kind="model")["w"], torch.arange(3))
    with pytest.raises(CheckpointError, match="expected a 'supernet' checkpoint"):
        load_checkpoint(path, kind="supernet")
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
