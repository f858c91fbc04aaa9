"""End to end with a real PACS: Orthanc (DICOMweb, basic auth) + a MONAI Label server on PLAID's DICOMweb datastore.

One Orthanc and one MONAI Label server for the module; the tests run in order: the server starts while
Orthanc is down -> Orthanc comes up with MG, CT and multi-frame instances -> QIDO lists MG only -> bad
images are 4xx -> an inference stores its SEG and SR in Orthanc -> a label map SEG written like OHIF's
becomes a training label -> a `.bin` correction is stored as a SEG -> Orthanc goes down mid-way.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import itk
import numpy as np
import pydicom
import pytest
import requests
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException, MONAILabelUtils
from pacs_helpers import ohif_label_map_seg, write_ct_copy, write_multiframe_mg

from plaid.io.images import read_mammogram
from plaid.io.labels import read_label_mask
from plaid.model.checkpoint import save_checkpoint
from plaid.model.network import build_model
from plaid.pacs import dicomweb
from plaid.pacs.codes import CALCIFICATION
from plaid.pacs.seg import box_label, read_seg_mask
from plaid.pacs.sr import read_sr_regions
from plaid.patches.grid import PatchGrid
from plaid.patches.labels import patch_labels_from_mask
from plaid.patches.tissue import tissue_mask
from plaid.synth.datasets import generate_dataset
from plaid_dev.orthanc import OrthancServer, orthanc_missing, start_orthanc
from plaid_dev.serving import LabelServer, free_port, start_label_server

pytestmark = [pytest.mark.server, pytest.mark.skipif(orthanc_missing() is not None,
                                                     reason=f"Orthanc unavailable: {orthanc_missing()}")]

USER, PASSWORD = "plaid", "s3cret-test"
TRAIN_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pacs")


@pytest.fixture(scope="module")
def files(work: Path) -> dict[str, list[Path]]:
    """Three small MG instances, one CT copy and one two-frame MG instance."""
    rows = generate_dataset(work / "synth", count=3, seed=21, height=672, width=560, formats=("dcm",),
                            calcified_fraction=1.0)
    mg = [work / "synth" / f"{row['image_id']}.dcm" for row in rows]
    return {"mg": mg, "ct": [write_ct_copy(mg[0], work / "ct.dcm")],
            "multiframe": [write_multiframe_mg(mg[1], work / "multiframe.dcm")]}


@pytest.fixture(scope="module")
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(work: Path, port: int) -> LabelServer:
    """MONAI Label on the DICOMweb URL of an Orthanc that is not running yet; a random-weight model."""
    model_dir = work / "model"
    save_checkpoint(model_dir / "calcification.pt", build_model(pretrained=False), threshold=0.5)
    handle = start_label_server(
        f"http://127.0.0.1:{port}/dicom-web",
        conf={"model_dir": str(model_dir), "epochs": "1", "batch_size": "8", "dicomweb_refresh_s": "1"},
        log_path=work / "server.log",
        env={"MONAI_LABEL_DATASTORE_USERNAME": USER, "MONAI_LABEL_DATASTORE_PASSWORD": PASSWORD,
             "MONAI_LABEL_DATASTORE_CACHE_PATH": str(work / "cache")},
    )
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def orthanc(work: Path, port: int, files: dict[str, list[Path]]) -> OrthancServer:
    """Orthanc with basic auth on the port the server was given, loaded with every test file."""
    handle = start_orthanc(port=port, users={USER: PASSWORD}, log_path=work / "orthanc.log")
    for group in files.values():
        for path in group:
            handle.upload(path)
    yield handle
    handle.stop()


def _status_code(error: MONAILabelClientException) -> int:
    return int(str(error.msg).split("Status: ")[1].split(";")[0])


def _sop(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _stats(server: LabelServer) -> dict:
    status, body, _, _ = MONAILabelUtils.http_method("GET", server.url, "/datastore/?output=stats")
    assert status == 200, body
    return json.loads(body)


def _wado(orthanc: OrthancServer, uids: dict[str, str]) -> pydicom.Dataset:
    client = dicomweb.make_client(orthanc.dicomweb_url, USER, PASSWORD)
    return client.retrieve_instance(uids["StudyInstanceUID"], uids["SeriesInstanceUID"], uids["SOPInstanceUID"])


def test_server_starts_while_orthanc_is_down_and_answers_4xx(client: MONAILabelClient, server: LabelServer) -> None:
    assert server.healthy()
    assert _stats(server)["total"] == 0
    with pytest.raises(MONAILabelClientException) as caught:
        client.infer("calcification", "1.2.3.4", {})
    assert 400 <= _status_code(caught.value) < 500
    assert "unreachable" in str(caught.value.msg)
    assert server.healthy()


def test_basic_auth_is_required_by_orthanc(orthanc: OrthancServer) -> None:
    assert requests.get(f"{orthanc.dicomweb_url}/studies", timeout=10).status_code == 401
    assert requests.get(f"{orthanc.dicomweb_url}/studies", auth=(USER, "wrong"), timeout=10).status_code == 401
    answer = requests.get(f"{orthanc.dicomweb_url}/studies", auth=(USER, PASSWORD), timeout=10)
    assert answer.status_code == 200 and len(answer.json()) == 5
    with pytest.raises(dicomweb.PacsError, match="HTTP 401"):
        dicomweb.search_instances(dicomweb.make_client(orthanc.dicomweb_url), {})


def test_qido_lists_mg_instances_only(client: MONAILabelClient, server: LabelServer, orthanc: OrthancServer,
                                      files: dict[str, list[Path]], work: Path) -> None:
    mg = {_sop(p) for p in files["mg"]}  # neither the CT nor the two-frame MG instance
    deadline = time.monotonic() + 30
    while _stats(server)["total"] != len(mg) and time.monotonic() < deadline:
        time.sleep(0.5)  # the list is refreshed every dicomweb_refresh_s
    assert _stats(server)["total"] == len(mg)
    assert set(client.datastore()["objects"]) == mg
    # Listing and startup fetched nothing: an image is downloaded only when a task needs it.
    assert not list((work / "cache").glob("*/*.dcm"))
    sample = client.next_sample("first", {})  # PLAID answers with the id alone: no server path, no download
    chosen = sample["id"]
    assert chosen in mg and "path" not in sample
    assert not list((work / "cache").glob("*/*.dcm"))
    # The client then fetches the image by id (as Slicer does), which downloads that instance alone.
    answer = requests.get(f"{server.url}/datastore/image", params={"image": chosen}, timeout=60)
    assert answer.status_code == 200 and answer.content[128:132] == b"DICM"
    assert [p.stem for p in (work / "cache").glob("*/*.dcm")] == [chosen]


def test_non_mg_and_multiframe_instances_are_4xx(client: MONAILabelClient, server: LabelServer, orthanc: OrthancServer,
                                                 files: dict[str, list[Path]]) -> None:
    ct = pydicom.dcmread(files["ct"][0], stop_before_pixels=True)
    for image_id in (str(ct.SOPInstanceUID), str(ct.SeriesInstanceUID)):
        with pytest.raises(MONAILabelClientException) as caught:
            client.infer("calcification", image_id, {})
        assert _status_code(caught.value) == 422 and "CT" in str(caught.value.msg)
    with pytest.raises(MONAILabelClientException) as caught:
        client.infer("calcification", _sop(files["multiframe"][0]), {})
    assert _status_code(caught.value) == 422 and "2 frames" in str(caught.value.msg)
    with pytest.raises(MONAILabelClientException) as caught:
        client.infer("calcification", _sop(files["mg"][0]), {"dicom_outputs": "seg,pdf"})
    assert _status_code(caught.value) == 422 and "pdf" in str(caught.value.msg)
    assert server.healthy()


def test_inference_stores_seg_and_sr_matching_the_mask(client: MONAILabelClient, orthanc: OrthancServer,
                                                       files: dict[str, list[Path]]) -> None:
    path = files["mg"][0]
    source = pydicom.dcmread(path)
    label_file, result = client.infer("calcification", _sop(path), {"threshold": 0.0, "dicom_outputs": "seg,sr"})
    mask = np.squeeze(itk.array_from_image(itk.imread(label_file)))
    assert mask.shape == (source.Rows, source.Columns) and mask.sum() > 0  # threshold 0: every tissue patch
    assert result["patches_positive"] == len(result["positives"]) > 0
    info = client.datastore()["objects"][_sop(path)]["image"]["info"]  # the header kept with the cached .dcm
    assert info["SeriesInstanceUID"] == source.SeriesInstanceUID and info["StudyInstanceUID"] == source.StudyInstanceUID
    assert info["laterality"] == source.ImageLaterality and info["view"] == source.ViewPosition
    assert info["pixel_spacing_mm"] == [float(v) for v in source.PixelSpacing] and info["age_years"] > 0

    seg = _wado(orthanc, result["dicom_outputs"]["seg"])
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == source.StudyInstanceUID
    # one segment per positive patch, named with its probability, clipped to the breast (not the background)
    tissue = tissue_mask(read_mammogram(path).pixels)
    assert ((mask != 0) & ~tissue).any()  # some positive patch reaches over the background
    assert np.array_equal(read_seg_mask(seg, str(source.SOPInstanceUID), mask.shape), (mask != 0) & tissue)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == [box_label(p["patch"], p["probability"])
                                                             for p in result["positives"]]
    for segment in seg.SegmentSequence:
        assert segment.SegmentAlgorithmType == "AUTOMATIC"
        assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == CALCIFICATION.value
    shared = seg.SharedFunctionalGroupsSequence[0]
    assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == [float(v) for v in source.PixelSpacing]
    assert [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert seg.FrameOfReferenceUID and "PatientBirthDate" in seg and "AccessionNumber" in seg

    sr = _wado(orthanc, result["dicom_outputs"]["sr"])
    regions = read_sr_regions(sr)
    assert sorted(r.box for r in regions) == sorted(tuple(p["box"]) for p in result["positives"])
    assert {r.graphic_type for r in regions} == {"POLYLINE"}
    assert {r.sop_instance_uid for r in regions} == {str(source.SOPInstanceUID)}
    by_box = {tuple(p["box"]): p["probability"] for p in result["positives"]}
    assert all(abs(r.probability - by_box[r.box]) < 1e-5 for r in regions)
    for top, left, bottom, right in (r.box for r in regions):
        assert mask[top:bottom, left:right].all()

    # PLAID's own SEG is a prediction, never a label; the series id of a one-image series works too.
    assert _sop(path) not in client.datastore()["objects"] or not client.datastore()["objects"][_sop(path)]["labels"]
    _, again = client.infer("calcification", str(source.SeriesInstanceUID), {"threshold": 0.0})
    assert again["patches_positive"] == result["patches_positive"]


def test_ohif_label_map_seg_becomes_a_training_label(client: MONAILabelClient, server: LabelServer,
                                                     orthanc: OrthancServer, files: dict[str, list[Path]],
                                                     work: Path) -> None:
    path = files["mg"][1]
    source = pydicom.dcmread(path)
    edit = np.zeros((source.Rows, source.Columns), dtype=np.uint8)
    edit[440:460, 290:310] = 1  # a painted speck across a row of the patch grid
    seg = ohif_label_map_seg(source, edit)
    dicomweb.store(dicomweb.make_client(orthanc.dicomweb_url, USER, PASSWORD), [seg])
    deadline = time.monotonic() + 30
    while _stats(server)["completed"] < 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _stats(server)["completed"] == 1
    assert client.next_sample("first", {})["id"] != _sop(path)

    client.train_start("calcification", {"epochs": 1, "batch_size": 8})
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    while client.train_status().get("status") not in ("DONE", "ERROR") and time.monotonic() < deadline:
        time.sleep(2)
    assert client.train_status()["status"] == "DONE", client.train_status()
    runs = sorted((server.model_dir / "runs").iterdir())
    trained_on = json.loads((runs[-1] / "patch_labels.json").read_text())
    expected = np.flatnonzero(patch_labels_from_mask(edit, PatchGrid(int(source.Rows), int(source.Columns))))
    assert list(trained_on) == [_sop(path)]
    assert trained_on[_sop(path)]["positive_patches"] == expected.tolist() and len(expected) == 2
    cached = next((work / "cache").glob(f"*/labels/final/{_sop(path)}.png"))
    assert np.array_equal(read_label_mask(cached, edit.shape), edit)


def test_bin_correction_is_stored_as_a_manual_seg(client: MONAILabelClient, orthanc: OrthancServer,
                                                  files: dict[str, list[Path]], tmp_path: Path) -> None:
    path = files["mg"][2]
    source = pydicom.dcmread(path)
    edit = np.zeros((source.Rows, source.Columns), dtype=np.uint8)
    edit[100:130, 200:260] = 1
    raw = tmp_path / "label.bin"
    edit.tofile(raw)
    short = tmp_path / "short.bin"
    edit[:10].tofile(short)
    pacs = dicomweb.make_client(orthanc.dicomweb_url, USER, PASSWORD)
    before = {r.sop_uid for r in dicomweb.search_instances(pacs, {"Modality": "SEG"})}

    with pytest.raises(MONAILabelClientException) as caught:
        client.save_label(_sop(path), str(short), tag="final")
    assert _status_code(caught.value) == 422 and "bytes" in str(caught.value.msg)
    assert {r.sop_uid for r in dicomweb.search_instances(pacs, {"Modality": "SEG"})} == before

    client.save_label(_sop(path), str(raw), tag="final")
    new = [r for r in dicomweb.search_instances(pacs, {"Modality": "SEG"}) if r.sop_uid not in before]
    assert len(new) == 1
    stored = dicomweb.retrieve(pacs, new[0])
    assert stored.SegmentSequence[0].SegmentAlgorithmType == "MANUAL"
    assert np.array_equal(read_seg_mask(stored, _sop(path), edit.shape), edit)


def _tree(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` except logs and MONAI Label's lock files."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix != ".log" and p.name != ".lock"}


def test_hostile_requests_are_4xx_and_write_nothing(server: LabelServer, orthanc: OrthancServer,
                                                    files: dict[str, list[Path]], work: Path, tmp_path: Path) -> None:
    """Issue 21 on the DICOMweb datastore: tags, ids, info and infer options are checked before anything is
    written or asked of the PACS (the tag `../../../x` used to write `x/<SOPInstanceUID>.png` outside the cache)."""
    image_id = _sop(files["mg"][2])  # cached by the test before
    source = pydicom.dcmread(files["mg"][2], stop_before_pixels=True)
    raw = tmp_path / "label.bin"
    np.ones((source.Rows, source.Columns), dtype=np.uint8).tofile(raw)
    cached = next((work / "cache").glob(f"*/{image_id}.dcm"))
    before = _tree(work)
    url = server.url
    cases: list[tuple[str, int, str, str, dict]] = []
    for tag in ("../../../x", "/tmp/x", "final/../../x", "..", "a\\b"):
        cases.append(("tag '", 422, "PUT", "/datastore/label", {"params": {"image": image_id, "tag": tag}}))
    for hostile_id in ("*", "../../x", str(cached), "1.2.3." + "4" * 80):
        cases.append(("not in the datastore", 404, "PUT", "/datastore/label",
                      {"params": {"image": hostile_id, "tag": "final"}}))
        cases.append(("not in the datastore", 404, "POST", "/infer/calcification", {"params": {"image": hostile_id}}))
    cases += [
        ("PACS", 422, "PUT", "/datastore/image", {"params": {"image": "1.2.3"},
                                                 "files": {"file": ("x.dcm", files["mg"][0].read_bytes())}}),
        ("info", 422, "PUT", "/datastore/image/info", {"params": {"image": image_id}, "data": {"info": "[1]"}}),
        ("plaid_al_values", 422, "PUT", "/datastore/image/info",
         {"params": {"image": image_id}, "data": {"info": '{"plaid_al_values": {"film_score": NaN}}'}}),
        ("ts", 422, "PUT", "/datastore/label/info",
         {"params": {"label": image_id, "tag": "final"}, "data": {"info": '{"ts": "later"}'}}),
        ("params", 422, "POST", "/infer/calcification", {"params": {"image": image_id}, "data": {"params": "[1]"}}),
        ("dicom_seg", 422, "POST", "/infer/calcification", {"params": {"image": image_id, "output": "dicom_seg"}}),
        ("dicom_outputs", 422, "POST", "/infer/calcification",
         {"params": {"image": image_id}, "data": {"params": '{"dicom_outputs": [{"seg": 1}]}'}}),
        ("label_tag", 422, "POST", "/infer/calcification",
         {"params": {"image": image_id}, "data": {"params": '{"save_label": true, "label_tag": "../../x"}'}}),
    ]
    for expected, status, method, path, kwargs in cases:
        if path == "/datastore/label":
            kwargs = {**kwargs, "files": {"label": ("label.bin", raw.read_bytes())}}
        answer = requests.request(method, f"{url}{path}", timeout=60, **kwargs)
        assert answer.status_code == status and expected in answer.text, (path, kwargs.get("params"), answer.text)
    assert server.healthy()
    assert _tree(work) == before
    assert not (Path("/tmp/x") / f"{image_id}.png").exists()
    assert "Traceback" not in server.log_path.read_text(errors="replace")


def test_orthanc_going_down_during_inference_is_a_clear_4xx(client: MONAILabelClient, server: LabelServer,
                                                            orthanc: OrthancServer,
                                                            files: dict[str, list[Path]]) -> None:
    image_id = _sop(files["mg"][0])  # cached by an earlier inference
    orthanc.stop()
    with pytest.raises(MONAILabelClientException) as caught:
        client.infer("calcification", image_id, {"threshold": 0.0, "dicom_outputs": "seg"})
    assert 400 <= _status_code(caught.value) < 500 and "unreachable" in str(caught.value.msg)
    assert server.healthy()
    _, result = client.infer("calcification", image_id, {"threshold": 0.0})  # the cached image still works
    assert result["patches_positive"] > 0


def test_info_describes_the_served_model(client: MONAILabelClient, orthanc: OrthancServer) -> None:
    """The app's and the infer task's descriptions come from the checkpoint (random resnet50, threshold 0.5)."""
    info = client.info()
    served = "resnet50 on full-resolution 224x224 patches, operating point 0.50"
    assert info["description"].endswith(served) and info["models"]["calcification"]["description"].endswith(served)
