"""Multi-process training through `torch.distributed`, as MONAI Label's BasicTrainTask does it.

`torch.multiprocessing.spawn` starts one process per GPU (nccl) or, for tests and CPU machines, per
requested process (gloo). Each rank joins the process group, trains on its share of every epoch's balanced
sample inside DistributedDataParallel (`PatchTrainer` with ``rank``/``world_size``), and leaves it; rank 0
alone logs, writes the checkpoints and the run's files, and hands its `TrainResult` back to the caller.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing

from plaid.model.device import select_device
from plaid.patches.prepared import PreparedImage
from plaid.train.config import TrainConfig
from plaid.train.loop import PatchTrainer, TrainResult

logger = logging.getLogger(__name__)

RESULT_FILE = "result.pickle"


@dataclass
class DistributedJob:
    """Everything a rank needs to train: sent once to each spawned process."""

    config: TrainConfig
    out_dir: Path
    train_images: Sequence[PreparedImage]
    val_images: Sequence[PreparedImage]
    resume: bool = False
    progress: bool = False
    checkpoint_extra: dict[str, Any] = field(default_factory=dict)
    pretext_file: Path | None = None


def distributed_world_size(config: TrainConfig) -> int:
    """How many processes ``config`` trains with: every visible GPU with ``multi_gpu`` on CUDA, else one."""
    if not config.multi_gpu:
        return 1
    device = select_device(config.device)
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    if count < 2:
        logger.info("multi_gpu asked for but %d GPU(s) visible: training in one process", count)
        return 1
    return count


def backend_for(config: TrainConfig) -> str:
    """nccl when training on CUDA, gloo otherwise."""
    return "nccl" if select_device(config.device).type == "cuda" else "gloo"


def run_rank(rank: int, world_size: int, workspace: str, job: DistributedJob) -> PatchTrainer:
    """One rank's whole run: join the process group, train, leave it; rank 0 stores its result in ``workspace``.

    ``workspace`` is a private folder shared by the ranks (the process group rendezvous there).
    """
    if rank:
        logging.getLogger("plaid").setLevel(logging.WARNING)  # rank 0 alone reports
    if select_device(job.config.device).type == "cpu":  # ranks share the cores instead of each taking all
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    torch.distributed.init_process_group(backend_for(job.config), init_method=f"file://{workspace}/rendezvous",
                                         world_size=world_size, rank=rank)
    try:
        trainer = PatchTrainer(job.config, job.out_dir, progress=job.progress, checkpoint_extra=job.checkpoint_extra,
                               rank=rank, world_size=world_size, pretext_file=job.pretext_file)
        result = trainer.fit(job.train_images, job.val_images, resume=job.resume)
        if rank == 0:
            with open(Path(workspace) / RESULT_FILE, "wb") as handle:
                pickle.dump(result, handle)
    finally:
        torch.distributed.destroy_process_group()
    return trainer


def fit_distributed(job: DistributedJob, world_size: int,
                    entry: Callable[[int, int, str, DistributedJob], Any] = run_rank) -> TrainResult:
    """Train ``job`` in ``world_size`` spawned processes (``entry`` is what each runs) and return rank 0's result."""
    logger.info("distributed training: %d processes, %s backend", world_size, backend_for(job.config))
    with tempfile.TemporaryDirectory(prefix="plaid-ddp-") as workspace:
        torch.multiprocessing.spawn(entry, args=(world_size, workspace, job), nprocs=world_size, join=True)
        with open(Path(workspace) / RESULT_FILE, "rb") as handle:
            return pickle.load(handle)
