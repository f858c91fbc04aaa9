"""Training from labelled records: read and prepare the images, split patients, train in one or more processes.

The split (and the patch labels trained on) are written beside the weights; `plaid train` and the MONAI
Label trainer both start here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from plaid.errors import PlaidInputError
from plaid.io.datalist import CaseRecord
from plaid.patches.prepared import PreparedImage, Problem, prepare_images
from plaid.serialization import json_safe, write_json
from plaid.train.checkpointing import PATCH_LABELS_FILE, SPLIT_FILE, check_output_folder
from plaid.train.config import TrainConfig
from plaid.train.holdout import TRAINING_PARTS, read_split, records_in_part
from plaid.train.loop import TrainResult
from plaid.train.members import fit_prepared
from plaid.train.splits import describe_split, split_by_group
from plaid.train.validation import EpochStats

logger = logging.getLogger(__name__)


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
    resume: bool = False,
    on_error: str = "skip",
    progress: bool = True,
    on_epoch: Callable[[EpochStats], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    extra_split: dict[str, Any] | None = None,
) -> TrainResult:
    """Split labelled records by patient, prepare their patches and train; writes the split beside the weights.

    The records are taken in image-id order, so the order they come in does not change the model.

    ``extra_split`` (e.g. a held-out test set chosen by the caller) is stored in split.json too, and the
    whole split travels inside the checkpoints. An output folder that already holds a run is refused
    unless ``resume`` is set and the stored configuration is compatible; resuming rewrites nothing stored.
    """
    out_dir = Path(out_dir)
    config.validate()
    check_output_folder(out_dir, config, resume)
    # sorted: the same films give the same model whatever order a datastore or a folder listed them in
    usable = sorted((record for record in records if record.label), key=lambda r: (r.image_id, str(r.image)))
    missing = [record for record in records if not record.label]
    problems = [Problem(path=r.image, message=f"{r.image}: no annotation mask") for r in missing]
    if missing:
        if on_error == "stop":
            raise PlaidInputError("no annotation mask for this image", missing[0].image)
        for record in missing:
            logger.warning("skipping %s: no annotation mask", record.image)
    stored_split = read_split(out_dir / SPLIT_FILE) if resume and (out_dir / SPLIT_FILE).is_file() else None
    if stored_split is not None:
        usable = records_of_stored_split(usable, stored_split)
    settings = config.patch_settings
    prepared, read_problems = prepare_images(usable, settings, on_error=on_error, progress=progress)
    problems += read_problems
    if not prepared:
        raise PlaidInputError("no usable labelled image to train on")
    if stored_split is not None:  # a resumed run trains and validates on the images it stored, nothing else
        stored_validation, _ = records_in_part(usable, stored_split, "validation")
        validation_ids = {record.image_id for record in stored_validation}
        train_ids = {p.record.image_id for p in prepared} - validation_ids
    else:
        positive_groups = {p.record.group for p in prepared if p.labels is not None and p.labels.any()}
        train_records, _ = training_split([p.record for p in prepared], config, positive_groups)
        train_ids = {r.image_id for r in train_records}
    train_prepared = [p for p in prepared if p.record.image_id in train_ids]
    val_prepared = [p for p in prepared if p.record.image_id not in train_ids]
    out_dir.mkdir(parents=True, exist_ok=True)
    if stored_split is not None:
        split = stored_split  # a resumed run keeps what it stored
    else:
        split = describe_split({"train": [p.record for p in train_prepared],
                                "validation": [p.record for p in val_prepared]})
        split["problems"] = [asdict(problem) for problem in problems]
        split.update(extra_split or {})
        write_json(out_dir / SPLIT_FILE, split)
        write_json(out_dir / PATCH_LABELS_FILE, describe_patch_labels(prepared))
    logger.info("training on %d images, validating on %d (of %d usable)", len(train_prepared),
                len(val_prepared), len(prepared))
    result = fit_prepared(config, out_dir, train_prepared, val_prepared, resume=resume, progress=progress,
                          on_epoch=on_epoch, should_stop=should_stop, checkpoint_extra={"split": json_safe(split)})
    result.problems = problems
    return result


def training_split(records: Sequence[CaseRecord], config: TrainConfig,
                   positive_groups: set[str]) -> tuple[list[CaseRecord], list[CaseRecord]]:
    """(training, validation) records: ``val_fraction`` of the patients (calcified ones dealt out first), then
    women without calcification moved to validation until it holds ``operating_point_normal_women`` of them."""
    train, validation = split_by_group(records, config.val_fraction, config.seed, positive_groups=positive_groups)
    return hold_out_normal_women(train, validation, positive_groups, config.operating_point_normal_women, config.seed)


def hold_out_normal_women(
    train: Sequence[CaseRecord], validation: Sequence[CaseRecord], calcified: set[str], count: int, seed: int
) -> tuple[list[CaseRecord], list[CaseRecord]]:
    """Move women without calcification from training to validation until validation holds ``count`` of them.

    Their films choose the operating point (`plaid.train.operating_point`), which needs no calcified woman;
    at least one woman without calcification stays in training. Returns (train, validation).
    """
    normal_in_validation = {record.group for record in validation if record.group not in calcified}
    normal_in_training = sorted({record.group for record in train if record.group not in calcified})
    wanted = min(count - len(normal_in_validation), len(normal_in_training) - 1)
    if wanted <= 0:
        return list(train), list(validation)
    rng = np.random.default_rng(seed + 7)
    moved = set(rng.choice(normal_in_training, size=wanted, replace=False).tolist())
    logger.info("holding out %d women without calcification for the operating point", wanted)
    return ([record for record in train if record.group not in moved],
            [*validation, *(record for record in train if record.group in moved)])


def records_of_stored_split(records: Sequence[CaseRecord], split: dict[str, Any]) -> list[CaseRecord]:
    """The records a resumed run trained and validated on (its stored split's train and validation parts).

    Images added to the data since are left out, and stored images no longer in the data are named in a
    warning; `PlaidInputError` when none of the stored images is left.
    """
    chosen: list[CaseRecord] = []
    missing: list[str] = []
    for part in TRAINING_PARTS:
        found, lost = records_in_part(records, split, part)
        chosen += [record for record in found if record not in chosen]
        missing += lost
    if missing:
        logger.warning("resuming without %d images of the stored split that are no longer in the data: %s",
                       len(missing), ", ".join(missing[:10]))
    left_out = len(records) - len(chosen)
    if left_out:
        logger.info("resuming on the stored split: %d images not in it are left out", left_out)
    if not chosen:
        raise PlaidInputError("cannot resume: none of the images of the stored split is in the data")
    return chosen
