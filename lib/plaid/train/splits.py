"""Seeded splits by patient (or by image when no patient id): never by patch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from plaid.io.datalist import CaseRecord

RecordT = TypeVar("RecordT", bound=CaseRecord)


def split_by_group(
    records: Sequence[RecordT], fraction: float, seed: int = 0, min_groups: int = 1,
    positive_groups: set[str] | None = None,
) -> tuple[list[RecordT], list[RecordT]]:
    """Split records into (rest, held_out) so that no patient is on both sides.

    ``fraction`` of the groups (rounded up, at least ``min_groups`` when there are two or more groups)
    go to the held-out side. With ``positive_groups`` (patients with any calcification) the split is
    stratified: both sides get positive patients when there are at least two. A single group stays in
    ``rest``.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    groups = sorted({record.group for record in records})
    if fraction == 0.0 or len(groups) < 2:
        return list(records), []
    count = min(len(groups) - 1, max(min_groups, math.ceil(fraction * len(groups))))
    rng = np.random.default_rng(seed)
    strata = [groups] if not positive_groups else [
        [g for g in groups if g in positive_groups], [g for g in groups if g not in positive_groups]
    ]
    held: set[str] = set()
    for stratum in strata:
        if not stratum:
            continue
        share = max(1, round(count * len(stratum) / len(groups))) if len(stratum) > 1 else 0
        share = min(share, count - len(held), len(stratum) - 1)
        if share > 0:
            held.update(rng.choice(stratum, size=share, replace=False).tolist())
    remaining = [g for g in groups if g not in held]
    if len(held) < count:
        held.update(rng.choice(remaining, size=count - len(held), replace=False).tolist())
    rest = [record for record in records if record.group not in held]
    held_out = [record for record in records if record.group in held]
    return rest, held_out


def describe_split(named_parts: dict[str, Sequence[CaseRecord]]) -> dict[str, list[dict[str, str | None]]]:
    """A JSON-ready description of a split (image ids and patients per part), to repeat a run exactly."""
    return {
        name: [{"image_id": r.image_id, "image": r.image, "patient_id": r.patient_id} for r in part]
        for name, part in named_parts.items()
    }
