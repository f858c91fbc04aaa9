"""Fitting one model or an ensemble of seeds on prepared training and validation films.

With ``ensemble_members`` > 1 the members train one after another on the same split: member k (counted
from 0) with seed ``seed + k`` (its initialisation, patch sampling and augmentation) in ``OUT/member-{k + 1}``,
a run folder of its own that resumes alone. With ``pretrain_steps`` the members share one pretext: the first
runs it with seed ``seed``, exactly as a single run would, and leaves its weights in ``OUT/pretext.pt``; the
others start from them, so an ensemble of K costs one pretext and K trainings. ``OUT/best.pt`` then holds
the ensemble (`plaid.model.ensemble`), served by the app and the CLI as one model, with an operating point
chosen for the ensemble's mean probability on the same validation films a single model's would be chosen on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from plaid.errors import PlaidInputError
from plaid.model.checkpoint import read_checkpoint, write_payload
from plaid.model.ensemble import ensemble_payload, mean_slope1_threshold
from plaid.patches.prepared import PreparedImage
from plaid.serialization import write_json
from plaid.train.checkpointing import BEST_CHECKPOINT, CONFIG_FILE, check_output_folder
from plaid.train.config import TrainConfig
from plaid.train.distributed import DistributedJob, distributed_world_size, fit_distributed
from plaid.train.loop import PatchTrainer, TrainResult
from plaid.train.operating_point import SLOPE1, choose_operating_point
from plaid.train.validation import EpochStats

logger = logging.getLogger(__name__)

MEMBER_FOLDER = "member-{}"
PRETEXT_FILE = "pretext.pt"


def member_configs(config: TrainConfig) -> list[TrainConfig]:
    """The training config of each member: the ensemble's, with seed ``seed + k`` and one member."""
    return [replace(config, seed=config.seed + number, ensemble_members=1)
            for number in range(config.ensemble_members)]


def fit_prepared(
    config: TrainConfig,
    out_dir: str | Path,
    train_images: Sequence[PreparedImage],
    val_images: Sequence[PreparedImage],
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[EpochStats], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_extra: dict[str, Any] | None = None,
) -> TrainResult:
    """Train one model, or each member of an ensemble and then the ensemble checkpoint, into ``out_dir``."""
    out_dir = Path(out_dir)

    def fit_one(member: TrainConfig, folder: Path, pretext_file: Path | None = None) -> TrainResult:
        world_size = distributed_world_size(member)
        if world_size > 1:
            if on_epoch or should_stop:
                logger.warning("per-epoch callbacks are not called in distributed training")
            job = DistributedJob(member, folder, train_images, val_images, resume, progress, checkpoint_extra or {},
                                 pretext_file)
            return fit_distributed(job, world_size)
        trainer = PatchTrainer(member, folder, progress=progress, on_epoch=on_epoch, should_stop=should_stop,
                               checkpoint_extra=checkpoint_extra, pretext_file=pretext_file)
        return trainer.fit(train_images, val_images, resume=resume)

    if config.ensemble_members <= 1:
        return fit_one(config, out_dir)
    if check_output_folder(out_dir, config, resume) is None:  # as a single run, the options it started with
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / CONFIG_FILE, config.to_dict())
    results: list[TrainResult] = []
    for number, member in enumerate(member_configs(config)):
        if results and should_stop and should_stop():
            logger.info("training stopped on request after %d of %d members", len(results), config.ensemble_members)
            break
        logger.info("ensemble member %d/%d (seed %d)", number + 1, config.ensemble_members, member.seed)
        results.append(fit_one(member, out_dir / MEMBER_FOLDER.format(number + 1), out_dir / PRETEXT_FILE))
    history = [epoch for result in results for epoch in result.history]
    unfinished = [result.out_dir.name for result in results if result.best_checkpoint is None]
    if unfinished or len(results) < config.ensemble_members:
        logger.error("no ensemble written: %d of %d members trained, %s without a publishable epoch",
                     len(results), config.ensemble_members, ", ".join(unfinished) or "none")
        return TrainResult(out_dir=out_dir, best_checkpoint=None, history=history, members=results)
    best = write_ensemble(out_dir, config, [result.best_checkpoint for result in results])
    chosen = choose_operating_point(best, val_images, train_images, config.operating_point,
                                    config.max_false_marks_per_image, config.device,
                                    config.operating_point_min_normal_films)
    return TrainResult(out_dir=out_dir, best_checkpoint=best, history=history,
                       best_val_auc=float(np.mean([result.best_val_auc for result in results])),
                       resumed_from_epoch=results[0].resumed_from_epoch, validation=results[0].validation,
                       operating_point=chosen, members=results)


def write_ensemble(out_dir: Path, config: TrainConfig, member_checkpoints: Sequence[Path]) -> Path:
    """``out_dir/best.pt``: the members' best checkpoints as one ensemble, with the ensemble's config, the
    members' mean validation metrics and the mean of their slope-1 thresholds (replaced by the operating
    point chosen next unless ``operating_point`` is slope1)."""
    payloads = [read_checkpoint(path) for path in member_checkpoints]
    names = [Path(path).relative_to(out_dir).as_posix() for path in member_checkpoints]
    payload = ensemble_payload(payloads, names)
    metrics = [member.get("metrics") for member in payloads]
    for path, member_metrics in zip(member_checkpoints, metrics, strict=True):
        if not isinstance(member_metrics, dict):
            raise PlaidInputError("this member checkpoint holds no validation metrics", path)
    payload.update(
        config=config.to_dict(), validation=payloads[0].get("validation"),
        metrics={key: float(np.mean([float(m[key]) for m in metrics])) for key in ("val_auc", "val_loss")},
        metrics_source=f"mean over the {len(payloads)} members' best epochs",
        threshold=mean_slope1_threshold(payloads), operating_point=SLOPE1,
    )
    return write_payload(out_dir / BEST_CHECKPOINT, payload)
