"""The infer task's optional DICOM results: a SEG and/or a TID 1500 SR stored back to the PACS by STOW-RS.

Requested with ``dicom_outputs`` ("seg", "sr", "seg,sr" or a list) on an image served by the DICOMweb
datastore; the result JSON then names the stored instances.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pydicom

from plaid.errors import PlaidInputError
from plaid.pacs.seg import SeriesInfo, patch_segments, write_seg
from plaid.pacs.sr import write_sr

logger = logging.getLogger(__name__)

DICOM_OUTPUTS = ("seg", "sr")
SEG_SERIES = SeriesInfo("PLAID calcification (AI)", number=901)
SR_SERIES = SeriesInfo("PLAID calcification report (AI)", number=903)


def parse_dicom_outputs(value: Any) -> list[str]:
    """The requested kinds from ``dicom_outputs`` ('' / None: none); unknown kinds are a `PlaidInputError`."""
    if value in (None, "", [], False):
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    kinds = [str(item).strip().lower() for item in items if str(item).strip()]
    unknown = sorted(set(kinds) - set(DICOM_OUTPUTS))
    if unknown:
        raise PlaidInputError(f"dicom_outputs must be among {list(DICOM_OUTPUTS)}, got "
                              f"{[kind[:32] for kind in unknown[:5]]}")
    return [kind for kind in DICOM_OUTPUTS if kind in kinds]


def require_result_store():
    """The running app's datastore when it can store DICOM results (the PLAID DICOMweb datastore), else
    `PlaidInputError` naming dicom_outputs."""
    from monailabel.interfaces.utils.app import app_instance

    store = app_instance().datastore()
    if not hasattr(store, "store_results"):
        raise PlaidInputError("dicom_outputs needs the DICOMweb datastore (start the server with --studies "
                              "http://.../dicom-web)")
    return store


def publish_dicom_results(image_path: str, mask: np.ndarray, positives: list[dict[str, Any]], kinds: list[str],
                          store=None, tissue: np.ndarray | None = None) -> dict[str, dict[str, str]]:
    """Build the requested SEG / SR for the MG at ``image_path`` and store them; returns their UIDs by kind.

    The SEG holds one segment per positive patch (`plaid.pacs.seg.patch_segments`), clipped to ``tissue``
    (the breast)."""
    store = store or require_result_store()
    try:
        source = pydicom.dcmread(image_path, stop_before_pixels=True)
    except Exception as exc:
        raise PlaidInputError(f"dicom_outputs need a DICOM image ({type(exc).__name__}: {exc})", image_path) from exc
    datasets = {}
    if "seg" in kinds:
        segments, labels = patch_segments(mask, positives, tissue)
        datasets["seg"] = write_seg(source, segments, SEG_SERIES, labels=labels)
    if "sr" in kinds:
        datasets["sr"] = write_sr(source, positives, SR_SERIES)
    store.store_results(list(datasets.values()))
    stored = {kind: {"StudyInstanceUID": str(ds.StudyInstanceUID), "SeriesInstanceUID": str(ds.SeriesInstanceUID),
                     "SOPInstanceUID": str(ds.SOPInstanceUID)} for kind, ds in datasets.items()}
    logger.info("stored %s for %s", sorted(stored), source.get("SOPInstanceUID"))
    return stored
