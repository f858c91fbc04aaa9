"""The one training loop PLAID has: balanced patches, ResNet50, Adam + BCE, best checkpoint by validation AUC.

Used unchanged by the `plaid train` CLI and by the MONAI Label train task.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from plaid.errors import PlaidError, PlaidInputError
from plaid.evaluate.metrics import confusion_at, operating_point, safe_auc
from plaid.model.checkpoint import read_checkpoint, save_checkpoint
from plaid.model.device import autocast_in, select_device, training_precision
from plaid.model.input_filter import DEFAULT_INPUT_FILTER
from plaid.model.network import (
    DEFAULT_ARCHITECTURE,
    DEFAULT_FROZEN_LAYERS,
    PatchClassifier,
    build_model,
    unknown_model_option,
)
from plaid.options import dataclass_from_mapping
from plaid.patches.prepared import PatchSettings, PreparedImage, Problem, patch_index_for
from plaid.patches.sampling import BalancedSampler, PatchIndex
from plaid.serialization import read_json_object, write_json
from plaid.train.batches import BatchFeed, PlannedLoader, batch_on_device
from plaid.train.insertion import InsertedPositives, normal_rows
from plaid.train.operating_point import FALSE_MARKS, OPERATING_POINTS, set_operating_point
from plaid.train.pretrain import PretrainConfig, run_pretext

logger = logging.getLogger(__name__)

BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"
HISTORY_FILE = "history.json"
CONFIG_FILE = "train_config.json"
SPLIT_FILE = "split.json"
PATCH_LABELS_FILE = "patch_labels.json"
VALIDATION_PATIENTS = "validation patients"
VALIDATION_ON_TRAINING = "training patches"
# Options a resumed run may change; every other stored option must match (weights come from last.pt).
RESUME_MAY_CHANGE = frozenset({"epochs", "device", "num_workers", "multi_gpu", "amp", "init_checkpoint",
                               "weights_path", "pretrained"})


# Upper bounds on what a client may ask for: beyond them Adam diverges or a request ties the server up for days.
MAX_LEARNING_RATE = 0.1
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 4096
MAX_PATCH_SIZE = 2048
MIN_PATCH_SIZE = 32  # the ResNet stem and four stride-2 stages need at least this many pixels
MAX_NEGATIVE_RATIO = 100.0
MAX_INSERTED_POSITIVES = 100_000
SPACING_RANGE_MM = (0.005, 5.0)
MAX_FALSE_MARKS_PER_IMAGE = 1000.0


class NonFiniteTrainingError(PlaidError):
    """Training produced a non-finite loss or score: the run stops instead of writing a broken model."""


@lru_cache(maxsize=1)
def keras_layer_count() -> int:
    """How many Keras-counted layers the ResNet50 backbone has (the upper bound of ``frozen_layers``)."""
    return len(PatchClassifier(frozen_layers=0).keras_layers())


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
    tta_flips: bool = False
    architecture: str = DEFAULT_ARCHITECTURE
    input_filter: str = DEFAULT_INPUT_FILTER
    pretrain_steps: int = 0
    pretrain_learning_rate: float = 1e-3
    operating_point: str = FALSE_MARKS
    max_false_marks_per_image: float = 1.0
    operating_point_normal_women: int = 2

    def patch_settings(self) -> PatchSettings:
        """The tiling/labelling part of the config."""
        return PatchSettings(self.patch_size, self.stride, self.min_overlap, self.skip_background,
                             target_spacing_mm=self.target_spacing_mm, pixel_spacing_mm=self.pixel_spacing_mm)

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict."""
        return asdict(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainConfig:
        """A config from request/CLI values, ignoring unknown keys and coercing strings to each field's type."""
        return dataclass_from_mapping(cls, values)

    def validate(self) -> TrainConfig:
        """``self`` when every option is in range, else `PlaidInputError` naming the first bad option."""
        checks = {
            "patch_size": MIN_PATCH_SIZE <= self.patch_size <= MAX_PATCH_SIZE,
            "stride": self.stride is None or 1 <= self.stride <= MAX_PATCH_SIZE,
            "min_overlap": 0.0 <= self.min_overlap <= 1.0,
            "epochs": 1 <= self.epochs <= MAX_EPOCHS,
            "batch_size": 1 <= self.batch_size <= MAX_BATCH_SIZE,
            "learning_rate": _in_range(self.learning_rate, 0.0, MAX_LEARNING_RATE, low_open=True),
            "frozen_layers": 0 <= self.frozen_layers <= keras_layer_count(),
            "negative_ratio": _in_range(self.negative_ratio, 0.0, MAX_NEGATIVE_RATIO, low_open=True),
            "max_negatives_per_image": (self.max_negatives_per_image is None
                                        or 1 <= self.max_negatives_per_image <= 10_000_000),
            "val_fraction": 0.0 <= self.val_fraction < 1.0,
            "seed": 0 <= self.seed < 2**32,
            "num_workers": 0 <= self.num_workers <= 256,
            "target_spacing_mm": self.target_spacing_mm is None or _in_range(self.target_spacing_mm, *SPACING_RANGE_MM),
            "pixel_spacing_mm": self.pixel_spacing_mm is None or _in_range(self.pixel_spacing_mm, *SPACING_RANGE_MM),
            "inserted_positives": 0 <= self.inserted_positives <= MAX_INSERTED_POSITIVES,
            "pretrain_steps": 0 <= self.pretrain_steps <= 1_000_000,
            "pretrain_learning_rate": _in_range(self.pretrain_learning_rate, 0.0, MAX_LEARNING_RATE, low_open=True),
            "max_false_marks_per_image": _in_range(self.max_false_marks_per_image, 0.0, MAX_FALSE_MARKS_PER_IMAGE),
            "operating_point_normal_women": 0 <= self.operating_point_normal_women <= 100_000,
        }
        for name, ok in checks.items():
            if not ok:
                raise PlaidInputError(f"training option {name}={getattr(self, name)!r} is out of range")
        if self.operating_point not in OPERATING_POINTS:
            raise PlaidInputError(f"training option operating_point={self.operating_point!r} is not one of "
                                  f"{', '.join(OPERATING_POINTS)}")
        unknown = unknown_model_option(self.architecture, self.input_filter)
        if unknown:
            raise PlaidInputError(f"training option {unknown}")
        if self.frozen_layers and self.architecture != DEFAULT_ARCHITECTURE:
            raise PlaidInputError(f"training option frozen_layers={self.frozen_layers} counts Keras ResNet50 layers; "
                                  f"with architecture={self.architecture!r} set frozen_layers to 0")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, ValueError):
                raise PlaidInputError(f"training option device={self.device!r} is not a device (auto, cpu, cuda, "
                                      "cuda:1, ...)") from None
        return self


def _in_range(value: float, low: float, high: float, low_open: bool = False) -> bool:
    """Whether ``value`` is a finite number in [low, high] (or (low, high] with ``low_open``)."""
    if not math.isfinite(value):
        return False
    return (low < value if low_open else low <= value) and value <= high


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


@dataclass
class TrainResult:
    """Where the run left its outputs and what it measured."""

    out_dir: Path
    best_checkpoint: Path | None
    history: list[EpochStats]
    problems: list[Problem] = field(default_factory=list)
    best_val_auc: float = float("nan")
    resumed_from_epoch: int = 0
    validation: str = VALIDATION_PATIENTS
    operating_point: dict[str, Any] = field(default_factory=dict)


def _key_metric(stats: EpochStats) -> tuple[float, float]:
    """Ranking key: validation AUC first, then lower validation loss; NaN ranks below every number."""
    auc = float(stats.val_auc) if np.isfinite(stats.val_auc) else -1.0
    loss = -float(stats.val_loss) if np.isfinite(stats.val_loss) else float("-inf")
    return auc, loss


def is_better(stats: EpochStats, best: EpochStats | None) -> bool:
    """True when ``stats`` should replace ``best`` (ties go to the later epoch, so NaN runs still move on)."""
    return best is None or _key_metric(stats) >= _key_metric(best)


def _both_classes(index: PatchIndex) -> bool:
    return bool(len(index)) and 0 < int(index.label.sum()) < len(index)


def stored_config(out_dir: Path) -> dict[str, Any] | None:
    """The training configuration stored in ``out_dir`` (None when the folder holds no run)."""
    path = out_dir / CONFIG_FILE
    if not path.is_file():
        return None
    return read_json_object(path, "the stored training configuration")


def resume_conflicts(stored: Mapping[str, Any], config: TrainConfig) -> list[str]:
    """Options that differ between a stored run and ``config`` and may not change on resume."""
    defaults = TrainConfig()
    conflicts = []
    for item in fields(TrainConfig):
        if item.name in RESUME_MAY_CHANGE:
            continue
        before = stored.get(item.name, getattr(defaults, item.name))
        after = getattr(config, item.name)
        if before != after:
            conflicts.append(f"{item.name}: stored {before!r}, now {after!r}")
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


class PatchTrainer:
    """Trains the patch classifier on prepared images, checkpointing every epoch into ``out_dir``.

    With ``world_size`` > 1 this is one rank of a `torch.distributed` run (`plaid.train.distributed`): the
    process group is already joined, each rank trains on its share of every epoch's balanced sample, the
    model is wrapped in DistributedDataParallel, and rank 0 alone logs and writes checkpoints and files.
    """

    def __init__(self, config: TrainConfig, out_dir: str | Path, progress: bool = True,
                 on_epoch: Callable[[EpochStats], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 checkpoint_extra: dict[str, Any] | None = None, rank: int = 0, world_size: int = 1) -> None:
        self.config = config
        self.checkpoint_extra = dict(checkpoint_extra or {})
        self.out_dir = Path(out_dir)
        self.rank, self.world_size = rank, world_size
        self.main = rank == 0
        self.progress = progress and self.main
        self.on_epoch = on_epoch
        self.should_stop = should_stop
        self.device = select_device(config.device)
        if world_size > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", rank)
            torch.cuda.set_device(self.device)
        self.model: PatchClassifier | None = None
        self.autocast_dtype, scale_loss = training_precision(self.device, config.amp)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=scale_loss)
        self._batch_feed: BatchFeed | None = None

    def _data_loader(self, images: Sequence[PreparedImage], index, shuffle: bool, seed: int,
                     inserted: InsertedPositives | None = None) -> PlannedLoader:
        if self._batch_feed is None:  # one loader per image set, its workers kept across epochs
            self._batch_feed = BatchFeed(self.config.batch_size, self.config.num_workers, self.device,
                                         self.rank, self.world_size)
        return self._batch_feed.loader(images, index, shuffle=shuffle, seed=seed,
                                       augment=self.config.augment and shuffle, inserted=inserted)

    def _wrap_for_devices(self, model: PatchClassifier) -> nn.Module:
        if self.world_size > 1:
            logger.info("rank %d of %d training on %s", self.rank, self.world_size, self.device)
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            return DistributedDataParallel(model, device_ids=device_ids)
        return model

    def _stop_requested(self) -> bool:
        """Whether ``should_stop`` asks to stop; rank 0 decides for every rank."""
        stop = bool(self.main and self.should_stop and self.should_stop())
        if self.world_size > 1:
            decision = [stop]
            torch.distributed.broadcast_object_list(decision, src=0)
            stop = bool(decision[0])
        return stop

    def _initial_model(self) -> PatchClassifier:
        """ImageNet-initialised ResNet50, or the weights of ``init_checkpoint`` (fine-tuning) when it exists."""
        config = self.config
        if config.init_checkpoint and Path(config.init_checkpoint).is_file():
            stored = read_checkpoint(config.init_checkpoint)
            for option in ("architecture", "input_filter"):
                trained_with = stored.get(option, getattr(TrainConfig, option))
                if trained_with != getattr(config, option):
                    raise PlaidInputError(f"training option {option}={getattr(config, option)!r} differs from the "
                                          f"model being fine-tuned ({option}={trained_with!r}); set it to match or "
                                          "train without fine-tuning")
            model = build_model(0, pretrained=False, architecture=config.architecture,
                                input_filter=config.input_filter)
            model.load_state_dict(stored["state_dict"])
            model.freeze_first_layers(config.frozen_layers)
            model.frozen_bn_eval = True
            model.initialisation = f"checkpoint:{config.init_checkpoint}"
            logger.info("fine-tuning from %s", config.init_checkpoint)
            return model
        return build_model(config.frozen_layers, config.pretrained, config.weights_path, config.offline,
                           architecture=config.architecture, input_filter=config.input_filter)

    def _pretrain_on_inserted_clusters(self, model: PatchClassifier, images: Sequence[PreparedImage],
                                       index: PatchIndex) -> None:
        """``pretrain_steps`` steps of the ``inserted`` pretext task (`plaid.train.pretrain`) on the normal
        patches of the training images, for a randomly initialised model; its head then starts the real
        training already answering "cluster present"."""
        config = self.config
        rows = normal_rows(index)
        if not len(rows):
            logger.warning("no normal training patch to pretrain on; pretrain_steps=%d skipped", config.pretrain_steps)
            return
        pretext = PretrainConfig(task="inserted", patch_size=config.patch_size, steps=config.pretrain_steps,
                                 batch_size=config.batch_size, learning_rate=config.pretrain_learning_rate,
                                 seed=config.seed, amp=config.amp, architecture=config.architecture,
                                 input_filter=config.input_filter)
        measured = run_pretext(model, images, rows, pretext, self.device, progress=self.progress)
        model.initialisation = (f"random, then {config.pretrain_steps} steps of synthetic-cluster pretraining "
                                f"(pretext accuracy {measured['final_accuracy']:.3f})")
        if self.main:
            logger.info("pretrained on inserted clusters for %d steps: pretext accuracy %.3f over the last tenth",
                        config.pretrain_steps, measured["final_accuracy"])

    def _autocast(self) -> Any:
        return autocast_in(self.device, self.autocast_dtype)

    def _validation_index(self, train_index: PatchIndex, val_images: Sequence[PreparedImage],
                          train_images: Sequence[PreparedImage]) -> tuple[Sequence[PreparedImage], PatchIndex, str]:
        """Balanced validation patches of the validation patients, or of the training images when those
        patients hold no calcified (or no normal) patch: then the run says so and marks its checkpoints."""
        seed = self.config.seed + 1
        if val_images:
            index = BalancedSampler(patch_index_for(val_images), seed=seed).epoch_index(0)
            if _both_classes(index):
                return val_images, index, VALIDATION_PATIENTS
        logger.warning("no validation patient can be spared with both calcified and normal patches; validating on "
                       "the training patches (best epoch and threshold are optimistic; marked in the checkpoint)")
        return train_images, BalancedSampler(train_index, seed=seed).epoch_index(0), VALIDATION_ON_TRAINING

    def fit(self, train_images: Sequence[PreparedImage], val_images: Sequence[PreparedImage],
            resume: bool = False) -> TrainResult:
        """Train for ``config.epochs`` epochs (continuing from ``last.pt`` when ``resume``)."""
        config = self.config
        train_index = patch_index_for(train_images)
        if int(train_index.label.sum()) == 0:
            raise PlaidInputError("the training masks mark no calcification patch; nothing to learn from")
        sampler = BalancedSampler(train_index, seed=config.seed, negative_ratio=config.negative_ratio,
                                  redraw_each_epoch=config.redraw_negatives,
                                  max_negatives_per_image=config.max_negatives_per_image,
                                  extra_positives=config.inserted_positives)
        films = val_images
        val_images, val_index, validation = self._validation_index(train_index, val_images, train_images)
        marks = {**self.checkpoint_extra, "config": config.to_dict(), "validation": validation,
                 "patch_settings": asdict(config.patch_settings())}
        stored = check_output_folder(self.out_dir, config, resume) if self.main else None

        torch.manual_seed(config.seed)
        model = self._initial_model().to(self.device)
        last_path = self.out_dir / LAST_CHECKPOINT
        if config.pretrain_steps and model.initialisation == "random" and not (resume and last_path.is_file()):
            self._pretrain_on_inserted_clusters(model, train_images, train_index)
        if self.device.type == "cuda":  # channels_last convolutions under bf16 autocast use the tensor cores
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
        history: list[EpochStats] = []
        start_epoch = 0
        if resume and last_path.is_file():
            state = read_checkpoint(last_path)
            model.load_state_dict(state["state_dict"])
            optimizer.load_state_dict(state["optimizer"])
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            history = [stored_epoch(item) for item in state.get("history", [])]
            start_epoch = int(state.get("epoch", 0))
            logger.info("resuming from %s after epoch %d", last_path, start_epoch)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if stored is None and self.main:
            write_json(self.out_dir / CONFIG_FILE, {**config.to_dict(), "initialisation": model.initialisation,
                                                    "frozen_layers_applied": model.frozen_layers})
        self.model = model
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
            if self.world_size > 1:  # batch-norm statistics as rank 0 has them, so every rank validates alike
                for buffer in model.buffers():
                    torch.distributed.broadcast(buffer, src=0)
            val_labels, val_scores, val_loss = self._score(model, self._data_loader(val_images, val_index, False, 0))
            if not (np.all(np.isfinite(val_scores)) and (math.isfinite(val_loss) or not len(val_labels))):
                raise NonFiniteTrainingError(f"training stopped: the model scores validation patches as non-finite "
                                             f"numbers after epoch {epoch + 1}; nothing of this epoch was saved. "
                                             "Lower the learning rate or check the images")
            stats = EpochStats(
                epoch=epoch + 1, train_loss=train_loss, train_accuracy=train_acc, val_loss=val_loss,
                val_accuracy=float(np.mean((val_scores >= 0.5) == val_labels)) if len(val_labels) else float("nan"),
                val_auc=safe_auc(val_labels, val_scores), train_patches=len(epoch_index) + len(inserted),
                val_patches=len(val_index), seconds=time.perf_counter() - started,
            )
            history.append(stats)
            if not self.main:
                if self._stop_requested():
                    break
                continue
            logger.info("epoch %d/%d: loss %.4f acc %.3f | val loss %.4f acc %.3f auc %.4f (%.1f s)",
                        stats.epoch, config.epochs, train_loss, train_acc, val_loss, stats.val_accuracy,
                        stats.val_auc, stats.seconds)
            threshold = _validation_threshold(val_labels, val_scores)
            if not _publishable(stats, threshold):
                logger.warning("epoch %d is not kept as the best model: its validation AUC %s or threshold %s is not "
                               "a number", stats.epoch, stats.val_auc, threshold)
            elif is_better(stats, best):
                best = stats
                best_path = save_checkpoint(
                    self.out_dir / BEST_CHECKPOINT, model, epoch=epoch + 1, metrics=asdict(stats),
                    threshold=threshold, **marks,
                )
            save_checkpoint(last_path, model, epoch=epoch + 1, optimizer=optimizer.state_dict(),
                            scaler=self.scaler.state_dict(), history=[asdict(item) for item in history], **marks)
            write_json(self.out_dir / HISTORY_FILE, [asdict(item) for item in history])
            if self.on_epoch:
                self.on_epoch(stats)
            if self._stop_requested():
                logger.info("training stopped on request after epoch %d", epoch + 1)
                break
        chosen = self._choose_operating_point(best_path, films, train_images) if self.main and best_path else {}
        return TrainResult(out_dir=self.out_dir, best_checkpoint=best_path, history=history,
                           best_val_auc=best.val_auc if best else float("nan"), resumed_from_epoch=start_epoch,
                           validation=validation, operating_point=chosen)

    def _choose_operating_point(self, best_path: Path, films: Sequence[PreparedImage],
                                train_images: Sequence[PreparedImage]) -> dict[str, Any]:
        """Store the operating point in best.pt, chosen on the validation films (every tissue patch, as served);
        on the training films, with a warning, when no film was held out."""
        config = self.config
        source = "validation"
        if not films:
            logger.warning("no validation film was held out: the operating point is chosen on the training films "
                           "(optimistic; set val_fraction or operating_point_normal_women)")
            films, source = train_images, "training"
        return set_operating_point(best_path, films, config.operating_point, config.max_false_marks_per_image,
                                   source, device=config.device)

    def _train_epoch(self, runner: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module,
                     loader: DataLoader, epoch: int) -> tuple[float, float]:
        runner.train()
        total_loss, correct, seen = 0.0, 0, 0
        batches = loader
        if self.progress:
            from tqdm import tqdm

            batches = tqdm(loader, desc=f"epoch {epoch + 1}/{self.config.epochs}", unit="batch", leave=False)
        for step, batch in enumerate(batches, start=1):
            patches, labels = batch_on_device(batch, self.device)
            optimizer.zero_grad(set_to_none=True)
            with self._autocast():
                logits = runner(patches)
            loss = loss_fn(logits.float(), labels)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise NonFiniteTrainingError(
                    f"training stopped: the loss is {loss_value} at epoch {epoch + 1}, step {step} (learning rate "
                    f"{self.config.learning_rate}); nothing of this epoch was saved. Lower the learning rate or "
                    "check the images")
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
            total_loss += loss_value * len(labels)
            correct += int(((logits.detach().float() >= 0) == (labels >= 0.5)).sum())
            seen += len(labels)
            if self.progress and hasattr(batches, "set_postfix"):
                batches.set_postfix(loss=f"{total_loss / seen:.4f}")
        if self.world_size > 1:  # the epoch's loss and accuracy over every rank's patches
            totals = torch.tensor([total_loss, correct, seen], dtype=torch.float64, device=self.device)
            torch.distributed.all_reduce(totals)
            total_loss, correct, seen = float(totals[0]), int(totals[1]), int(totals[2])
        return (total_loss / seen, correct / seen) if seen else (float("nan"), float("nan"))

    @torch.no_grad()
    def _score(self, runner: nn.Module, loader: DataLoader) -> tuple[np.ndarray, np.ndarray, float]:
        runner.eval()
        labels_out, scores_out, loss_sum = [], [], 0.0
        for patches, labels in loader:
            patches = patches.to(self.device).contiguous(memory_format=torch.channels_last)
            with self._autocast():
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


def _publishable(stats: EpochStats, threshold: float) -> bool:
    """Whether an epoch's model may become best.pt: a finite threshold, validation AUC and loss."""
    return all(math.isfinite(value) for value in (threshold, stats.val_auc, stats.val_loss, stats.train_loss))


def checkpoint_is_publishable(meta: Mapping[str, Any]) -> bool:
    """Whether a checkpoint's metadata holds a finite threshold and finite validation metrics (what a served
    model needs: a NaN threshold marks nothing)."""
    threshold = meta.get("threshold")
    metrics = meta.get("metrics") or {}
    numbers = [threshold, metrics.get("val_auc"), metrics.get("val_loss")]
    return all(isinstance(value, int | float) and math.isfinite(value) for value in numbers)


def _validation_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The slope-1 operating point on validation patches, or 0.5 when it cannot be computed."""
    if len(labels) == 0 or labels.min() == labels.max():
        return 0.5
    threshold = operating_point(labels, scores).threshold
    logger.debug("validation operating point %.4f: %s", threshold, confusion_at(labels, scores, threshold))
    return threshold
