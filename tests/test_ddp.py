"""DDP: two CPU processes on gloo train a supernet and retrain an arch to identical weights."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
TINY_RESNET = str(FIXTURES / "tiny_resnet.yaml")
WORLD_SIZE = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, folder: str, port: int) -> None:
    """One rank: the environment torchrun would set, then supernet training and retraining."""
    torch.set_num_threads(1)
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(WORLD_SIZE),
        }
    )
    from nasfuse.config import load_config
    from nasfuse.training import RetrainConfig, Retrainer, SupernetTrainConfig, SupernetTrainer

    common = {"epochs": 2, "batch_size": 16, "train_subset": 128, "progress": False}
    cfg = load_config(
        SupernetTrainConfig, overrides={**common, "space": TINY_RESNET, "eval_archs": 1}
    )
    trainer = SupernetTrainer(cfg, Path(folder) / "supernet")
    arch_per_step: list[dict[str, str]] = []
    original = trainer.before_step

    def record(step: int) -> None:
        original(step)
        arch_per_step.append(dict(trainer.net.arch))

    trainer.before_step = record  # type: ignore[method-assign]
    trainer.fit()
    steps_per_epoch = len(trainer.bundle.train)
    torch.save(
        {"state": trainer.net.state_dict(), "archs": arch_per_step, "steps": steps_per_epoch},
        Path(folder) / f"supernet_rank{rank}.pt",
    )
    retrainer = Retrainer(
        Path(folder) / "arch.yaml",
        load_config(RetrainConfig, overrides=common),
        Path(folder) / "retrain",
        context=trainer.context,
    )
    retrainer.fit()
    metrics = retrainer.finish()
    torch.save(
        {"state": retrainer.net.state_dict(), "metrics": metrics},
        Path(folder) / f"retrain_rank{rank}.pt",
    )
    trainer.context.close()


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch.multiprocessing as mp

    from nasfuse.arch import save_arch
    from nasfuse.spaces import load_space

    folder = tmp_path_factory.mktemp("ddp")
    space = load_space(TINY_RESNET)
    save_arch(space.uniform_arch("concat"), folder / "arch.yaml", space)
    mp.spawn(_worker, args=(str(folder), _free_port()), nprocs=WORLD_SIZE, join=True)
    return folder


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_ddp_supernet_ranks_share_paths_and_end_identical(ddp_run: Path) -> None:
    from nasfuse.files import load_checkpoint

    ranks = [torch.load(ddp_run / f"supernet_rank{r}.pt") for r in range(WORLD_SIZE)]
    # 128 images over 2 ranks at batch 16: 4 steps per epoch on each rank.
    assert ranks[0]["steps"] == 4 and len(ranks[0]["archs"]) == 8
    assert ranks[0]["archs"] == ranks[1]["archs"]
    assert len({tuple(sorted(a.items())) for a in ranks[0]["archs"]}) > 1
    _assert_same_state(ranks[0]["state"], ranks[1]["state"])
    checkpoint = load_checkpoint(ddp_run / "supernet" / "supernet.pt", kind="supernet")
    _assert_same_state(checkpoint["model"], ranks[0]["state"])
    assert len(list((ddp_run / "supernet" / "tb").iterdir())) == 1  # rank 0 wrote alone


@pytest.mark.slow
def test_ddp_retrain_ranks_end_identical(ddp_run: Path) -> None:
    ranks = [torch.load(ddp_run / f"retrain_rank{r}.pt") for r in range(WORLD_SIZE)]
    _assert_same_state(ranks[0]["state"], ranks[1]["state"])
    assert ranks[0]["metrics"]["world_size"] == 2
    assert ranks[0]["metrics"]["test_acc"] == ranks[1]["metrics"]["test_acc"]
    assert (ddp_run / "retrain" / "model.pt").is_file()
