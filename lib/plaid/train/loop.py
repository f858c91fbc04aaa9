"""The one training loop PLAID has: balanced patches, ResNet50, Adam + BCE, best checkpoint by validation AUC.

Used unchanged by the `plaid train` CLI and by the MONAI Label train task. Its options are `plaid.train.config`,
the run folder and its checkpoints `plaid.train.checkpointing`, each epoch's validation scoring and the choice of
the best epoch `plaid.train.validation`, the served threshold `plaid.train.operating_point`.
"""

from __future__ import annotations

import logging
import math
import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from plaid.errors import PlaidError, PlaidInputError
from plaid.metrics import safe_auc
from plaid.model.checkpoint import read_checkpoint, write_payload
from plaid.model.device import autocast_in, select_device, training_precision
from plaid.model.ensemble import is_ensemble
from plaid.model.network import PatchClassifier, build_model
from plaid.patches.prepared import PreparedImage, Problem, patch_index_for
from plaid.patches.sampling import BalancedSampler, PatchIndex
from plaid.train.batches import BatchFeed, PlannedLoader, batch_on_device
from plaid.train.checkpointing import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    check_output_folder,
    restore_last,
    save_epoch,
    write_run_config,
)
from plaid.train.config import TrainConfig
from plaid.train.insertion import InsertedPositives, normal_rows
from plaid.train.operating_point import choose_operating_point
from plaid.train.pretrain import PretrainConfig, run_pretext
from plaid.train.validation import (
    VALIDATION_PATIENTS,
    EpochStats,
    key_metric,
    score_patches,
    validation_patches,
    validation_threshold,
)

logger = logging.getLogger(__name__)

class NonFiniteTrainingError(PlaidError):
    """Training produced a non-finite loss or score: the run stops instead of writing a broken model."""


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
    members: list[TrainResult] = field(default_factory=list)


class PatchTrainer:
    """Trains the patch classifier on prepared images, checkpointing every epoch into ``out_dir``.

    With ``world_size`` > 1 this is one rank of a `torch.distributed` run (`plaid.train.distributed`): the
    process group is already joined, each rank trains on its share of every epoch's balanced sample, the
    model is wrapped in DistributedDataParallel, and rank 0 alone logs and writes checkpoints and files.
    """

    def __init__(self, config: TrainConfig, out_dir: str | Path, progress: bool = True,
                 on_epoch: Callable[[EpochStats], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 checkpoint_extra: dict[str, Any] | None = None, rank: int = 0, world_size: int = 1,
                 pretext_file: str | Path | None = None) -> None:
        self.config = config
        self.pretext_file = Path(pretext_file) if pretext_file else None
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
            if is_ensemble(stored):
                raise PlaidInputError("the model to fine-tune is an ensemble: fine-tuning needs a single model; "
                                      "train without fine-tuning (ensemble_members sets how many models)",
                                      config.init_checkpoint)
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
        training already answering "cluster present".

        With ``pretext_file`` the pretext runs once: a run that finds the file holding this pretext (same
        task settings, whatever the seed) starts from its weights instead, and a run that does not writes it.
        """
        config = self.config
        pretext = PretrainConfig(task="inserted", patch_size=config.patch_settings.patch_size,
                                 steps=config.pretrain_steps, batch_size=config.batch_size,
                                 learning_rate=config.pretrain_learning_rate, seed=config.seed, amp=config.amp,
                                 architecture=config.architecture, input_filter=config.input_filter)
        if self._load_stored_pretext(model, pretext):
            return
        rows = normal_rows(index)
        if not len(rows):
            logger.warning("no normal training patch to pretrain on; pretrain_steps=%d skipped", config.pretrain_steps)
            return
        measured = run_pretext(model, images, rows, pretext, self.device, progress=self.progress)
        model.initialisation = (f"random, then {config.pretrain_steps} steps of synthetic-cluster pretraining "
                                f"(seed {config.seed}, pretext accuracy {measured['final_accuracy']:.3f})")
        if self.main:
            logger.info("pretrained on inserted clusters for %d steps: pretext accuracy %.3f over the last tenth",
                        config.pretrain_steps, measured["final_accuracy"])
            if self.pretext_file:
                store_pretext(self.pretext_file, model, pretext)

    def _load_stored_pretext(self, model: PatchClassifier, pretext: PretrainConfig) -> bool:
        """Load the weights of ``pretext_file`` into ``model`` when it holds ``pretext`` (seed aside)."""
        if not (self.pretext_file and self.pretext_file.is_file()):
            return False
        try:
            stored = read_checkpoint(self.pretext_file)
            same = pretext_settings(stored["pretext"]) == pretext_settings(asdict(pretext))
            if same:
                model.load_state_dict(stored["state_dict"])
        except (OSError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as error:
            logger.warning("%s is not a readable pretext (%s); running the pretext again", self.pretext_file, error)
            return False
        if not same:
            logger.warning("%s holds another pretext (%s); running this one", self.pretext_file, stored["pretext"])
            return False
        model.initialisation = str(stored.get("initialisation", "a stored pretext"))
        if self.main:
            logger.info("started from the pretext in %s (%s)", self.pretext_file, model.initialisation)
        return True

    def _autocast(self) -> Any:
        return autocast_in(self.device, self.autocast_dtype)

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
        val_images, val_index, validation = validation_patches(train_index, val_images, train_images, config.seed + 1)
        marks = {**self.checkpoint_extra, "config": config.to_dict(), "validation": validation,
                 "patch_settings": asdict(config.patch_settings)}
        stored = check_output_folder(self.out_dir, config, resume) if self.main else None

        torch.manual_seed(config.seed)
        model = self._initial_model().to(self.device)
        resuming = resume and (self.out_dir / LAST_CHECKPOINT).is_file()
        if config.pretrain_steps and model.initialisation == "random" and not resuming:
            self._pretrain_on_inserted_clusters(model, train_images, train_index)
        if self.device.type == "cuda":  # channels_last convolutions under bf16 autocast use the tensor cores
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
        history: list[EpochStats] = []
        start_epoch = 0
        if resuming:
            history, start_epoch = restore_last(self.out_dir, model, optimizer, self.scaler)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if stored is None and self.main:
            write_run_config(self.out_dir, config, model)
        self.model = model
        runner = self._wrap_for_devices(model)
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=positive_weight(config).to(self.device))
        best = max(history, key=key_metric) if history else None
        best_path = self.out_dir / BEST_CHECKPOINT if best and (self.out_dir / BEST_CHECKPOINT).is_file() else None

        for epoch in range(start_epoch, config.epochs):
            started = time.perf_counter()
            epoch_index = sampler.epoch_index(epoch)
            inserted = InsertedPositives(train_images, normal_rows(train_index), config.inserted_positives,
                                         seed=config.seed + 1000 * epoch)
            loader = self._data_loader(train_images, epoch_index, shuffle=True, seed=config.seed + epoch,
                                       inserted=inserted)
            train_loss, train_acc = self._train_epoch(runner, optimizer, loss_fn, loader, epoch)
            if self.world_size > 1:  # batch-norm statistics as rank 0 has them, so every rank validates alike
                for buffer in model.buffers():
                    torch.distributed.broadcast(buffer, src=0)
            val_labels, val_scores, val_loss = score_patches(model, self._data_loader(val_images, val_index, False, 0),
                                                             self.device, self.autocast_dtype)
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
            threshold = validation_threshold(val_labels, val_scores)
            if save_epoch(self.out_dir, model, history, best, threshold, marks, optimizer, self.scaler):
                best, best_path = stats, self.out_dir / BEST_CHECKPOINT
            if self.on_epoch:
                self.on_epoch(stats)
            if self._stop_requested():
                logger.info("training stopped on request after epoch %d", epoch + 1)
                break
        chosen = {}
        if self.main and best_path:
            chosen = choose_operating_point(best_path, films, train_images, config.operating_point,
                                            config.max_false_marks_per_image, config.device,
                                            config.operating_point_min_normal_films)
        return TrainResult(out_dir=self.out_dir, best_checkpoint=best_path, history=history,
                           best_val_auc=best.val_auc if best else float("nan"), resumed_from_epoch=start_epoch,
                           validation=validation, operating_point=chosen)

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


def pretext_settings(pretext: dict[str, Any]) -> dict[str, Any]:
    """What makes two pretexts interchangeable: every setting but the seed and the device."""
    return {key: value for key, value in pretext.items() if key not in ("seed", "device")}


def store_pretext(path: Path, model: PatchClassifier, pretext: PretrainConfig) -> None:
    """Write ``model``'s weights after the pretext ``pretext`` to ``path``, whole or not at all."""
    write_payload(path, {"state_dict": model.state_dict(), "initialisation": model.initialisation,
                         "pretext": asdict(pretext)})


def positive_weight(config: TrainConfig) -> torch.Tensor:
    """BCE weight of the positive class: the negative ratio with ``class_weighted_loss`` (classes then weigh
    the same in the loss), else 1."""
    ratio = config.negative_ratio if config.class_weighted_loss and config.negative_ratio > 0 else 1.0
    return torch.tensor(float(ratio))
