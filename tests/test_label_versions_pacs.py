"""Issue 29 on the DICOMweb datastore: two corrections for one film against a real Orthanc with authentication
keep both versions with their users and times, both SEGs stay in the PACS, and training reads the newest."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from plaid.io.label_history import LabelHistory
from plaid.io.labels import read_label_mask
from plaid.pacs import dicomweb
from plaid.pacs.orthanc import OrthancServer, orthanc_missing, start_orthanc
from plaid.pacs.seg import read_seg_mask
from plaid.synth.generator import generate_dataset

APP_DIR = Path(__file__).resolve().parents[1] / "apps" / "plaid"
if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))

from lib.dicomweb_datastore import PlaidDICOMwebDatastore  # noqa: E402

pytestmark = [pytest.mark.server, pytest.mark.skipif(orthanc_missing() is not None,
                                                     reason=f"Orthanc unavailable: {orthanc_missing()}")]
USER, PASSWORD = "plaid", "versions-test-pw"


@pytest.fixture(scope="module")
def mammogram(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("versions-pacs")
    rows = generate_dataset(folder / "synth", count=2, seed=3, height=448, width=448, formats=("dcm",))
    return folder / "synth" / f"{rows[0]['image_id']}.dcm"


@pytest.fixture(scope="module")
def orthanc(mammogram: Path) -> Iterator[OrthancServer]:
    handle = start_orthanc(users={USER: PASSWORD})
    handle.upload(mammogram)
    yield handle
    handle.stop()


def test_two_corrections_keep_both_versions_and_both_segs(orthanc: OrthancServer, mammogram: Path,
                                                          tmp_path: Path) -> None:
    pacs = dicomweb.make_client(orthanc.dicomweb_url, USER, PASSWORD)
    store = PlaidDICOMwebDatastore(pacs, cache_path=str(tmp_path / "cache"), refresh_s=0)
    source = pydicom.dcmread(mammogram)
    image_id, shape = str(source.SOPInstanceUID), (int(source.Rows), int(source.Columns))
    masks = {}
    for user, corner in (("ann", 10), ("bob", 100)):
        mask = np.zeros(shape, dtype=np.uint8)
        mask[corner:corner + 20, corner:corner + 20] = 1
        Image.fromarray(mask * 255).save(tmp_path / f"{user}.png")
        store.save_label(image_id, str(tmp_path / f"{user}.png"), "final", {"user": user})
        masks[user] = mask

    versions = LabelHistory(store._datastore_path).versions("final", image_id)
    assert [(v.number, v.user, v.event) for v in versions] == [(1, "ann", "saved"), (2, "bob", "saved")]
    assert versions[0].saved_at <= versions[1].saved_at
    assert np.array_equal(read_label_mask(versions[0].file), masks["ann"])  # the earlier correction is kept
    segs = dicomweb.search_instances(pacs, {"Modality": "SEG"})
    stored = [read_seg_mask(dicomweb.retrieve(pacs, record), image_id, shape) for record in segs]
    assert len(stored) == 2 and any(np.array_equal(m, masks["ann"]) for m in stored)  # both SEGs in the PACS
    (item,) = [i for i in store.datalist() if Path(i["image"]).stem == image_id]
    assert np.array_equal(read_label_mask(item["label"]), masks["bob"])  # training reads the newest
    assert len(LabelHistory(store._datastore_path).versions("final", image_id)) == 2  # its own SEG is not re-read

    store.remove_label(image_id, "final")
    kept = LabelHistory(store._datastore_path).versions("final", image_id)
    assert [v.event for v in kept] == ["saved", "saved", "deleted"] and all(v.file.is_file() for v in kept[:2])
