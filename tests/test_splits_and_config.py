"""Patient-wise splits and training-config parsing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from plaid.errors import PlaidInputError
from plaid.io.datalist import CaseRecord
from plaid.patches.prepared import PatchSettings
from plaid.train.checkpointing import resume_conflicts
from plaid.train.config import TrainConfig
from plaid.train.splits import split_by_group


def _records() -> list[CaseRecord]:
    records = []
    for patient in range(10):
        for view in ("CC", "MLO"):
            records.append(CaseRecord(image=f"/data/p{patient}_{view}.png", patient_id=f"P{patient}"))
    records.append(CaseRecord(image="/data/anonymous.png"))  # no patient id: its own group
    return records


def test_no_patient_on_both_sides_and_seeded() -> None:
    rest, held = split_by_group(_records(), 0.2, seed=4)
    assert {r.group for r in rest}.isdisjoint({r.group for r in held})
    assert len({r.group for r in held}) == 3  # ceil(0.2 * 11 groups)
    assert len(rest) + len(held) == 21
    again_rest, again_held = split_by_group(_records(), 0.2, seed=4)
    assert [r.image for r in held] == [r.image for r in again_held]
    assert [r.image for r in split_by_group(_records(), 0.2, seed=5)[1]] != [r.image for r in held]


def test_stratified_split_puts_a_positive_patient_in_validation() -> None:
    records = _records()
    positive = {"P0", "P1"}
    for seed in range(20):
        _, held = split_by_group(records, 0.05, seed=seed, positive_groups=positive)
        assert len(held) >= 1 and {r.group for r in held} & positive, seed


def test_single_patient_stays_in_training() -> None:
    records = [CaseRecord(image="/a.png", patient_id="P"), CaseRecord(image="/b.png", patient_id="P")]
    rest, held = split_by_group(records, 0.5)
    assert len(rest) == 2 and held == []


def test_train_config_from_request_strings() -> None:
    config = TrainConfig.from_mapping({"epochs": "3", "amp": "false", "learning_rate": "0.001", "stride": "112",
                                       "unknown_key": 1, "weights_path": None})
    assert config.epochs == 3 and config.amp is False and config.learning_rate == pytest.approx(1e-3)
    assert config.patch_settings.stride == 112 and config.batch_size == 32 and config.frozen_layers == 100


def test_patch_options_are_flat_outside_and_one_patch_settings_inside() -> None:
    flat = TrainConfig.from_mapping({"patch_size": "64", "stride": 32, "target_spacing_mm": "0.1",
                                     "skip_background": "false"})
    expected = PatchSettings(patch_size=64, stride=32, skip_background=False, target_spacing_mm=0.1)
    assert flat.patch_settings == expected
    stored = flat.to_dict()
    assert stored["patch_size"] == 64 and stored["stride"] == 32 and "patch_settings" not in stored  # as runs stored it
    assert set(stored) == set(TrainConfig.option_names()) and TrainConfig.from_mapping(stored) == flat
    nested = {"patch_settings": {"patch_size": 64, "stride": 32, "skip_background": False, "target_spacing_mm": 0.1}}
    assert TrainConfig.from_mapping(nested) == flat
    assert TrainConfig.from_mapping({**nested, "patch_size": 96}).patch_settings.patch_size == 96  # flat key wins
    assert resume_conflicts(nested, flat) == []
    conflicts = resume_conflicts(stored, replace(flat, patch_settings=PatchSettings(patch_size=64)))
    assert [line.split(":")[0] for line in conflicts] == ["stride", "skip_background", "target_spacing_mm"]


def test_whole_number_options_refuse_fractions_and_booleans() -> None:
    assert TrainConfig.from_mapping({"epochs": 4.0, "batch_size": "16"}).epochs == 4
    for values, name in (({"epochs": 2.5}, "epochs"), ({"batch_size": True}, "batch_size"),
                         ({"patch_size": "64.5"}, "patch_size")):
        with pytest.raises(PlaidInputError, match=name):
            TrainConfig.from_mapping(values)
