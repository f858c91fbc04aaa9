"""Issue 29 on the DICOMweb datastore: two corrections for one film from two logins, through PLAID's server with
MONAI Label's login on, against a real Orthanc with authentication: both versions come back with their users
and times, both SEGs stay in the PACS, training reads the newest, and a deletion keeps every version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from oidc_provider import OidcProvider
from PIL import Image

from plaid.io.labels import read_label_mask
from plaid.pacs import dicomweb
from plaid.pacs.seg import read_seg_mask
from plaid.synth.datasets import generate_dataset
from plaid_dev.orthanc import OrthancServer, orthanc_missing, start_orthanc
from plaid_dev.serving import REPO_ROOT, LabelServer, start_label_server

pytestmark = [pytest.mark.server, pytest.mark.skipif(orthanc_missing() is not None,
                                                     reason=f"Orthanc unavailable: {orthanc_missing()}")]
USER, PASSWORD = "plaid", "versions-test-pw"
TIMEOUT = 120


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("versions-pacs")


@pytest.fixture(scope="module")
def mammogram(work: Path) -> Path:
    rows = generate_dataset(work / "synth", count=2, seed=3, height=448, width=448, formats=("dcm",))
    return work / "synth" / f"{rows[0]['image_id']}.dcm"


@pytest.fixture(scope="module")
def orthanc(mammogram: Path) -> Iterator[OrthancServer]:
    handle = start_orthanc(users={USER: PASSWORD})
    handle.upload(mammogram)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def server(work: Path, provider: OidcProvider, orthanc: OrthancServer) -> Iterator[LabelServer]:
    credentials = work / "pacs-credentials"
    credentials.write_text(f"{USER}:{PASSWORD}\n")
    credentials.chmod(0o600)
    env = {"MONAI_LABEL_AUTH_ENABLE": "true", "MONAI_LABEL_AUTH_REALM_URI": provider.realm_uri,
           "PLAID_PACS_CREDENTIALS_FILE": str(credentials), "MONAI_LABEL_DATASTORE_CACHE_PATH": str(work / "cache")}
    conf = {"model_dir": str(work / "model"), "dicomweb_refresh_s": "1"}
    handle = start_label_server(orthanc.dicomweb_url, conf=conf, log_path=work / "server.log", env=env,
                                token=provider.token("uma"))
    yield handle
    handle.stop()


def _datastore_root(work: Path) -> Path:
    """The DICOMweb datastore's cache folder (under the cache path, one folder per PACS URL)."""
    (root,) = [path.parent for path in (work / "cache").glob("*/.plaid-label-history")]
    return root


def _versions(work: Path, image_id: str) -> list[dict]:
    """`plaid labels versions --json` on the datastore's folder."""
    command = ["labels", "versions", str(_datastore_root(work)), image_id, "--json"]
    listed = subprocess.run([sys.executable, "-m", "plaid.cli", *command],
                            capture_output=True, text=True, timeout=TIMEOUT, check=False,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "lib")})
    return json.loads(listed.stdout)


def test_two_corrections_from_two_logins_keep_both_versions_and_both_segs(
        work: Path, provider: OidcProvider, orthanc: OrthancServer, server: LabelServer, mammogram: Path,
        tmp_path: Path) -> None:
    source = pydicom.dcmread(mammogram)
    image_id, shape = str(source.SOPInstanceUID), (int(source.Rows), int(source.Columns))
    masks = {}
    for user, corner in (("ann", 10), ("bob", 100)):
        mask = np.zeros(shape, dtype=np.uint8)
        mask[corner:corner + 20, corner:corner + 20] = 1
        Image.fromarray(mask * 255).save(tmp_path / f"{user}.png")
        with (tmp_path / f"{user}.png").open("rb") as upload:
            answer = requests.put(f"{server.url}/datastore/label", params={"image": image_id, "tag": "final"},
                                  files={"label": ("mask.png", upload)}, timeout=TIMEOUT,
                                  headers={"Authorization": f"Bearer {provider.token(user)}"})
        assert answer.status_code == 200, answer.text[:300]
        masks[user] = mask

    versions = _versions(work, image_id)
    assert [(v["version"], v["user"], v["event"]) for v in versions] == [(1, "ann", "saved"), (2, "bob", "saved")]
    assert versions[0]["saved_at"] <= versions[1]["saved_at"]
    kept = _datastore_root(work) / ".plaid-label-history" / "final" / image_id / versions[0]["file"]
    assert np.array_equal(read_label_mask(kept), masks["ann"])  # the earlier correction is kept
    pacs = dicomweb.make_client(orthanc.dicomweb_url, USER, PASSWORD)
    segs = dicomweb.search_instances(pacs, {"Modality": "SEG"})
    stored = [read_seg_mask(dicomweb.retrieve(pacs, record), image_id, shape) for record in segs]
    assert len(stored) == 2 and any(np.array_equal(m, masks["ann"]) for m in stored)  # both SEGs in the PACS
    datalist = requests.get(f"{server.url}/datastore/", params={"output": "train"}, timeout=TIMEOUT,
                            headers={"Authorization": f"Bearer {provider.token('ada')}"}).json()
    (item,) = [i for i in datalist if Path(i["image"]).stem == image_id]
    assert np.array_equal(read_label_mask(item["label"]), masks["bob"])  # training reads the newest
    assert len(_versions(work, image_id)) == 2  # its own SEG, listed again, is not a new version

    removed = requests.delete(f"{server.url}/datastore/label", params={"id": image_id, "tag": "final"},
                              timeout=TIMEOUT, headers={"Authorization": f"Bearer {provider.token('ada')}"})
    assert removed.status_code == 200, removed.text[:300]
    versions = _versions(work, image_id)
    assert [(v["user"], v["event"]) for v in versions] == [("ann", "saved"), ("bob", "saved"), ("ada", "deleted")]
