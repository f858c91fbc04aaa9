"""What each epoch measures on the validation patches, and how the best epoch and its threshold are chosen.

The balanced validation patches come from the validation patients, or from the training images when those
patients hold no calcified (or no normal) patch. An epoch's model may become best.pt only with a finite
validation AUC, loss and slope-1 threshold; the best is the highest AUC, then the lowest loss. The threshold a
model is served with is then set on whole films by `plaid.train.operating_point`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from plaid.metrics import confusion_at, operating_point
from plaid.model.device import autocast_in
from plaid.patches.prepared import PreparedImage, patch_index_for
from plaid.patches.sampling import BalancedSampler, PatchIndex

logger = logging.getLogger(__name__)

VALIDATION_PATIENTS = "validation patients"
VALIDATION_ON_TRAINING = "training patches"


@dataclass
class EpochStats:
    """What one epoch measured."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    val_auc: float
    train_patches: int
    val_patches: int
    seconds: float


def stored_epoch(item: Mapping[str, Any]) -> EpochStats:
    """An epoch of a stored history; keys of options since removed (e.g. ``mined_negatives``) are dropped."""
    known = {entry.name for entry in fields(EpochStats)}
    return EpochStats(**{key: value for key, value in item.items() if key in known})


def key_metric(stats: EpochStats) -> tuple[float, float]:
    """Ranking key: validation AUC first, then lower validation loss; NaN ranks below every number."""
    auc = float(stats.val_auc) if np.isfinite(stats.val_auc) else -1.0
    loss = -float(stats.val_loss) if np.isfinite(stats.val_loss) else float("-inf")
    return auc, loss


def is_better(stats: EpochStats, best: EpochStats | None) -> bool:
    """True when ``stats`` should replace ``best`` (ties go to the later epoch, so NaN runs still move on)."""
    return best is None or key_metric(stats) >= key_metric(best)


def publishable(stats: EpochStats, threshold: float) -> bool:
    """Whether an epoch's model may become best.pt: a finite threshold, validation AUC and loss."""
    return all(math.isfinite(value) for value in (threshold, stats.val_auc, stats.val_loss, stats.train_loss))


def validation_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The slope-1 operating point on validation patches, or 0.5 when it cannot be computed."""
    if len(labels) == 0 or labels.min() == labels.max():
        return 0.5
    threshold = operating_point(labels, scores).threshold
    logger.debug("validation operating point %.4f: %s", threshold, confusion_at(labels, scores, threshold))
    return threshold


def _both_classes(index: PatchIndex) -> bool:
    return bool(len(index)) and 0 < int(index.label.sum()) < len(index)


def validation_patches(train_index: PatchIndex, val_images: Sequence[PreparedImage],
                       train_images: Sequence[PreparedImage],
                       seed: int) -> tuple[Sequence[PreparedImage], PatchIndex, str]:
    """Balanced validation patches of the validation patients, or of the training images when those
    patients hold no calcified (or no normal) patch: then the run says so and marks its checkpoints."""
    if val_images:
        index = BalancedSampler(patch_index_for(val_images), seed=seed).epoch_index(0)
        if _both_classes(index):
            return val_images, index, VALIDATION_PATIENTS
    logger.warning("no validation patient can be spared with both calcified and normal patches; validating on "
                   "the training patches (best epoch and threshold are optimistic; marked in the checkpoint)")
    return train_images, BalancedSampler(train_index, seed=seed).epoch_index(0), VALIDATION_ON_TRAINING


@torch.no_grad()
def score_patches(runner: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device,
                  autocast_dtype: torch.dtype | None) -> tuple[np.ndarray, np.ndarray, float]:
    """(labels, probabilities, mean BCE loss) of every patch ``loader`` gives, scored by ``runner`` in eval mode."""
    runner.eval()
    labels_out, scores_out, loss_sum = [], [], 0.0
    for patches, labels in loader:
        patches = patches.to(device).contiguous(memory_format=torch.channels_last)
        with autocast_in(device, autocast_dtype):
            logits = runner(patches).float().cpu()
        loss_sum += float(nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="sum"))
        labels_out.append(labels.numpy())
        scores_out.append(torch.sigmoid(logits).numpy())
    if not labels_out:
        return np.zeros(0), np.zeros(0), float("nan")
    labels_all = np.concatenate(labels_out).astype(np.int64)
    return labels_all, np.concatenate(scores_out), loss_sum / len(labels_all)
