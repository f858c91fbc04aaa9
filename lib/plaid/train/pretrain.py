"""Offline pretraining of the backbone on tissue patches: no download, no annotation.

The pretext task (``task`` ``inserted``): tell plain tissue patches from the same patches with a synthetic
calcification cluster pasted in (`plaid.train.insertion`), a task close to the real one.

`plaid pretrain` uses only images known to have no calcification (metadata ``calcified`` 0, or an empty
mask), so no real calcification is ever shown as "plain", and writes a torchvision-format state dict (no
classifier head) that `plaid train --weights FILE` loads like ImageNet weights. `run_pretext` is the loop
itself; the training loop also calls it (``pretrain_steps``) on the normal patches of its own training
images, so each cross-validation fold pretrains without seeing its held-out women.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from plaid.errors import PlaidInputError
from plaid.io.datalist import CaseRecord
from plaid.model.device import autocast_in, select_device, training_precision
from plaid.model.network import PatchClassifier, unknown_model_option
from plaid.options import option, same_option
from plaid.patches.prepared import PatchSettings, PreparedImage, prepare_images
from plaid.serialization import write_json
from plaid.train.batches import augment_batch, draw_dihedral, widen
from plaid.train.config import TrainConfig
from plaid.train.insertion import DEFAULT_SPACING_MM, paste_clusters

logger = logging.getLogger(__name__)

TASKS = ("inserted",)


@dataclass
class PretrainConfig:
    """Pretraining knobs (each field's help is its documentation and its `plaid pretrain` flag's help)."""

    task: str = option("inserted", help="pretext task", choices=TASKS)
    # the tiling options keep their help; their bounds are `TrainConfig.validate`'s, not checked here
    patch_size: int = same_option(PatchSettings, "patch_size", 64, bounds=None)
    steps: int = option(300, help="optimizer steps")
    batch_size: int = option(32, help="patches per step")
    learning_rate: float = option(1e-3, help="Adam learning rate")
    seed: int = option(0, help="seed of the pretext's random draws and of the initial weights")
    device: str = same_option(TrainConfig, "device")
    amp: bool = same_option(TrainConfig, "amp")
    target_spacing_mm: float | None = same_option(PatchSettings, "target_spacing_mm", bounds=None)
    pixel_spacing_mm: float | None = same_option(PatchSettings, "pixel_spacing_mm", bounds=None)
    architecture: str = same_option(TrainConfig, "architecture", help="backbone to pretrain; `plaid train` must use "
                                    "the same one")
    input_filter: str = same_option(TrainConfig, "input_filter", help="fixed front end during pretraining "
                                    "(`contrast` makes the inserted task learnable from random initialisation in a "
                                    "few hundred steps)")

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise PlaidInputError(f"pretrain task must be one of {', '.join(TASKS)}, got {self.task!r}")
        unknown = unknown_model_option(self.architecture, self.input_filter)
        if unknown:
            raise PlaidInputError(f"pretrain option {unknown}")


def is_normal(record: CaseRecord) -> bool:
    """True when the record is known to hold no calcification (metadata, else an empty mask)."""
    if record.calcified is not None:
        return not record.calcified
    if not record.label:
        return False
    from plaid.io.labels import read_label_mask

    return not read_label_mask(record.label).any()


def tissue_rows(images: Sequence[PreparedImage]) -> np.ndarray:
    """(image number, patch number) of every tissue patch."""
    rows = [np.stack([np.full(int(image.tissue.sum()), number), np.flatnonzero(image.tissue)], axis=1)
            for number, image in enumerate(images)]
    return np.concatenate(rows) if rows else np.zeros((0, 2), dtype=np.int64)


def gather_patches(images: Sequence[PreparedImage], rows: np.ndarray) -> np.ndarray:
    """The stored uint16 patches at ``rows`` (image number, patch number), one gather per image: (N, H, W)."""
    size = images[int(rows[0, 0])].grid.patch_size if len(rows) else 0
    stored = np.empty((len(rows), size, size), dtype=np.uint16)
    for number in np.unique(rows[:, 0]):
        at = np.flatnonzero(rows[:, 0] == number)
        stored[at] = images[int(number)].patch_stack(rows[at, 1])
    return stored


def pretext_batch(images: Sequence[PreparedImage], rows: np.ndarray, config: PretrainConfig,
                  rng: np.random.Generator, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of pretext patches (N, 1, H, W) and targets (1: a cluster was pasted in, 0: plain tissue),
    made as batch operations on ``device`` (the CPU by default): the patches travel as uint16 and are widened,
    flipped and turned at random there, and half of them (target 1) get a cluster.
    """
    device = device or torch.device("cpu")
    chosen = rows[rng.integers(len(rows), size=config.batch_size)]
    stored = torch.from_numpy(gather_patches(images, chosen).view(np.int16))[:, None]
    if device.type == "cuda":
        stored = stored.pin_memory()
    patches = augment_batch(widen(stored.to(device, non_blocking=True)), draw_dihedral(rng, config.batch_size))
    targets = rng.integers(2, size=config.batch_size)
    chosen_patches = np.flatnonzero(targets)
    if len(chosen_patches):
        spacing = np.array([images[int(number)].spacing_mm_tiled or DEFAULT_SPACING_MM
                            for number in chosen[chosen_patches, 0]])
        at = torch.as_tensor(chosen_patches, device=device)
        pasted, _ = paste_clusters(patches[at, 0], spacing, rng)
        patches[at, 0] = pasted
    return patches, torch.as_tensor(targets, device=device)


def backbone_state(model: PatchClassifier) -> dict[str, torch.Tensor]:
    """The backbone's weights in torchvision's key format, without the task head."""
    return {key: value.detach().cpu() for key, value in model.backbone.state_dict().items()
            if not key.startswith("fc.")}


def run_pretext(model: PatchClassifier, images: Sequence[PreparedImage], rows: np.ndarray,
                config: PretrainConfig, device: torch.device, progress: bool = False) -> dict[str, float]:
    """Train ``model`` in place for ``config.steps`` steps of the pretext task on the patches ``rows`` (image
    number, patch number) of ``images``, with its own Adam optimiser.

    The model's one-logit head learns "cluster present". Returns the loss and accuracy over the last tenth of the
    steps.
    """
    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    loss_fn = nn.BCEWithLogitsLoss()
    dtype, scale_loss = training_precision(device, config.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=scale_loss)  # fp16 gradients underflow without it
    model.train()
    steps = range(config.steps)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc=f"pretraining ({config.task})", unit="step")
    losses, correct = [], []
    for _ in steps:
        patches, targets = pretext_batch(images, rows, config, rng, device)
        patches = patches.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with autocast_in(device, dtype):
            logits = model(patches).float()
        loss = loss_fn(logits, targets.float())
        hits = ((logits >= 0) == (targets == 1)).float().mean()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(loss.detach()))
        correct.append(float(hits))
    tail = max(1, len(losses) // 10)
    return {"final_loss": float(np.mean(losses[-tail:])) if losses else float("nan"),
            "final_accuracy": float(np.mean(correct[-tail:])) if correct else float("nan")}


def pretrain(records: Sequence[CaseRecord], config: PretrainConfig, out: str | Path,
             progress: bool = True) -> dict:
    """Pretrain on the tissue patches of the normal images in ``records``; writes the backbone to ``out``."""
    normal = [record for record in records if is_normal(record)]
    if not normal:
        raise PlaidInputError("no image known to be free of calcification (metadata 'calcified' 0 or empty mask)")
    settings = PatchSettings(patch_size=config.patch_size, target_spacing_mm=config.target_spacing_mm,
                             pixel_spacing_mm=config.pixel_spacing_mm)
    images, problems = prepare_images(normal, settings, with_label=False, progress=progress)
    rows = tissue_rows(images)
    if not len(rows):
        raise PlaidInputError("the normal images have no tissue patch")
    torch.manual_seed(config.seed)
    device = select_device(config.device)
    model = PatchClassifier(frozen_layers=0, architecture=config.architecture, input_filter=config.input_filter)
    model.to(device)
    started = time.perf_counter()
    measured = run_pretext(model, images, rows, config, device, progress)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(backbone_state(model), str(out))
    summary = {
        "weights": str(out), "config": asdict(config), "images": len(images), "tissue_patches": int(len(rows)),
        **measured, "seconds": round(time.perf_counter() - started, 1), "skipped": [p.path for p in problems],
    }
    write_json(out.with_suffix(".json"), summary)
    logger.info("pretrained backbone written to %s (last-10%% accuracy %.3f)", out, summary["final_accuracy"])
    return summary
