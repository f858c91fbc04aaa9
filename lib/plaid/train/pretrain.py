"""Offline pretraining of the ResNet50 backbone on unlabelled tissue patches: no download, no annotation.

Two pretext tasks, chosen with ``task``:

- ``inserted``: tell plain tissue patches from the same patches with a synthetic calcification cluster
  pasted in (`plaid.train.insertion`), a task close to the real one;
- ``rotation``: self-supervised, predict which of four 90-degree rotations a tissue patch was given.

Only images known to have no calcification are used (metadata ``calcified`` 0, or an empty mask), so no
real calcification is ever shown as "plain". The result is a torchvision-format ResNet50 state dict (no
classifier head) that `plaid train --weights FILE` loads like ImageNet weights.
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
from plaid.model.device import autocast_for, select_device
from plaid.model.network import PatchClassifier
from plaid.patches.prepared import PatchSettings, PreparedImage, prepare_images
from plaid.serialization import write_json
from plaid.train.dataset import augment_patch
from plaid.train.insertion import insert_cluster

logger = logging.getLogger(__name__)

TASKS = ("inserted", "rotation")


@dataclass
class PretrainConfig:
    """Pretraining knobs."""

    task: str = "inserted"
    patch_size: int = 64
    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    target_spacing_mm: float | None = None
    pixel_spacing_mm: float | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise PlaidInputError(f"pretrain task must be one of {', '.join(TASKS)}, got {self.task!r}")


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


def pretext_batch(images: Sequence[PreparedImage], rows: np.ndarray, config: PretrainConfig,
                  rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of pretext patches and targets (0/1 for ``inserted``, 0-3 for ``rotation``)."""
    patches, targets = [], []
    for image_number, patch_number in rows[rng.integers(len(rows), size=config.batch_size)]:
        image = images[int(image_number)]
        patch = augment_patch(image.patches([int(patch_number)])[0], rng)
        if config.task == "inserted":
            target = int(rng.integers(2))
            if target:
                patch, _ = insert_cluster(patch, image.record.pixel_spacing_mm or 0.1, rng)
        else:
            target = int(rng.integers(4))
            patch = np.rot90(patch, target)
        patches.append(np.ascontiguousarray(patch, dtype=np.float32))
        targets.append(target)
    return torch.from_numpy(np.stack(patches)).unsqueeze(1), torch.tensor(targets)


def backbone_state(model: PatchClassifier) -> dict[str, torch.Tensor]:
    """The backbone's weights in torchvision's key format, without the task head."""
    return {key: value.detach().cpu() for key, value in model.backbone.state_dict().items()
            if not key.startswith("fc.")}


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
    rng = np.random.default_rng(config.seed)
    device = select_device(config.device)
    model = PatchClassifier(frozen_layers=0)
    classes = 1 if config.task == "inserted" else 4
    model.backbone.fc = nn.Linear(model.backbone.fc.in_features, classes)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_fn = nn.BCEWithLogitsLoss() if classes == 1 else nn.CrossEntropyLoss()
    steps = range(config.steps)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc=f"pretraining ({config.task})", unit="step")
    started, losses, correct = time.perf_counter(), [], []
    for _ in steps:
        patches, targets = pretext_batch(images, rows, config, rng)
        patches, targets = patches.to(device).contiguous(memory_format=torch.channels_last), targets.to(device)
        optimizer.zero_grad(set_to_none=True)
        with autocast_for(device, config.amp):
            normalised = (patches.expand(-1, 3, -1, -1) - model.mean) / model.std
            logits = model.backbone(normalised).float()
        if classes == 1:
            loss = loss_fn(logits.squeeze(1), targets.float())
            hits = ((logits.squeeze(1) >= 0) == (targets == 1)).float().mean()
        else:
            loss = loss_fn(logits, targets)
            hits = (logits.argmax(1) == targets).float().mean()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        correct.append(float(hits))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(backbone_state(model), str(out))
    tail = max(1, len(losses) // 10)
    summary = {
        "weights": str(out), "config": asdict(config), "images": len(images), "tissue_patches": int(len(rows)),
        "final_loss": float(np.mean(losses[-tail:])), "final_accuracy": float(np.mean(correct[-tail:])),
        "seconds": round(time.perf_counter() - started, 1), "skipped": [p.path for p in problems],
    }
    write_json(out.with_suffix(".json"), summary)
    logger.info("pretrained backbone written to %s (last-10%% accuracy %.3f)", out, summary["final_accuracy"])
    return summary
