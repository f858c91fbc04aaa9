"""The data both demos (`make demo`, `make pacs-demo`) train their brief model on, and a line on its threshold.

The sample data hold one woman without calcification (two films), too few to set the served threshold on
(`plaid.train.operating_point` takes the lowest threshold whose false marks per normal film stay in bound).
`prepare_demo_studies` copies the sample data into a working folder, leaves the last films unlabelled (to
annotate in MONAI Label), and adds ``normal_women`` synthetic women without calcification (CC and MLO, empty
masks) so the demo recipe's ``operating_point_normal_women`` can hold enough of them out.
`withheld_images` names the films left unlabelled, which both demos infer (never trained on);
`operating_point_line` says, from the trained checkpoint, what its threshold was chosen on.
"""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import numpy as np

from plaid.synth.datasets import METADATA_COLUMNS, write_case
from plaid.synth.generator import synthesize_case

logger = logging.getLogger(__name__)

UNLABELED_FOR_DEMO = 2
DEMO_NORMAL_WOMEN = 5  # ten normal films: operating_point_min_normal_films' default
DEMO_NORMAL_SEED = 2032
IMAGE_SUFFIXES = (".png", ".dcm")


def prepare_demo_studies(source: Path, studies: Path, normal_women: int = DEMO_NORMAL_WOMEN) -> Path:
    """Fill ``studies`` (once per file) with the sample data of ``source``, the last `UNLABELED_FOR_DEMO`
    images without their labels, and ``normal_women`` synthetic normal women (``NRMxxxx``); returns it."""
    images = _sample_images(source)
    labels = studies / "labels" / "final"
    labels.mkdir(parents=True, exist_ok=True)
    withheld = {p.stem for p in withheld_images(source)}
    for image in images:
        if not (studies / image.name).exists():
            shutil.copy2(image, studies / image.name)
    for label in sorted((source / "labels" / "final").glob("*")):
        if label.stem.split(".")[0] not in withheld and not (labels / label.name).exists():
            shutil.copy2(label, labels / label.name)
    rows = _metadata_rows(source / "metadata.csv")
    rng = np.random.default_rng(DEMO_NORMAL_SEED)
    for woman in range(normal_women):
        laterality = "R" if woman % 2 == 0 else "L"
        patient = f"NRM{woman + 1:04d}"
        age = int(rng.integers(40, 70))
        spacing = round(float(rng.uniform(0.07, 0.1)), 4)
        for view in ("CC", "MLO"):
            image_id = f"{patient}_{laterality}_{view}"
            seed = int(rng.integers(0, 2**31))
            if (studies / f"{image_id}.png").exists():
                rows.append({"image_id": image_id, "file": f"{image_id}.png", "label": f"labels/final/{image_id}.png",
                             "patient_id": patient, "age": age, "laterality": laterality, "view": view,
                             "pixel_spacing_mm": spacing, "n_clusters": 0, "n_specks": 0})
                continue
            case = synthesize_case(1400, 1100, seed=seed, view=view, laterality=laterality, n_clusters=0,
                                   pixel_spacing_mm=spacing, patient_id=patient, age=age)
            rows.append(write_case(case, studies, image_id, fmt="png"))
    with (studies / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(METADATA_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    logger.info("demo studies in %s: %d images, %d synthetic normal women added", studies, len(rows), normal_women)
    return studies


def withheld_images(source: Path) -> list[Path]:
    """The sample images of ``source`` that `prepare_demo_studies` leaves unlabelled (its last
    `UNLABELED_FOR_DEMO`, in name order): the films the demos infer."""
    return _sample_images(source)[-UNLABELED_FOR_DEMO:]


def _sample_images(source: Path) -> list[Path]:
    """The image files (PNG, DICOM) directly in ``source``, sorted by name."""
    return sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _metadata_rows(path: Path) -> list[dict[str, object]]:
    """The rows of a metadata.csv ([] when there is none)."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def operating_point_line(checkpoint: Path) -> tuple[str, bool]:
    """A line saying what the checkpoint's threshold was chosen on, and whether that held enough films without
    calcification (the checkpoint's own ``operating_point_warning``, `plaid.train.operating_point`)."""
    from plaid.model.checkpoint import read_checkpoint

    payload = read_checkpoint(checkpoint)
    normal = payload.get("operating_point_normal_films")
    line = (f"operating point: threshold {float(payload.get('threshold', float('nan'))):.3f} "
            f"({payload.get('operating_point', '?')}) chosen on {payload.get('operating_point_films', '?')} "
            f"{payload.get('operating_point_films_source', 'validation')} films, "
            f"{'an unknown number' if normal is None else normal} of them without calcification")
    warning = payload.get("operating_point_warning")
    if warning:
        line += f" - {warning}"
    return line, normal is not None and not warning
