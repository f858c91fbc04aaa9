"""Datalists: which images exist, where their masks are, and who the patient is (folder, JSON or CSV)."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from plaid.errors import PlaidInputError
from plaid.io.dicom import read_dicom_identity
from plaid.io.images import DICOM_SUFFIXES, IMAGE_SUFFIXES, ImageMeta
from plaid.io.labels import LABEL_SUFFIXES, label_suffix

logger = logging.getLogger(__name__)

LABEL_FOLDERS = ("labels/final", "masks", "labels")
METADATA_FILES = ("metadata.csv", "metadata.json")


@dataclass
class CaseRecord:
    """One mammogram and what is known about it."""

    image: str
    label: str | None = None
    image_id: str = ""
    patient_id: str | None = None
    age: float | None = None
    pixel_spacing_mm: float | None = None
    calcified: bool | None = None

    def __post_init__(self) -> None:
        if not self.image_id:
            self.image_id = image_id_of(self.image)

    def fill_from(self, meta: ImageMeta) -> None:
        """Take patient id and age from the image's own metadata (DICOM header) where the record lacks them."""
        if self.patient_id is None and meta.patient_id:
            self.patient_id = meta.patient_id
        if self.age is None and meta.age_years is not None:
            self.age = meta.age_years
        if self.pixel_spacing_mm is None and meta.pixel_spacing_mm:
            self.pixel_spacing_mm = float(meta.pixel_spacing_mm[0])

    @property
    def group(self) -> str:
        """Split unit: the patient when known, else the image itself."""
        return entry_group({"patient_id": self.patient_id, "image_id": self.image_id})

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict."""
        return asdict(self)


def entry_group(entry: Mapping[str, Any]) -> str:
    """The split group of a film described by its ``patient_id`` and ``image_id`` (a record, or an entry of a
    stored split): the patient when known, else ``image:<id>``."""
    return entry.get("patient_id") or f"image:{entry.get('image_id')}"


def image_id_of(path: str | Path) -> str:
    """Image id as MONAI Label's datastore forms it: the file name without its (double) suffix."""
    name = Path(path).name
    suffix = label_suffix(name)
    return name[: -len(suffix)] if suffix and name.lower().endswith(suffix) else Path(name).stem


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _find_label(folder: Path, image_id: str) -> Path | None:
    """The mask of ``image_id`` in one of the usual label folders, if any."""
    for sub in LABEL_FOLDERS:
        for suffix in LABEL_SUFFIXES:
            candidate = folder / sub / f"{image_id}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _read_metadata_table(path: Path) -> dict[str, dict[str, Any]]:
    """Rows of a metadata CSV/JSON keyed by image id."""
    if path.suffix == ".json":
        rows = json.loads(path.read_text())
    else:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    table: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = row.get("image_id") or image_id_of(row.get("image") or row.get("file") or "")
        if key:
            table[key] = row
    return table


def _number(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _flag(value: Any) -> bool | None:
    """An image-level truth column (1/0, true/false); None when empty or absent."""
    if value in (None, ""):
        return None
    return str(value).strip().lower() in ("1", "true", "yes")


def records_from_folder(folder: str | Path) -> list[CaseRecord]:
    """Every image directly inside ``folder`` with its mask (``labels/final/``, ``masks/`` or ``labels/``).

    A ``metadata.csv``/``metadata.json`` beside the images adds patient id and age; `load_records` then reads
    the DICOM headers of films still without a patient id.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PlaidInputError("data folder does not exist", folder)
    records = []
    for path in sorted(p for p in folder.iterdir() if _is_image(p)):
        image_id = image_id_of(path)
        label = _find_label(folder, image_id)
        records.append(CaseRecord(image=str(path), label=str(label) if label else None, image_id=image_id))
    attach_metadata(records, folder)
    return records


def records_from_table(path: str | Path) -> list[CaseRecord]:
    """Records from a datalist JSON (list of objects, or {"training": [...]}) or CSV with ``image``/``label``.

    Relative paths are resolved against the datalist's folder.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        content = json.loads(path.read_text())
        rows = content.get("training", content.get("data", [])) if isinstance(content, dict) else content
    elif path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    else:
        raise PlaidInputError("datalist must be a folder, a .json or a .csv file", path)
    base = path.parent
    records = []
    for number, row in enumerate(rows):
        image = row.get("image") or row.get("file")
        if not image:
            raise PlaidInputError(f"row {number + 1} has no 'image' entry", path)
        label = row.get("label") or row.get("mask") or None
        records.append(
            CaseRecord(
                image=str(base / image) if not Path(image).is_absolute() else image,
                label=(str(base / label) if label and not Path(label).is_absolute() else label),
                image_id=row.get("image_id") or "",
                patient_id=row.get("patient_id") or None,
                age=_number(row.get("age")),
                pixel_spacing_mm=_number(row.get("pixel_spacing_mm")),
                calcified=_flag(row.get("calcified")),
            )
        )
    return records


def load_records(source: str | Path) -> list[CaseRecord]:
    """Records from a folder or a datalist file, each with its patient resolved (`resolve_patients`) before any
    split is drawn."""
    source = Path(source)
    records = records_from_folder(source) if source.is_dir() else records_from_table(source)
    resolve_patients(records)
    return records


def resolve_patients(records: Iterable[CaseRecord]) -> int:
    """Fill the patient id (and age) of DICOM films that the datalist and metadata leave without one from the
    file's header (PatientID, read without the pixels), so that every split groups a woman's films together.
    Returns how many films still have no patient id (each one its own split group), with a warning."""
    anonymous = 0
    for record in records:
        if record.patient_id is None and Path(record.image).suffix.lower() in DICOM_SUFFIXES:
            patient, age = read_dicom_identity(record.image)
            record.patient_id = patient
            if record.age is None:
                record.age = age
        anonymous += record.patient_id is None
    if anonymous:
        logger.warning("%d films have no patient id (datalist, metadata.csv or DICOM PatientID): each is split as a "
                       "patient of its own, so two views of one woman can land on both sides of a split", anonymous)
    return anonymous


def attach_metadata(records: Iterable[CaseRecord], folder: Path) -> None:
    """Fill patient id, age, pixel spacing and image-level truth (``calcified``) of records from a
    metadata.csv/json in ``folder``, where the record lacks them."""
    table: dict[str, dict[str, Any]] = {}
    for name in METADATA_FILES:
        if (folder / name).is_file():
            table.update(_read_metadata_table(folder / name))
    for record in records:
        row = table.get(record.image_id, {})
        record.patient_id = record.patient_id or row.get("patient_id") or None
        record.age = record.age if record.age is not None else _number(row.get("age"))
        if record.pixel_spacing_mm is None:
            record.pixel_spacing_mm = _number(row.get("pixel_spacing_mm"))
        if record.calcified is None:
            record.calcified = _flag(row.get("calcified"))
