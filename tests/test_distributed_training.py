"""Distributed training for real: two spawned processes on the gloo backend, one tiny epoch, DDP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from plaid.io.datalist import load_records
from plaid.model.checkpoint import read_checkpoint
from plaid.patches.prepared import prepare_images
from plaid.synth.datasets import generate_dataset
from plaid.train import checkpointing, loop
from plaid.train.checkpointing import BEST_CHECKPOINT, LAST_CHECKPOINT
from plaid.train.config import TrainConfig
from plaid.train.distributed import DistributedJob, backend_for, distributed_world_size, fit_distributed, run_rank

pytestmark = pytest.mark.slow

CONFIG = TrainConfig(epochs=1, batch_size=4, frozen_layers=0, pretrained=False, device="cpu", amp=False, seed=5)


def recording_rank(rank: int, world_size: int, workspace: str, job: DistributedJob) -> None:
    """A rank that notes every checkpoint it writes and keeps its final weights for the test to compare."""
    written: list[str] = []
    save = checkpointing.save_checkpoint

    def noted(path, model, **extra):
        written.append(Path(path).name)
        return save(path, model, **extra)

    checkpointing.save_checkpoint = noted
    trainer = run_rank(rank, world_size, workspace, job)
    torch.save(trainer.model.state_dict(), job.out_dir.parent / f"rank{rank}.pt")
    (job.out_dir.parent / f"rank{rank}-checkpoints.json").write_text(json.dumps(written))


def test_two_gloo_ranks_end_with_identical_weights_and_rank_0_alone_writes(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "data", 4, seed=3, height=448, width=448, calcified_fraction=1.0, max_clusters=2)
    images, problems = prepare_images(load_records(tmp_path / "data"), CONFIG.patch_settings)
    assert not problems and len(images) == 4
    out = tmp_path / "run"
    job = DistributedJob(CONFIG, out, images[:3], images[3:])

    result = fit_distributed(job, 2, entry=recording_rank)

    assert [stats.epoch for stats in result.history] == [1] and result.best_checkpoint == out / BEST_CHECKPOINT
    assert sorted(path.name for path in out.iterdir()) == sorted(
        [BEST_CHECKPOINT, LAST_CHECKPOINT, checkpointing.HISTORY_FILE, checkpointing.CONFIG_FILE])
    assert json.loads((tmp_path / "rank0-checkpoints.json").read_text()) == [BEST_CHECKPOINT, LAST_CHECKPOINT]
    assert json.loads((tmp_path / "rank1-checkpoints.json").read_text()) == []
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    stored = read_checkpoint(out / LAST_CHECKPOINT)["state_dict"]
    assert ranks[0].keys() == ranks[1].keys() == stored.keys()
    for name in stored:
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        assert torch.equal(ranks[0][name], stored[name]), name
    torch.manual_seed(CONFIG.seed)  # the weights every rank started from
    start = loop.build_model(0, pretrained=False).state_dict()
    assert not torch.equal(start["backbone.fc.weight"], stored["backbone.fc.weight"])  # and the epoch trained them


def test_one_process_unless_several_gpus_and_gloo_off_cuda() -> None:
    assert distributed_world_size(CONFIG) == 1
    assert distributed_world_size(TrainConfig(multi_gpu=True, device="cpu")) == 1
    assert backend_for(CONFIG) == "gloo"
