"""Calcified regions of a mask, counted as radiologists count them: clusters, not single specks.

BI-RADS calls calcifications *grouped* when several lie in a small area of tissue (about 1 cm²; a square
centimetre holding five specks puts neighbours about 4-5 mm apart). PLAID's rule, the same for every dataset,
importer and report: the 8-connected marks of a mask belong to one region when a chain of marks links them with
gaps of at most ``cluster_gap_mm`` (default 4 mm) between neighbours, measured at the pixel spacing the mask is
tiled at (`DEFAULT_SPACING_MM` when the film records none). So the INbreast importer's one disc per speck gives one
region per cluster, and an outline an annotator drew around a cluster (mini-MIAS circles, whose closest pair is
4.5 mm apart) stays one region of its own.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

DEFAULT_CLUSTER_GAP_MM = 4.0
# Spacing assumed for a mask whose film records none (Hologic's 70 µm, the spacing the method was published at).
DEFAULT_SPACING_MM = 0.07
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def calcification_regions(mask: np.ndarray, spacing_mm: float | None = None,
                          cluster_gap_mm: float = DEFAULT_CLUSTER_GAP_MM) -> tuple[np.ndarray, int]:
    """(region of each pixel, 0 outside every mark; number of regions) for a mask (non-zero = calcification).

    Marks whose nearest pixels are at most ``cluster_gap_mm`` apart, directly or through other marks, share a
    region; ``cluster_gap_mm`` 0 keeps every 8-connected mark a region of its own (single-speck counting).
    """
    marks = np.asarray(mask) != 0
    components, count = ndimage.label(marks, structure=EIGHT_CONNECTED)
    if count < 2 or cluster_gap_mm <= 0:
        return components, count
    spacing = float(spacing_mm) if spacing_mm else DEFAULT_SPACING_MM
    reach = cluster_gap_mm / spacing / 2.0  # two marks join when the discs of this radius around them touch
    margin = int(np.ceil(reach)) + 1
    rows, cols = np.nonzero(marks)
    top, left = max(0, rows.min() - margin), max(0, cols.min() - margin)
    bottom, right = rows.max() + margin + 1, cols.max() + margin + 1
    window = marks[top:bottom, left:right]
    grown = ndimage.distance_transform_edt(~window) <= reach
    clusters, _ = ndimage.label(grown, structure=EIGHT_CONNECTED)
    # every mark takes the cluster of its pixels (all in one cluster, since the mark itself is connected)
    first_pixel = ndimage.minimum_position(np.ones_like(components), components, index=np.arange(1, count + 1))
    cluster_of_mark = np.array([clusters[r - top, c - left] for r, c in first_pixel])
    _, renumbered = np.unique(cluster_of_mark, return_inverse=True)
    lookup = np.r_[0, renumbered + 1]
    return lookup[components], int(renumbered.max()) + 1


def region_count(mask: np.ndarray, spacing_mm: float | None = None,
                 cluster_gap_mm: float = DEFAULT_CLUSTER_GAP_MM) -> int:
    """How many calcified regions (clusters) ``mask`` holds under `calcification_regions`' rule."""
    return calcification_regions(mask, spacing_mm, cluster_gap_mm)[1]
