"""Does the cluster rule for regions (`plaid.patches.regions`) change a dataset's region count?

For every film with a mask, counts the 8-connected marks (the former definition of a region) and the clusters
of the current rule at the film's pixel spacing, as `plaid evaluate` and `plaid crossval` tile it, and lists the
films where they differ. FROC figures depend on the regions only through these counts and the patches each region
touches, so a dataset on which no count differs keeps its figures.

    python benchmarks/region_rule_check.py DATA [--recipe recipes/mini-mias.json] [--cluster-gap-mm 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scipy import ndimage
from tqdm import tqdm

from plaid.io.datalist import load_records
from plaid.patches.prepared import prepare_image
from plaid.patches.regions import DEFAULT_CLUSTER_GAP_MM, EIGHT_CONNECTED, calcification_regions
from plaid.train.recipes import config_with_overrides


def main() -> int:
    """Print the count of marks and of clusters per dataset and the films where they differ."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--recipe", type=Path, help="recipe whose patch settings (spacing) tile the films")
    parser.add_argument("--cluster-gap-mm", type=float, default=DEFAULT_CLUSTER_GAP_MM)
    args = parser.parse_args()
    settings = config_with_overrides(args.recipe, {}).patch_settings
    marks = clusters = films = 0
    differing = []
    for record in tqdm([r for r in load_records(args.data) if r.label], desc="films"):
        image = prepare_image(record, settings, keep_mask=True)
        mask = image.label_mask
        components = ndimage.label(mask != 0, structure=EIGHT_CONNECTED)[1]
        grouped = calcification_regions(mask, image.spacing_mm_tiled, args.cluster_gap_mm)[1]
        marks, clusters, films = marks + components, clusters + grouped, films + 1
        if components != grouped:
            differing.append(f"{record.image_id}: {components} marks -> {grouped} clusters "
                             f"(spacing {image.spacing_mm_tiled} mm)")
    print(f"{films} films with masks: {marks} marks (8-connected), {clusters} clusters "
          f"(gap {args.cluster_gap_mm:g} mm)")
    print("films where they differ: " + ("none" if not differing else ""))
    for line in differing:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
