"""mini-MIAS adapter: ``Info.txt`` truth rows plus PGM (or PNG) films to PLAID's folder layout.

Info.txt has one row per abnormality: ``REF TISSUE CLASS [SEVERITY [X Y RADIUS]]``. Centres are given
with the origin at the bottom-left corner, so row = height - 1 - Y and column = X. For calcifications the
circle encloses a cluster; rows without a centre ("*NOTE 3*": calcifications spread over the breast) make
the image a positive at image level only. Films come in pairs (mdb001 + mdb002 are one woman).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plaid.errors import PlaidInputError
from plaid.importers.common import ImportedCase, LeftOut, disc_mask, write_dataset
from plaid.io.images import read_mammogram
from plaid.patches.tissue import tissue_mask

logger = logging.getLogger(__name__)

MIAS_SPACING_MM = 0.2
CALCIFICATION = "CALC"
CLASSES = ("CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM", "NORM")
ROW_PATTERN = re.compile(r"^(mdb\d{3})\s+([FGD])\s+([A-Z]{4})\b(.*)$")
IMAGE_SUFFIXES = (".pgm", ".png")


@dataclass(frozen=True)
class MiasRow:
    """One abnormality row of Info.txt (x, y, radius are None where the row has no centre)."""

    ref: str
    tissue: str
    abnormality: str
    severity: str | None
    x: float | None
    y: float | None
    radius: float | None


def parse_info(path: str | Path) -> list[MiasRow]:
    """Every truth row of a MIAS Info.txt (the readme text around them is skipped)."""
    rows = []
    for line in Path(path).read_text(errors="replace").splitlines():
        match = ROW_PATTERN.match(line.strip())
        if not match:
            continue
        ref, tissue, abnormality, rest = match.groups()
        if abnormality not in CLASSES:
            raise PlaidInputError(f"unknown abnormality class {abnormality!r} in row {line.strip()!r}", path)
        tokens = rest.split()
        severity = tokens[0] if tokens and tokens[0] in ("B", "M") else None
        numbers = [float(token) for token in tokens[1 if severity else 0:] if re.fullmatch(r"\d+(\.\d+)?", token)]
        x, y, radius = numbers[:3] if len(numbers) >= 3 else (None, None, None)
        rows.append(MiasRow(ref, tissue, abnormality, severity, x, y, radius))
    if not rows:
        raise PlaidInputError("no MIAS truth rows (mdbNNN TISSUE CLASS ...) found", path)
    return rows


def patient_of(ref: str) -> str:
    """The film pair of a MIAS reference: mdb001 and mdb002 are both 'mdb001+mdb002'."""
    number = int(ref[3:])
    first = number if number % 2 else number - 1
    return f"mdb{first:03d}+mdb{first + 1:03d}"


def find_image(folder: Path, ref: str) -> Path | None:
    """The film of ``ref`` in ``folder`` (PGM as distributed, or PNG)."""
    for suffix in IMAGE_SUFFIXES:
        for name in (f"{ref}{suffix}", f"{ref}{suffix.upper()}"):
            if (folder / name).is_file():
                return folder / name
    return None


def circle_in_breast(breast: np.ndarray, row: float, col: float, radius: float) -> bool:
    """True when the circle's centre lies inside the image and on the breast."""
    r, c = int(round(row)), int(round(col))
    if not (0 <= r < breast.shape[0] and 0 <= c < breast.shape[1]):
        return False
    return bool(breast[max(0, r - 1): r + 2, max(0, c - 1): c + 2].any())


def build_case(ref: str, rows: list[MiasRow], image_path: Path,
               left_out: list[LeftOut]) -> ImportedCase:
    """Masks and metadata of one film from its truth rows; unusable circles are appended to ``left_out``."""
    image = read_mammogram(image_path)
    shape = image.shape
    breast = tissue_mask(image.pixels)
    calcs = np.zeros(shape, dtype=bool)
    findings = np.zeros(shape, dtype=bool)
    calcified = any(row.abnormality == CALCIFICATION for row in rows)
    located = 0
    for row in rows:
        if row.abnormality == "NORM":
            continue
        if row.x is None:
            if row.abnormality == CALCIFICATION:
                logger.info("%s: calcifications without a centre (distributed): image-level positive", ref)
            else:
                left_out.append(LeftOut(ref, f"{row.abnormality} row without a centre"))
            continue
        centre_row, centre_col = shape[0] - 1 - row.y, row.x
        if not circle_in_breast(breast, centre_row, centre_col, row.radius):
            left_out.append(LeftOut(ref, f"{row.abnormality} circle (x {row.x:g}, y {row.y:g}, r {row.radius:g}) "
                                         "falls outside the breast"))
            continue
        disc = disc_mask(shape, centre_row, centre_col, row.radius)
        if row.abnormality == CALCIFICATION:
            calcs |= disc
            located += 1
        else:
            findings |= disc
    mask = calcs if located or not calcified else None
    return ImportedCase(
        image_id=ref, source=image_path, patient_id=patient_of(ref), calcified=calcified, mask=mask,
        pixel_spacing_mm=MIAS_SPACING_MM, findings=findings,
        columns={
            "tissue": rows[0].tissue,
            "abnormalities": ";".join(sorted({row.abnormality for row in rows})),
            "severity": ";".join(sorted({row.severity for row in rows if row.severity})),
            "calcification_clusters": located,
        },
    )


def import_mias(info_txt: str | Path, images: str | Path, out: str | Path) -> dict:
    """Write mini-MIAS (Info.txt + images folder) to ``out`` in PLAID's layout; returns the import report."""
    images = Path(images)
    if not images.is_dir():
        raise PlaidInputError("images folder does not exist", images)
    by_ref: dict[str, list[MiasRow]] = defaultdict(list)
    for row in parse_info(info_txt):
        by_ref[row.ref].append(row)
    cases, left_out = [], []
    for ref in sorted(by_ref):
        image_path = find_image(images, ref)
        if image_path is None:
            left_out.append(LeftOut(ref, "image file not found"))
            continue
        cases.append(build_case(ref, by_ref[ref], image_path, left_out))
    if not cases:
        raise PlaidInputError("none of the films listed in Info.txt is in the images folder", images)
    return write_dataset(out, cases, left_out, dataset="mini-MIAS")
