"""A training run's folder: what it holds, when it may be written or resumed, and its per-epoch checkpoints.

``train_config.json`` keeps the options the run was started with; ``last.pt`` (weights, optimiser, scaler,
history) is rewritten after every epoch so a run can resume; ``best.pt`` holds the best publishable epoch.
A folder that holds a run is never overwritten: it is resumed with the same options or refused.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from plaid.errors import PlaidInputError
from plaid.model.checkpoint import read_checkpoint, save_checkpoint
from plaid.model.network import PatchClassifier
from plaid.serialization import read_json_object, write_json
from plaid.train.config import TrainConfig, flat_options
from plaid.train.validation import EpochStats, is_better, publishable, stored_epoch

logger = logging.getLogger(__name__)

BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"
HISTORY_FILE = "history.json"
CONFIG_FILE = "train_config.json"
SPLIT_FILE = "split.json"
PATCH_LABELS_FILE = "patch_labels.json"
# Options a resumed run may change; every other stored option must match (weights come from last.pt).
RESUME_MAY_CHANGE = frozenset({"epochs", "device", "num_workers", "multi_gpu", "amp", "init_checkpoint",
                               "weights_path", "pretrained"})


def stored_config(out_dir: Path) -> dict[str, Any] | None:
    """The training configuration stored in ``out_dir`` (None when the folder holds no run)."""
    path = out_dir / CONFIG_FILE
    if not path.is_file():
        return None
    return read_json_object(path, "the stored training configuration")


def resume_conflicts(stored: Mapping[str, Any], config: TrainConfig) -> list[str]:
    """Options that differ between a stored run and ``config`` and may not change on resume."""
    stored = flat_options(stored)
    defaults, now = TrainConfig().to_dict(), config.to_dict()
    conflicts = []
    for name, after in now.items():
        if name in RESUME_MAY_CHANGE:
            continue
        before = stored.get(name, defaults[name])
        if before != after:
            conflicts.append(f"{name}: stored {before!r}, now {after!r}")
    return conflicts


def check_output_folder(out_dir: Path, config: TrainConfig, resume: bool) -> dict[str, Any] | None:
    """Refuse to overwrite a finished or started run unless resuming it with a compatible configuration.

    Returns the stored configuration (None for a new folder).
    """
    stored = stored_config(out_dir)
    started = stored is not None or (out_dir / LAST_CHECKPOINT).is_file()
    if started and not resume:
        raise PlaidInputError("this folder already holds a training run; resume it (--resume) with the same "
                              "settings, or train into a new folder", out_dir)
    if stored is not None and resume:
        conflicts = resume_conflicts(stored, config)
        if conflicts:
            raise PlaidInputError("cannot resume: the stored configuration differs (" + "; ".join(conflicts)
                                  + "); only " + ", ".join(sorted(RESUME_MAY_CHANGE)) + " may change. "
                                  "Train into a new folder instead", out_dir)
    return stored


def write_run_config(out_dir: Path, config: TrainConfig, model: PatchClassifier) -> None:
    """Store the options the run starts with, and how the model was initialised and frozen."""
    write_json(out_dir / CONFIG_FILE, {**config.to_dict(), "initialisation": model.initialisation,
                                       "frozen_layers_applied": model.frozen_layers})


def restore_last(out_dir: Path, model: PatchClassifier, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler) -> tuple[list[EpochStats], int]:
    """Load ``last.pt`` into the model, optimiser and loss scaler; returns its history and the epochs done."""
    path = out_dir / LAST_CHECKPOINT
    state = read_checkpoint(path)
    model.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    done = int(state.get("epoch", 0))
    logger.info("resuming from %s after epoch %d", path, done)
    return [stored_epoch(item) for item in state.get("history", [])], done


def save_epoch(out_dir: Path, model: PatchClassifier, history: list[EpochStats], best: EpochStats | None,
               threshold: float, marks: Mapping[str, Any], optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler) -> bool:
    """After the last epoch of ``history``: best.pt when it is publishable and beats ``best``, then last.pt and
    history.json. Returns whether it became the best."""
    stats = history[-1]
    became_best = False
    if not publishable(stats, threshold):
        logger.warning("epoch %d is not kept as the best model: its validation AUC %s or threshold %s is not "
                       "a number", stats.epoch, stats.val_auc, threshold)
    elif is_better(stats, best):
        save_checkpoint(out_dir / BEST_CHECKPOINT, model, epoch=stats.epoch, metrics=asdict(stats),
                        threshold=threshold, **marks)
        became_best = True
    save_checkpoint(out_dir / LAST_CHECKPOINT, model, epoch=stats.epoch, optimizer=optimizer.state_dict(),
                    scaler=scaler.state_dict(), history=[asdict(item) for item in history], **marks)
    write_json(out_dir / HISTORY_FILE, [asdict(item) for item in history])
    return became_best


def checkpoint_is_publishable(meta: Mapping[str, Any]) -> bool:
    """Whether a checkpoint's metadata holds a finite threshold and finite validation metrics (what a served
    model needs: a NaN threshold marks nothing)."""
    threshold = meta.get("threshold")
    metrics = meta.get("metrics") or {}
    numbers = [threshold, metrics.get("val_auc"), metrics.get("val_loss")]
    return all(isinstance(value, int | float) and math.isfinite(value) for value in numbers)
