"""Balanced sampling: equal classes, seeded, re-drawn per epoch, capped per image."""

from __future__ import annotations

import numpy as np

from plaid.patches.sampling import BalancedSampler, PatchIndex


def _index() -> PatchIndex:
    labels = [np.zeros(100, bool), np.zeros(80, bool), np.zeros(50, bool)]
    labels[0][[3, 4, 5]] = True
    labels[2][[10, 11, 12, 13]] = True
    eligible = [np.ones(100, bool), np.ones(80, bool), np.ones(50, bool)]
    eligible[1][:40] = False  # e.g. background patches are never drawn as negatives
    return PatchIndex.from_images(labels, eligible)


def test_balanced_classes_and_all_positives_kept() -> None:
    index = _index()
    rows = BalancedSampler(index, seed=3).draw(0)
    labels = index.label[rows]
    assert labels.sum() == 7 and (labels == 0).sum() == 7
    positives = {(int(index.image[r]), int(index.patch[r])) for r in rows if index.label[r]}
    assert positives == {(0, 3), (0, 4), (0, 5), (2, 10), (2, 11), (2, 12), (2, 13)}
    drawn_negatives = [(int(index.image[r]), int(index.patch[r])) for r in rows if not index.label[r]]
    assert all(not (image == 1 and patch < 40) for image, patch in drawn_negatives)


def test_seeded_and_redrawn_each_epoch() -> None:
    index = _index()
    first = BalancedSampler(index, seed=3).draw(0)
    again = BalancedSampler(index, seed=3).draw(0)
    np.testing.assert_array_equal(first, again)
    other_epoch = BalancedSampler(index, seed=3).draw(1)
    assert set(first) != set(other_epoch)
    fixed = BalancedSampler(index, seed=3, redraw_each_epoch=False)
    np.testing.assert_array_equal(fixed.draw(0), fixed.draw(5))


def test_negative_ratio_and_cap_per_image() -> None:
    index = _index()
    rows = BalancedSampler(index, seed=1, negative_ratio=2.0).draw(0)
    assert (index.label[rows] == 0).sum() == 14
    capped = BalancedSampler(index, seed=1, negative_ratio=10.0, max_negatives_per_image=5).draw(0)
    negatives = capped[index.label[capped] == 0]
    counts = np.bincount(index.image[negatives], minlength=3)
    assert counts.max() <= 5 and counts.sum() == 15


def test_inserted_positives_count_toward_the_negatives_drawn() -> None:
    index = _index()
    rows = BalancedSampler(index, seed=2, negative_ratio=2, extra_positives=3).draw(0)
    negatives = rows[index.label[rows] == 0]
    assert len(negatives) == (7 + 3) * 2                                 # drawn for real + inserted positives
    assert len(np.unique(rows)) == len(rows)
    assert (index.label[rows] == 1).sum() == 7
