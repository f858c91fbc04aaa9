"""The held-out test split: chosen by patient (never by patch), seeded, recorded in the model's split.json.

`plaid train --test-fraction F` removes a share of the patients before training and writes them under
``"test"`` in ``MODEL_DIR/split.json``; `plaid evaluate` reads that list back (or re-derives the same split
from the same data, fraction and seed), so a run can be repeated exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plaid.errors import PlaidInputError
from plaid.io.datalist import CaseRecord, entry_group
from plaid.io.labels import read_label_mask
from plaid.serialization import read_json_object
from plaid.train.splits import describe_split, split_by_group

logger = logging.getLogger(__name__)

TEST_PART = "test"
TRAINING_PARTS = ("train", "validation")


def calcified_groups(records: Sequence[CaseRecord]) -> set[str]:
    """Patients (split groups) with at least one calcification pixel in one of their masks.

    Used only to stratify the split; a mask that cannot be read counts as empty here (the error is
    reported, with its file name, when the image is used for training or evaluation).
    """
    groups: set[str] = set()
    for record in records:
        if not record.label or record.group in groups:
            continue
        try:
            if read_label_mask(record.label).any():
                groups.add(record.group)
        except PlaidInputError as exc:
            logger.debug("ignoring %s while stratifying the test split", exc)
    return groups


def holdout_split(
    records: Sequence[CaseRecord], fraction: float, seed: int = 0
) -> tuple[list[CaseRecord], list[CaseRecord]]:
    """Split into (development, test) by patient, stratified so both sides get calcified patients if possible."""
    if not 0.0 < fraction < 1.0:
        raise PlaidInputError(f"test fraction must be between 0 and 1 (exclusive), got {fraction}")
    development, test = split_by_group(records, fraction, seed, positive_groups=calcified_groups(records))
    if not test:
        raise PlaidInputError(
            f"cannot hold out a test split: the {len(records)} images belong to fewer than two patients"
        )
    return development, test


def describe_holdout(test: Sequence[CaseRecord], fraction: float | None, seed: int | None) -> dict[str, Any]:
    """JSON-ready description of a test split: its images and patients, and how it was drawn."""
    return {TEST_PART: describe_split({TEST_PART: test})[TEST_PART], "test_fraction": fraction, "test_seed": seed}


def read_split(path: str | Path) -> dict[str, Any]:
    """Parse a split.json file."""
    path = Path(path)
    if not path.is_file():
        raise PlaidInputError("split file does not exist", path)
    return read_json_object(path, "split file")


def records_in_part(
    records: Sequence[CaseRecord], split: dict[str, Any], part: str
) -> tuple[list[CaseRecord], list[str]]:
    """Records listed in ``split[part]`` (matched by image id, else by file name), and ids not found in ``records``."""
    entries = split.get(part) or []
    by_id = {record.image_id: record for record in records}
    by_name = {Path(record.image).name: record for record in records}
    chosen: list[CaseRecord] = []
    missing: list[str] = []
    for entry in entries:
        record = by_id.get(entry.get("image_id", "")) or by_name.get(Path(entry.get("image") or "").name)
        if record is None:
            missing.append(str(entry.get("image_id") or entry.get("image")))
        elif record not in chosen:
            chosen.append(record)
    return chosen, missing


def patients_in(split: dict[str, Any], parts: Sequence[str]) -> set[str]:
    """Split groups (patient ids, or ``image:<id>`` without one) listed in the given parts of a split."""
    return {entry_group(entry) for part in parts for entry in split.get(part) or []}


@dataclass
class EvalSelection:
    """Which records an evaluation uses, where that choice came from, and any overlap with training."""

    records: list[CaseRecord]
    source: str
    missing: list[str] = field(default_factory=list)
    training_groups: set[str] = field(default_factory=set)
    test_fraction: float | None = None
    seed: int | None = None
    threshold_groups: set[str] = field(default_factory=set)

    @property
    def overlap(self) -> list[str]:
        """Patients that are both in this test set and in the model's training/validation split."""
        return sorted({record.group for record in self.records} & self.training_groups)

    @property
    def threshold_overlap(self) -> list[str]:
        """Patients of this test set whose films chose the model's stored threshold."""
        return sorted({record.group for record in self.records} & self.threshold_groups)

    @property
    def includes_seen_films(self) -> bool:
        """True when a film of this test set trained the model or chose its threshold (only with ``--all``)."""
        return bool(self.overlap or self.threshold_overlap)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for the report; readable back as a split file (its ``"test"`` part)."""
        return {
            "source": self.source,
            "test_fraction": self.test_fraction,
            "test_seed": self.seed,
            TEST_PART: [
                {"image_id": r.image_id, "image": r.image, "patient_id": r.patient_id, "age": r.age}
                for r in self.records
            ],
            "patients": sorted({record.group for record in self.records}),
            "missing_from_data": self.missing,
            "training_patients_known": bool(self.training_groups),
            "overlap_with_training": self.overlap,
            "overlap_with_threshold_films": self.threshold_overlap,
        }


def select_test_records(
    records: Sequence[CaseRecord],
    model_split: str | Path | dict[str, Any] | None = None,
    split_file: str | Path | None = None,
    test_fraction: float | None = None,
    seed: int = 0,
    use_all: bool = False,
    threshold_films: Sequence[dict[str, Any]] = (),
) -> EvalSelection:
    """Choose the evaluation images.

    In order: ``use_all`` takes every record; ``split_file`` takes its ``"test"`` part; ``test_fraction``
    re-derives the split `plaid train --test-fraction` made (same data, fraction and seed); otherwise the
    model's own split (``model_split``: the split stored in its checkpoint, or its split.json) is used if it
    lists a test part, and failing that every record of a patient the model did not train or validate on and
    whose films did not choose its threshold (``threshold_films``, as the checkpoint lists them).

    Except with ``use_all``, a test set holding a patient the model trained or validated on, or whose films chose
    its threshold, is refused with a `PlaidInputError` that names them.
    """
    if isinstance(model_split, dict):
        model_info = model_split
    else:
        model_info = read_split(model_split) if model_split and Path(model_split).is_file() else {}
    training_groups = patients_in(model_info, TRAINING_PARTS)
    threshold_groups = {entry_group(entry) for entry in threshold_films}
    if use_all:
        return EvalSelection(list(records), "all images in the data (--all)", training_groups=training_groups,
                             threshold_groups=threshold_groups)
    if split_file:
        split = read_split(split_file)
        if not split.get(TEST_PART):
            raise PlaidInputError(f"split file lists no {TEST_PART!r} images", split_file)
        chosen, missing = records_in_part(records, split, TEST_PART)
        return _checked(EvalSelection(chosen, f"split file {split_file}", missing, training_groups,
                                      split.get("test_fraction"), split.get("test_seed"), threshold_groups))
    if test_fraction:
        _, test = holdout_split(records, test_fraction, seed)
        return _checked(EvalSelection(test, f"re-derived test split (fraction {test_fraction}, seed {seed})",
                                      training_groups=training_groups, test_fraction=test_fraction, seed=seed,
                                      threshold_groups=threshold_groups))
    if model_info.get(TEST_PART):
        chosen, missing = records_in_part(records, model_info, TEST_PART)
        source = f"test split recorded with the model ({_split_source(model_split)})"
        return _checked(EvalSelection(chosen, source, missing, training_groups, model_info.get("test_fraction"),
                                      model_info.get("test_seed"), threshold_groups))
    seen = training_groups | threshold_groups
    unseen = [record for record in records if record.group not in seen]
    if seen and len(unseen) < len(records):
        logger.warning("leaving out %d images of patients the model trained or validated on or whose films chose its "
                       "threshold (use --all to keep them)", len(records) - len(unseen))
    if not unseen:
        raise PlaidInputError("every image in the data belongs to a patient the model was trained or validated on, "
                              "or whose films chose its threshold; train with --test-fraction, pass other data, or "
                              "use --all")
    source = "all images of patients not used in training" if seen else "all images in the data"
    return EvalSelection(unseen, source, training_groups=training_groups, threshold_groups=threshold_groups)


def _split_source(model_split: str | Path | dict[str, Any] | None) -> str:
    return "stored in the checkpoint" if isinstance(model_split, dict) else str(model_split)


def _checked(selection: EvalSelection) -> EvalSelection:
    """Warn about listed images that are missing; fail when none are left, or when a listed patient trained the
    model or chose its threshold (naming them)."""
    for overlap, role in ((selection.overlap, "trained or validated the model"),
                          (selection.threshold_overlap, "chose the model's stored threshold")):
        if overlap:
            raise PlaidInputError(
                f"{len(overlap)} patients of the {selection.source} have films that {role}: "
                f"{', '.join(overlap[:10])}{' ...' if len(overlap) > 10 else ''}; their figures would flatter the "
                "model. Evaluate on other films, or pass --all to report every film anyway (the report says so)")
    if selection.missing:
        logger.warning("%d test images of the split are not in the data: %s", len(selection.missing),
                       ", ".join(selection.missing[:10]))
    if not selection.records:
        raise PlaidInputError(f"no test image of the {selection.source} is in the data")
    return selection
