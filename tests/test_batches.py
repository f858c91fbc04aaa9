"""Batched training data: whole-batch gather, flips/turns as batch operations, fixed shapes, batched clusters.

Every batched function is checked against its per-patch reference on the CPU; the GPU runs the same functions.
"""

from __future__ import annotations

import numpy as np
import torch

from plaid.patches.prepared import PatchSettings, patch_index_for, prepare
from plaid.patches.sampling import BalancedSampler
from plaid.train.batches import (
    NO_AUGMENTATION,
    BatchFeed,
    PatchBatchSource,
    augment_batch,
    batch_on_device,
    draw_dihedral,
    plan_epoch,
)
from plaid.train.insertion import InsertedPositives, clustered_patch, draw_clusters, normal_rows, paste_clusters
from plaid.train.loop import PatchTrainer, TrainConfig
from plaid.train.pretrain import PretrainConfig, pretext_batch, tissue_rows

CPU = torch.device("cpu")


def apply_dihedral(patch: np.ndarray, left_right: bool, up_down: bool, turns: int) -> np.ndarray:
    """The per-patch reference of `augment_batch`: flip left-right, then up-down, then quarter turns."""
    if left_right:
        patch = patch[:, ::-1]
    if up_down:
        patch = patch[::-1, :]
    return np.rot90(patch, int(turns))


def _dihedral(patch: np.ndarray) -> list[np.ndarray]:
    return [apply_dihedral(patch, code & 1, code & 2, code >> 2) for code in range(16)]


def _labelled_image(rng: np.random.Generator, size: int = 32):  # type: ignore[no-untyped-def]
    pixels = rng.random((4 * size, 3 * size)).astype(np.float32) * 1000
    mask = np.zeros(pixels.shape, dtype=np.uint8)
    mask[5, 5] = mask[size + 3, 2 * size + 3] = 1
    return prepare(pixels, PatchSettings(patch_size=size, skip_background=False), mask=mask)


def test_batch_augmentation_equals_the_per_patch_reference_for_the_same_draws() -> None:
    rng = np.random.default_rng(1)
    patches = torch.from_numpy(rng.random((40, 1, 8, 8)).astype(np.float32))
    codes = np.concatenate([np.arange(16), draw_dihedral(rng, 23), [NO_AUGMENTATION]]).astype(np.int8)
    out = augment_batch(patches, codes)
    for patch, source, code in zip(out[:, 0].numpy(), patches[:, 0].numpy(), codes, strict=True):
        expected = source if code < 0 else apply_dihedral(source, code & 1, code & 2, code >> 2)
        np.testing.assert_array_equal(patch, expected)
    draws = draw_dihedral(np.random.default_rng(0), 4000)
    assert abs((draws & 1).mean() - 0.5) < 0.05 and abs(((draws >> 1) & 1).mean() - 0.5) < 0.05
    assert np.all(np.abs(np.bincount(draws >> 2, minlength=4) / 4000 - 0.25) < 0.04)


def test_training_batches_have_one_shape_cover_the_epoch_and_keep_their_labels() -> None:
    image = _labelled_image(np.random.default_rng(2))
    index = BalancedSampler(patch_index_for([image]), seed=0).epoch_index(0)
    assert len(index) == 4
    plans = plan_epoch(index, batch_size=3, seed=5, augment=True, shuffle=True)
    assert [len(plan) for plan in plans] == [3, 3]                       # 4 rows padded to 6: one shape
    assert set(np.concatenate([plan.patch for plan in plans])) == set(index.patch.tolist())
    ranks = [plan_epoch(index, 1, 5, True, True, rank=rank, world_size=2) for rank in (0, 1)]
    assert sorted(np.concatenate([plan.patch for plans in ranks for plan in plans]).tolist()) == sorted(
        index.patch.tolist())
    scoring = plan_epoch(index, batch_size=3, seed=0, augment=False, shuffle=False)
    assert [len(plan) for plan in scoring] == [3, 1] and np.all(np.concatenate([p.codes for p in scoring]) < 0)

    trainer = PatchTrainer(TrainConfig(batch_size=3, device="cpu", pretrained=False), ".", progress=False)
    seen = 0
    for patches, labels in trainer._data_loader([image], index, shuffle=True, seed=5):
        assert patches.shape == (3, 1, 32, 32) and patches.dtype == torch.float32
        for patch, label in zip(patches[:, 0].numpy(), labels.numpy(), strict=True):
            sources = [number for number in range(len(image.grid))
                       if any(np.array_equal(patch, view) for view in _dihedral(image.patches([number])[0]))]
            assert len(sources) == 1 and label == image.labels[sources[0]]   # a flip/turn of its source
            seen += 1
    assert seen == 6


def test_the_gpu_form_finished_on_the_device_equals_the_cpu_form() -> None:
    image = _labelled_image(np.random.default_rng(3))
    index = patch_index_for([image])
    inserted = InsertedPositives([image], normal_rows(index), count=3, seed=4)
    for plan in plan_epoch(index, 4, seed=9, augment=True, shuffle=True, inserted=inserted):
        finished = PatchBatchSource([image], finish=True)[plan]
        stored = PatchBatchSource([image], finish=False)[plan]
        assert stored[0].dtype == torch.int16 and len(stored) == 3
        patches, labels = batch_on_device(stored, CPU)
        torch.testing.assert_close(patches, finished[0], rtol=0, atol=0)
        assert torch.equal(labels, finished[1]) and patches.is_contiguous(memory_format=torch.channels_last)


def test_inserted_positives_in_a_batch_are_the_per_item_clusters() -> None:
    image = _labelled_image(np.random.default_rng(4))
    index = patch_index_for([image])
    inserted = InsertedPositives([image], normal_rows(index), count=5, seed=11)
    feed = BatchFeed(batch_size=4, num_workers=0, device=CPU)
    found = 0
    for plan in plan_epoch(index, 4, seed=1, augment=False, shuffle=False, inserted=inserted):
        patches, labels = feed._loader([image], finish=True).dataset[plan]
        for row in np.flatnonzero(plan.inserted_item >= 0):
            rng, image_number, patch_number = inserted.draw(int(plan.inserted_item[row]))
            expected = clustered_patch([image][image_number], patch_number, rng)
            np.testing.assert_allclose(patches[row, 0].numpy(), expected, atol=1.0 / 65535)
            assert labels[row] == 1.0
            found += 1
    assert found == 5


def test_batched_clusters_follow_the_placement_rules_and_stand_out() -> None:
    rng = np.random.default_rng(5)
    draws = draw_clusters(12, 64, np.full(12, 0.1), rng)
    counts = np.bincount(draws.patch, minlength=12)
    assert counts.min() >= 3 and counts.max() <= 10
    for patch in range(12):
        at = draws.patch == patch
        row, col, diameter = draws.row[at], draws.col[at], draws.diameter[at]
        assert np.all((row > 0) & (row < 64) & (col > 0) & (col < 64))
        gap = np.hypot(row[:, None] - row, col[:, None] - col)
        limit = 0.6 * (diameter[:, None] + diameter) + 1.5
        assert np.all((gap >= limit) | np.eye(len(row), dtype=bool))          # no two specks touch
    flat = torch.full((6, 64, 64), 0.4) + torch.from_numpy(rng.normal(0, 0.01, (6, 64, 64)).astype(np.float32))
    out, masks = paste_clusters(flat, np.full(6, 0.2), rng)
    for before, after, mask in zip(flat, out, masks, strict=True):
        assert 3 <= int(mask.sum()) < 0.1 * mask.numel()
        assert float((after - before)[mask].min()) > 0.02 and float((after - before).abs()[~mask].max()) < 0.2
        assert float(after.max()) <= 1.0 and float((after - before).min()) > -1e-6   # float rounding only


def test_batched_pretext_patches_come_from_tissue_with_the_right_targets() -> None:
    rng = np.random.default_rng(6)
    yy, xx = np.mgrid[:128, :128]
    pixels = np.where(np.hypot(yy - 64, xx) < 100, 1500.0, 0.0) + rng.normal(0, 30, (128, 128))
    image = prepare(pixels.astype(np.float32), PatchSettings(patch_size=32))
    rows = tissue_rows([image])
    config = PretrainConfig(patch_size=32, batch_size=24)
    patches, targets = pretext_batch([image], rows, config, np.random.default_rng(7))
    chosen = rows[np.random.default_rng(7).integers(len(rows), size=24)]   # the same first draw
    assert patches.shape == (24, 1, 32, 32) and set(targets.tolist()) == {0, 1}
    for patch, target, (_, number) in zip(patches[:, 0].numpy(), targets.tolist(), chosen, strict=True):
        assert image.tissue[number]
        source = image.patches([int(number)])[0]
        closest = min(_dihedral(source), key=lambda view: float(np.abs(patch - view).sum()))
        added = patch - closest
        if target == 0:
            np.testing.assert_array_equal(added, 0)
        else:                                                   # a cluster: only brighter, and clearly so
            assert added.min() > -1e-6 and (added > 0.02).sum() >= 3
