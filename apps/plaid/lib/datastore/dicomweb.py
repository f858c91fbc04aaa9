"""PLAID's DICOMweb datastore: MG instances from a PACS (e.g. Orthanc) as `.dcm` files, labels from SEGs.

Unlike MONAI Label's stock `DICOMWebDatastore` it never converts to NIfTI and never needs dcmqi:

- an image is one MG *instance* (id: its SOPInstanceUID; a SeriesInstanceUID holding a single MG
  instance is accepted too, as OHIF's MONAI Label panel sends series ids), fetched by WADO-RS into the
  local cache as `<SOPInstanceUID>.dcm` with its header (laterality, view, age, spacing, UIDs) as info;
- QIDO-RS lists single-frame instances matching the search filter (Modality MG by default; multi-frame
  objects such as tomosynthesis are left out and refused by id) and is asked again after
  ``refresh_s`` seconds, so new studies appear; when the PACS is down the last list is kept;
- a final label is the newest *non-automatic* SEG (binary or OHIF's label map) in the PACS that refers
  to the image, read with `plaid.pacs.seg.read_seg_mask`, or a label saved through MONAI Label (any
  PLAID mask format, a SEG file, or MONAI Label's raw `.bin`); a saved final label is also stored back
  to the PACS as a MANUAL SEG so the viewer shows it;
- PLAID's own AUTOMATIC SEGs (inference results) are never taken as labels;
- image ids must be DICOM UIDs and label tags plain names (`lib.datastore.names`) before anything reaches the PACS
  or the cache; images come from the PACS only (no uploads through MONAI Label); info is checked like the
  local datastore's (`lib.datastore.stored_info`);
- a refused id or label, or a PACS that fails, raises PLAID's own errors (`PacsInputError`, `PacsError`, ...);
  the server's error handlers (`lib.server.errors`) make them 4xx answers, so this module needs nothing
  from `lib.server`.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from fastapi import HTTPException
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag
from pydicom.dataset import Dataset

from lib.datastore.label_versions import remove_versioned, save_versioned
from lib.datastore.names import check_name, is_uid
from lib.datastore.stored_info import CheckedInfo, check_label_info
from plaid.errors import LabelShapeError, PlaidError, PlaidInputError
from plaid.io.dicom import read_dicom_mammogram
from plaid.io.labels import label_suffix, read_label_mask, write_label_png
from plaid.pacs import dicomweb
from plaid.pacs.dicomweb import InstanceRecord, PacsError, PacsInputError
from plaid.pacs.seg import SeriesInfo, is_automatic, is_segmentation, read_seg_mask, referenced_instances, write_seg

logger = logging.getLogger(__name__)

CACHE_EXTENSIONS = ["*.dcm", "*.png"]
CORRECTION_SERIES = "PLAID calcification (correction)"
HEADER_FIELDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "PatientID", "StudyDate", "Modality")


class PlaidDICOMwebDatastore(CheckedInfo, DICOMWebDatastore):
    """MONAI Label datastore over DICOMweb that hands PLAID one `.dcm` per MG instance (see module doc)."""

    def __init__(self, client, search_filter: dict[str, Any] | None = None, cache_path: str | None = None,
                 refresh_s: float = 10.0, min_image_size: int = 224) -> None:
        self._client = client
        self._search_filter = dict(search_filter or {"Modality": dicomweb.MG})
        self._fetch_by_frame = False
        self._convert_to_nifti = False
        self.refresh_s = refresh_s
        self.min_image_size = min_image_size
        self._lock = threading.RLock()
        self._images: dict[str, InstanceRecord] = {}
        self._segs: dict[str, InstanceRecord] = {}
        self._seg_refs: dict[str, tuple[set[str], bool]] = {}
        self._listed_at = -float("inf")
        root = cache_path or os.path.join(Path.home(), ".cache", "monailabel", "dicom")
        path = os.path.join(root, _url_key(client.base_url))
        logger.info("PLAID DICOMweb datastore on %s (cache %s, filter %s)", client.base_url, path, self._search_filter)
        LocalDatastore.__init__(self, datastore_path=path, extensions=CACHE_EXTENSIONS, auto_reload=False)

    # -- listing ---------------------------------------------------------------------------------------
    def _refresh(self, force: bool = False) -> None:
        """Ask QIDO-RS again for images and SEGs when the list is older than ``refresh_s`` (or ``force``)."""
        with self._lock:
            if not force and time.monotonic() - self._listed_at < self.refresh_s:
                return
            try:
                images = dicomweb.search_instances(self._client, self._search_filter)
                segs = dicomweb.search_instances(self._client, {"Modality": dicomweb.SEG})
            except PacsError as exc:
                logger.warning("%s; keeping the last list (%d images)", exc, len(self._images))
                self._listed_at = time.monotonic()
                return
            self._images = {r.sop_uid: r for r in images if r.modality.upper() == self._modality() and r.frames == 1}
            self._segs = {r.sop_uid: r for r in segs}
            self._listed_at = time.monotonic()

    def _modality(self) -> str:
        return str(self._search_filter.get("Modality", dicomweb.MG)).upper()

    def list_images(self) -> list[str]:
        """SOPInstanceUIDs of the PACS's MG instances (QIDO-RS, refreshed every ``refresh_s``)."""
        self._refresh()
        return sorted(self._images)

    def _seg_labels(self) -> dict[str, InstanceRecord]:
        """For each listed image, the newest non-automatic SEG in the PACS that refers to it."""
        self._refresh()
        newest: dict[str, InstanceRecord] = {}
        for uid, record in sorted(self._segs.items(), key=lambda item: _content_stamp(item[1])):
            if uid not in self._seg_refs:
                try:
                    header = dicomweb.instance_metadata(self._client, record)
                except PacsError as exc:
                    logger.warning("cannot read SEG %s: %s", uid, exc)
                    continue
                self._seg_refs[uid] = (referenced_instances(header), is_automatic(header))
            refs, automatic = self._seg_refs[uid]
            if automatic:
                continue
            for image_id in refs & set(self._images):
                newest[image_id] = record
        return newest

    def get_labeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        """Images with a final label: saved locally, or a non-automatic SEG in the PACS."""
        listed = set(self.list_images())
        local = set(LocalDatastore.get_labeled_images(self, label_tag, labels)) & listed
        return sorted(local | set(self._seg_labels()))

    def get_unlabeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        """Listed images without a final label."""
        return sorted(set(self.list_images()) - set(self.get_labeled_images(label_tag, labels)))

    def get_image_info(self, image_id: str) -> dict[str, Any]:
        """The cached image's info (header + scores), else what QIDO-RS says about it."""
        info = super().get_image_info(image_id)
        record = self._images.get(image_id)
        if record and not info:
            info = {"StudyInstanceUID": record.study_uid, "SeriesInstanceUID": record.series_uid,
                    "SOPInstanceUID": record.sop_uid, "Modality": record.modality, **record.extra}
        return info

    def json(self) -> dict[str, Any]:
        """The cache's objects plus every listed, not yet fetched image."""
        content = super().json()
        objects = content.setdefault("objects", {})
        for image_id in self.list_images():
            objects.setdefault(image_id, {"image": {"ext": ".dcm", "info": self.get_image_info(image_id)},
                                          "labels": {}})
        return content

    # -- images ----------------------------------------------------------------------------------------
    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        """Refused: this datastore's images are the PACS's MG instances (store new ones there by STOW-RS)."""
        raise PlaidInputError("the DICOMweb datastore lists the PACS's images: store new images in the PACS "
                              "(STOW-RS), not through MONAI Label")

    def get_image_uri(self, image_id: str) -> str:
        """Path of the cached `.dcm` of an MG instance, fetched by WADO-RS first if needed ('' if unknown; an id
        that is not a DICOM UID is unknown without asking the PACS)."""
        if not is_uid(image_id):
            return ""
        cached = LocalDatastore.get_image_uri(self, image_id)
        if cached and os.path.isfile(cached):
            return cached
        record = self._resolve(image_id)
        if record is None:
            return ""
        cached = LocalDatastore.get_image_uri(self, record.sop_uid)
        if cached and os.path.isfile(cached):
            return cached
        return self._fetch(record)

    def _resolve(self, image_id: str) -> InstanceRecord | None:
        """The MG instance an id names: a listed SOPInstanceUID, or a series with exactly one MG instance."""
        self._refresh()
        if image_id not in self._images:
            self._refresh(force=True)
        if image_id in self._images:
            return self._images[image_id]
        in_series = [r for r in self._images.values() if r.series_uid == image_id]
        if len(in_series) == 1:
            return in_series[0]
        if len(in_series) > 1:
            raise PacsInputError(f"series {image_id} holds {len(in_series)} MG instances; ask for one of "
                                 f"{sorted(r.sop_uid for r in in_series)}")
        for key in ("SOPInstanceUID", "SeriesInstanceUID"):
            found = dicomweb.search_instances(self._client, {key: image_id})
            if any(r.modality.upper() == self._modality() for r in found):
                frames = max(r.frames for r in found)
                raise PacsInputError(f"{image_id} has {frames} frames; PLAID reads 2-D single-frame mammograms")
            if found:
                modalities = sorted({r.modality or "?" for r in found})
                raise PacsInputError(f"{image_id} is a {'/'.join(modalities)} {key[:-3].lower()}, not "
                                     f"{self._modality()}: PLAID reads mammograms only")
        return None

    def _fetch(self, record: InstanceRecord) -> str:
        """WADO-RS the instance, check it is a single-frame mammogram, and cache it with its header."""
        ds = dicomweb.retrieve(self._client, record)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            raise PacsInputError(f"instance {record.sop_uid} has {frames} frames; PLAID reads 2-D single-frame "
                                 "mammograms")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"{record.sop_uid}.dcm"
            ds.save_as(str(path), write_like_original=False)
            image = read_dicom_mammogram(path)
            if min(image.shape) < self.min_image_size:
                raise PacsInputError(f"instance {record.sop_uid} is {image.shape[0]}x{image.shape[1]}, smaller "
                                     f"than one {self.min_image_size}-pixel patch")
            info = {key: str(ds.get(key, "") or "") for key in HEADER_FIELDS}
            info.update({key: value for key, value in image.meta.to_dict().items()
                         if key in ("laterality", "view", "age_years", "pixel_spacing_mm", "patient_id")})
            info["shape"] = list(image.shape)
            LocalDatastore.add_image(self, record.sop_uid, str(path), info)
        logger.info("fetched %s (%s) from %s", record.sop_uid, info.get("view"), self._client.base_url)
        return LocalDatastore.get_image_uri(self, record.sop_uid)

    def store_results(self, datasets: list[Dataset]) -> list[str]:
        """STOW-RS PLAID's result objects (SEG / SR) to the PACS; `PacsError` when it is unreachable."""
        return dicomweb.store(self._client, datasets)

    # -- labels ----------------------------------------------------------------------------------------
    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        """The cached label file (no download: `datalist` brings the PACS's SEGs in)."""
        return LocalDatastore.get_label_uri(self, label_id, label_tag)

    def datalist(self, full_path: bool = True) -> list[dict[str, Any]]:
        """Image/label pairs for training, after turning new non-automatic SEGs of the PACS into labels."""
        for image_id, record in self._seg_labels().items():
            current = self.get_label_info(image_id, DefaultLabelTag.FINAL) or {}
            if current.get("seg_sop_instance_uid") == record.sop_uid or current.get("ts", 0) > _epoch(record):
                continue
            try:
                self._label_from_seg(image_id, record)
            except (PlaidError, HTTPException) as exc:
                logger.warning("SEG %s for %s not used: %s", record.sop_uid, image_id, exc)
        listed = set(self.list_images())
        return [item for item in LocalDatastore.datalist(self, full_path) if Path(item["image"]).stem in listed]

    def _label_from_seg(self, image_id: str, record: InstanceRecord) -> None:
        """Download one SEG and store its mask as the image's final label (PNG)."""
        image_path = self.get_image_uri(image_id)
        header = pydicom.dcmread(image_path, stop_before_pixels=True)
        mask = read_seg_mask(dicomweb.retrieve(self._client, record), image_id, (int(header.Rows), int(header.Columns)))
        with tempfile.TemporaryDirectory() as folder:
            png = write_label_png(Path(folder) / f"{image_id}.png", mask)
            save_versioned(self, image_id, str(png), DefaultLabelTag.FINAL,
                           {"seg_sop_instance_uid": record.sop_uid, "source": "pacs", "user": "pacs"})
        logger.info("label for %s from SEG %s (%d pixels)", image_id, record.sop_uid, int(mask.sum()))

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any],
                   label_id: str = "") -> str:
        """Validate a label against its image, store a final one in the PACS as a MANUAL SEG, cache it as PNG.

        Accepts PLAID's mask formats, a DICOM SEG file, and MONAI Label's raw `.bin` (rows x columns bytes).
        Nothing is stored when the tag, info or label is invalid or the PACS refuses the SEG; the label it
        replaces stays as an earlier version (`lib.datastore.label_versions`).
        """
        check_name(label_tag, "label tag")
        label_info = check_label_info(label_info, "params")
        image_path = self.get_image_uri(image_id)
        if not image_path:
            raise HTTPException(status_code=404, detail=f"image '{image_id}' is not in the datastore")
        image_id = Path(image_path).stem
        source = pydicom.dcmread(image_path)
        mask = self._read_label(label_filename, source)
        info = dict(label_info)
        if label_tag == DefaultLabelTag.FINAL:
            seg = write_seg(source, mask, SeriesInfo(CORRECTION_SERIES, number=902), algorithm_type="MANUAL")
            dicomweb.store(self._client, [seg])
            info["seg_sop_instance_uid"] = str(seg.SOPInstanceUID)
            self._listed_at = -float("inf")
        with tempfile.TemporaryDirectory() as folder:
            png = write_label_png(Path(folder) / f"{image_id}.png", mask)
            return save_versioned(self, image_id, str(png), label_tag, info)

    def remove_label(self, label_id: str, label_tag: str) -> None:
        """Remove the cached label; its versions stay recoverable (`lib.datastore.label_versions`)."""
        remove_versioned(self, label_id, label_tag)

    @staticmethod
    def _read_label(label_filename: str, source: Dataset) -> np.ndarray:
        """A 0/1 mask of the image's shape from a mask file, a SEG file or raw `.bin` bytes."""
        shape = (int(source.Rows), int(source.Columns))
        if label_suffix(label_filename) == ".bin":
            raw = np.fromfile(label_filename, dtype=np.uint8)
            if raw.size != shape[0] * shape[1]:
                raise LabelShapeError(f"raw label has {raw.size} bytes; image {shape[0]}x{shape[1]} needs "
                                      f"{shape[0] * shape[1]}", label_filename)
            return (raw.reshape(shape) != 0).astype(np.uint8)
        if label_suffix(label_filename) in (".dcm", ".dicom"):
            seg = pydicom.dcmread(label_filename)
            if is_segmentation(seg):
                return read_seg_mask(seg, str(source.SOPInstanceUID), shape)
        return read_label_mask(label_filename, shape)


def _content_stamp(record: InstanceRecord) -> str:
    """Sort key: content date and time, then the UID."""
    return f"{record.extra.get('ContentDate', '')}{record.extra.get('ContentTime', ''):0<13}{record.sop_uid}"


def _epoch(record: InstanceRecord) -> float:
    """The SEG's content date/time as seconds since the epoch (0 when absent)."""
    stamp = (record.extra.get("ContentDate", "") + record.extra.get("ContentTime", "").split(".")[0]).ljust(14, "0")
    try:
        return time.mktime(time.strptime(stamp[:14], "%Y%m%d%H%M%S"))
    except ValueError:
        return 0.0


def _url_key(url: str) -> str:
    """A folder name for a PACS URL."""
    from monailabel.utils.others.generic import md5_digest

    return md5_digest(url)
