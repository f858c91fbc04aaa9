"""The one training loop PLAID has: balanced patches, ResNet50, Adam + BCE, best checkpoint by validation AUC.

Used unchanged by the `plaid train` CLI and by the MONAI Label train task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from plaid.datalist import CaseRecord
from plaid.errors import PlaidInputError
from plaid.hard_negatives import hard_negative_rows
from plaid.insertion import InsertedPositives, normal_rows
from plaid.metrics import confusion_at, operating_point, safe_auc
from plaid.model import DEFAULT_FROZEN_LAYERS, PatchClassifier, build_model, read_checkpoint, save_checkpoint
from plaid.options import dataclass_from_mapping
from plaid.patch_data import PatchDataset, PatchSettings, PreparedImage, Problem, patch_index_for, prepare_images
from plaid.runtime import autocast_for, select_device
from plaid.sampling import BalancedSampler
from plaid.serialization import write_json
from plaid.splits import describe_split, split_by_group

logger = logging.getLogger(__name__)

BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"
HISTORY_FILE = "history.json"
CONFIG_FILE = "train_config.json"
SPLIT_FILE = "split.json"
PATCH_LABELS_FILE = "patch_labels.json"


@dataclass
class TrainConfig:
    """Every training knob; the defaults reproduce the paper."""

    patch_size: int = 224
    stride: int | None = None
    min_overlap: float = 0.0
    skip_background: bool = True
    epochs: int = 120
    batch_size: int = 32
    learning_rate: float = 1e-4
    frozen_layers: int = DEFAULT_FROZEN_LAYERS
    negative_ratio: float = 1.0
    redraw_negatives: bool = True
    max_negatives_per_image: int | None = None
    val_fraction: float = 0.05
    seed: int = 0
    pretrained: bool = True
    weights_path: str | None = None
    offline: bool = False
    device: str = "auto"
    amp: bool = True
    augment: bool = True
    num_workers: int = 0
    multi_gpu: bool = False
    init_checkpoint: str | None = None
    target_spacing_mm: float | None = None
    pixel_spacing_mm: float | None = None
    class_weighted_loss: bool = False
    inserted_positives: int = 0
    hard_negative_fraction: float = 0.0
    tta_flips: bool = False

    def patch_settings(self) -> PatchSettings:
        """The tiling/labelling part of the config."""
        return PatchSettings(self.patch_size, self.stride, self.min_overlap, self.skip_background,
                             target_spacing_mm=self.target_spacing_mm, pixel_spacing_mm=self.pixel_spacing_mm)

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict."""
        return asdict(self)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from request/CLI values, ignoring unknown keys and coercing strings to each field's type."""
        return dataclass_from_mapping(cls, values)


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


@dataclass
class TrainResult:
    """Where the run left its outputs and what it measured."""

    out_dir: Path
    best_checkpoint: Path | None
    history: list[EpochStats]
    problems: list[Problem] = field(default_factory=list)
    best_val_auc: float = float("nan")
    resumed_from_epoch: int = 0


def _key_metric(stats: EpochStats) -> tuple[float, float]:
    """Ranking key: validation AUC first (NaN counts lowest), then lower validation loss."""
    auc = stats.val_auc if np.isfinite(stats.val_auc) else -1.0
    return auc, -stats.val_loss


class PatchTrainer:
    """Trains the patch classifier on prepared images, checkpointing every epoch into ``out_dir``."""

    def __init__(self, config: TrainConfig, out_dir: str | Path, progress: bool = True,
                 on_epoch: Callable[[EpochStats], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> None:
        self.config = config
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.on_epoch = on_epoch
        self.should_stop = should_stop
        self.device = select_device(config.device)

    def _data_loader(self, images: Sequence[PreparedImage], index, shuffle: bool, seed: int,
                     inserted: Dataset | None = None) -> DataLoader:
        dataset: Dataset = PatchDataset(images, index, augment=self.config.augment and shuffle, seed=seed)
        generator = None
        if inserted is not None and len(inserted):
            dataset = ConcatDataset([dataset, inserted])
            generator = torch.Generator().manual_seed(seed)
        return DataLoader(dataset, batch_size=self.config.batch_size, shuffle=generator is not None,
                          generator=generator, num_workers=self.config.num_workers,
                          pin_memory=self.device.type == "cuda")

    def _wrap_for_devices(self, model: PatchClassifier) -> nn.Module:
        if self.config.multi_gpu and self.device.type == "cuda" and torch.cuda.device_count() > 1:
            logger.info("training on %d GPUs with DataParallel", torch.cuda.device_count())
            return nn.DataParallel(model)
        return model

    def _initial_model(self) -> PatchClassifier:
        """ImageNet-initialised ResNet50, or the weights of ``init_checkpoint`` (fine-tuning) when it exists."""
        config = self.config
        if config.init_checkpoint and Path(config.init_checkpoint).is_file():
            model = build_model(0, pretrained=False)
            model.load_state_dict(read_checkpoint(config.init_checkpoint)["state_dict"])
            model.freeze_first_layers(config.frozen_layers)
            model.frozen_bn_eval = True
            model.initialisation = f"checkpoint:{config.init_checkpoint}"
            logger.info("fine-tuning from %s", config.init_checkpoint)
            return model
        return build_model(config.frozen_layers, config.pretrained, config.weights_path, config.offline)

    def fit(self, train_images: Sequence[PreparedImage], val_images: Sequence[PreparedImage],
            resume: bool = True) -> TrainResult:
        """Train for ``config.epochs`` epochs (continuing from ``last.pt`` when ``resume``)."""
        config = self.config
        train_index = patch_index_for(train_images)
        if int(train_index.label.sum()) == 0:
            raise PlaidInputError("the training masks mark no calcification patch; nothing to learn from")
        hard_rows = hard_negative_rows(train_images, train_index, config.hard_negative_fraction)
        sampler = BalancedSampler(train_index, seed=config.seed, negative_ratio=config.negative_ratio,
                                  redraw_each_epoch=config.redraw_negatives,
                                  max_negatives_per_image=config.max_negatives_per_image,
                                  extra_positives=config.inserted_positives,
                                  hard_rows=hard_rows,
                                  hard_fraction=config.hard_negative_fraction)
        if not val_images:
            logger.warning("no validation images (too few patients); validating on the training images")
            val_images = train_images
        val_index = BalancedSampler(patch_index_for(val_images), seed=config.seed + 1).epoch_index(0)

        torch.manual_seed(config.seed)
        model = self._initial_model().to(self.device)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
        history: list[EpochStats] = []
        start_epoch = 0
        last_path = self.out_dir / LAST_CHECKPOINT
        if resume and last_path.is_file():
            state = read_checkpoint(last_path)
            model.load_state_dict(state["state_dict"])
            optimizer.load_state_dict(state["optimizer"])
            history = [EpochStats(**item) for item in state.get("history", [])]
            start_epoch = int(state.get("epoch", 0))
            logger.info("resuming from %s after epoch %d", last_path, start_epoch)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.out_dir / CONFIG_FILE, {**config.to_dict(), "initialisation": model.initialisation,
                                                "frozen_layers_applied": model.frozen_layers})
        runner = self._wrap_for_devices(model)
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=positive_weight(config).to(self.device))
        best = max(history, key=_key_metric) if history else None
        best_path = self.out_dir / BEST_CHECKPOINT if best and (self.out_dir / BEST_CHECKPOINT).is_file() else None

        for epoch in range(start_epoch, config.epochs):
            started = time.perf_counter()
            epoch_index = sampler.epoch_index(epoch)
            inserted = InsertedPositives(train_images, normal_rows(train_index), config.inserted_positives,
                                         seed=config.seed + 1000 * epoch, augment=config.augment)
            loader = self._data_loader(train_images, epoch_index, shuffle=True, seed=config.seed + epoch,
                                       inserted=inserted)
            train_loss, train_acc = self._train_epoch(runner, optimizer, loss_fn, loader, epoch)
            val_labels, val_scores, val_loss = self._score(runner, self._data_loader(val_images, val_index, False, 0))
            stats = EpochStats(
                epoch=epoch + 1, train_loss=train_loss, train_accuracy=train_acc, val_loss=val_loss,
                val_accuracy=float(np.mean((val_scores >= 0.5) == val_labels)) if len(val_labels) else float("nan"),
                val_auc=safe_auc(val_labels, val_scores), train_patches=len(epoch_index) + len(inserted),
                val_patches=len(val_index), seconds=time.perf_counter() - started,
            )
            history.append(stats)
            logger.info("epoch %d/%d: loss %.4f acc %.3f | val loss %.4f acc %.3f auc %.4f (%.1f s)",
                        stats.epoch, config.epochs, train_loss, train_acc, val_loss, stats.val_accuracy,
                        stats.val_auc, stats.seconds)
            if best is None or _key_metric(stats) > _key_metric(best):
                best = stats
                best_path = save_checkpoint(
                    self.out_dir / BEST_CHECKPOINT, model, epoch=epoch + 1, config=config.to_dict(),
                    patch_settings=asdict(config.patch_settings()),
                    metrics=asdict(stats), threshold=_validation_threshold(val_labels, val_scores),
                )
            save_checkpoint(last_path, model, epoch=epoch + 1, optimizer=optimizer.state_dict(),
                            history=[asdict(item) for item in history], config=config.to_dict())
            write_json(self.out_dir / HISTORY_FILE, [asdict(item) for item in history])
            if self.on_epoch:
                self.on_epoch(stats)
            if self.should_stop and self.should_stop():
                logger.info("training stopped on request after epoch %d", epoch + 1)
                break
        return TrainResult(out_dir=self.out_dir, best_checkpoint=best_path, history=history,
                           best_val_auc=best.val_auc if best else float("nan"), resumed_from_epoch=start_epoch)

    def _train_epoch(self, runner: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module,
                     loader: DataLoader, epoch: int) -> tuple[float, float]:
        runner.train()
        total_loss, correct, seen = 0.0, 0, 0
        batches = loader
        if self.progress:
            from tqdm import tqdm

            batches = tqdm(loader, desc=f"epoch {epoch + 1}/{self.config.epochs}", unit="batch", leave=False)
        for patches, labels in batches:
            patches = patches.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            labels = labels.to(self.device)
            optimizer.zero_grad(set_to_none=True)
            with autocast_for(self.device, self.config.amp):
                logits = runner(patches)
            loss = loss_fn(logits.float(), labels)
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach()) * len(labels)
            correct += int(((logits.detach().float() >= 0) == (labels >= 0.5)).sum())
            seen += len(labels)
            if self.progress and hasattr(batches, "set_postfix"):
                batches.set_postfix(loss=f"{total_loss / seen:.4f}")
        return (total_loss / seen, correct / seen) if seen else (float("nan"), float("nan"))

    @torch.no_grad()
    def _score(self, runner: nn.Module, loader: DataLoader) -> tuple[np.ndarray, np.ndarray, float]:
        runner.eval()
        labels_out, scores_out, loss_sum = [], [], 0.0
        for patches, labels in loader:
            patches = patches.to(self.device).contiguous(memory_format=torch.channels_last)
            with autocast_for(self.device, self.config.amp):
                logits = runner(patches).float().cpu()
            loss_sum += float(nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="sum"))
            labels_out.append(labels.numpy())
            scores_out.append(torch.sigmoid(logits).numpy())
        if not labels_out:
            return np.zeros(0), np.zeros(0), float("nan")
        labels_all = np.concatenate(labels_out).astype(np.int64)
        return labels_all, np.concatenate(scores_out), loss_sum / len(labels_all)


def positive_weight(config: TrainConfig) -> torch.Tensor:
    """BCE weight of the positive class: the negative ratio with ``class_weighted_loss`` (classes then weigh
    the same in the loss), else 1."""
    ratio = config.negative_ratio if config.class_weighted_loss and config.negative_ratio > 0 else 1.0
    return torch.tensor(float(ratio))


def _validation_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The slope-1 operating point on validation patches, or 0.5 when it cannot be computed."""
    if len(labels) == 0 or labels.min() == labels.max():
        return 0.5
    threshold = operating_point(labels, scores).threshold
    logger.debug("validation operating point %.4f: %s", threshold, confusion_at(labels, scores, threshold))
    return threshold


def describe_patch_labels(images: Sequence[PreparedImage]) -> dict[str, dict[str, Any]]:
    """Per image: the label file trained on, the grid, and which patches count as calcification."""
    return {
        image.record.image_id: {
            "image": image.record.image,
            "label": image.record.label,
            "grid": list(image.grid.shape),
            "positive_patches": [int(i) for i in np.flatnonzero(image.labels)] if image.labels is not None else [],
        }
        for image in images
    }


def train_from_records(
    records: Sequence[CaseRecord],
    config: TrainConfig,
    out_dir: str | Path,
    resume: bool = True,
    on_error: str = "skip",
    progress: bool = True,
    on_epoch: Callable[[EpochStats], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    extra_split: dict[str, Any] | None = None,
) -> TrainResult:
    """Split labelled records by patient, prepare their patches and train; writes the split beside the weights.

    ``extra_split`` (e.g. a held-out test set chosen by the caller) is stored in split.json too.
    """
    out_dir = Path(out_dir)
    usable = [record for record in records if record.label]
    missing = [record for record in records if not record.label]
    problems = [Problem(path=r.image, message=f"{r.image}: no annotation mask") for r in missing]
    if missing:
        if on_error == "stop":
            raise PlaidInputError("no annotation mask for this image", missing[0].image)
        for record in missing:
            logger.warning("skipping %s: no annotation mask", record.image)
    settings = config.patch_settings()
    prepared, read_problems = prepare_images(usable, settings, on_error=on_error, progress=progress)
    problems += read_problems
    if not prepared:
        raise PlaidInputError("no usable labelled image to train on")
    positive_groups = {p.record.group for p in prepared if p.labels is not None and p.labels.any()}
    train_images, val_images = split_by_group([p.record for p in prepared], config.val_fraction, config.seed,
                                              positive_groups=positive_groups)
    train_ids = {r.image_id for r in train_images}
    train_prepared = [p for p in prepared if p.record.image_id in train_ids]
    val_prepared = [p for p in prepared if p.record.image_id not in train_ids]
    out_dir.mkdir(parents=True, exist_ok=True)
    split = describe_split({"train": train_images, "validation": val_images})
    split["problems"] = [asdict(problem) for problem in problems]
    split.update(extra_split or {})
    write_json(out_dir / SPLIT_FILE, split)
    write_json(out_dir / PATCH_LABELS_FILE, describe_patch_labels(prepared))
    logger.info("training on %d images, validating on %d (of %d usable)", len(train_prepared),
                len(val_prepared), len(prepared))
    trainer = PatchTrainer(config, out_dir, progress=progress, on_epoch=on_epoch, should_stop=should_stop)
    result = trainer.fit(train_prepared, val_prepared, resume=resume)
    result.problems = problems
    return result
