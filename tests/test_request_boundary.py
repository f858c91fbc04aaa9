"""Issue 21 on a local datastore: every client value typed and bounded at the boundary, stored values read
defensively, inference only on datastore images and same-request uploads, and results a same-host client keeps.

One real `monailabel start_server` on 127.0.0.1 for the module, with a random-weight model, its temporary
folder (TMPDIR) inside the test's folder so files written outside the studies folder can be seen, and a
datastore_v2.json planted before startup with bad stored values (as an older server or a hand edit leaves).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import itk
import numpy as np
import pytest
import requests
from monailabel.client import MONAILabelClient

from plaid.io.images import read_mammogram
from plaid.model.checkpoint import save_checkpoint
from plaid.model.network import build_model
from plaid.synth.datasets import generate_dataset
from plaid_dev.serving import LabelServer, start_label_server

pytestmark = pytest.mark.server

TIMEOUT = 60
INFER_SUMMARY = "patches positive, image score"  # the infer task's log line once the model has run


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("boundary")


@pytest.fixture(scope="module")
def studies(work: Path) -> Path:
    """Three unlabelled 448x448 mammograms; datastore_v2.json holds bad stored values for two of them."""
    root = work / "studies"
    generate_dataset(root, count=3, seed=9, height=448, width=448, calcified_fraction=1.0)
    shutil.rmtree(root / "labels")
    images = sorted(p for p in root.iterdir() if p.suffix in (".png", ".dcm"))
    planted = {
        images[0].stem: {"plaid_al_values": {"film_score": "high"}, "strategy": {"random": {"ts": "yesterday"}},
                         "reviewer_note": float("nan")},
        images[1].stem: {"plaid_al_values": {"film_score": 0.25}, "strategy": ["random"]},
    }
    objects = {path.stem: {"image": {"ext": path.suffix, "info": planted.get(path.stem, {})}, "labels": {}}
               for path in images}
    document = {"name": "boundary", "description": "planted", "images_dir": "", "labels_dir": "labels",
                "objects": objects}
    (root / "datastore_v2.json").write_text(json.dumps(document))  # json writes NaN, as MONAI Label's reader takes
    return root


@pytest.fixture(scope="module")
def server_tmp(work: Path) -> Path:
    folder = work / "server-tmp"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def server(work: Path, studies: Path, server_tmp: Path) -> LabelServer:
    model_dir = work / "model"
    save_checkpoint(model_dir / "calcification.pt", build_model(pretrained=False), threshold=0.5)
    handle = start_label_server(studies, conf={"model_dir": str(model_dir), "epochs": "1"},
                                log_path=work / "server.log",
                                env={"MONAI_LABEL_AUTO_UPDATE_SCORING": "false", "TMPDIR": str(server_tmp)})
    yield handle
    handle.stop()


def _ids(studies: Path) -> list[str]:
    return sorted(p.stem for p in studies.iterdir() if p.suffix in (".png", ".dcm"))


def _tree(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (MONAI Label's lock file aside)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def _refused(response: requests.Response, field: str) -> None:
    """A 4xx whose answer names ``field`` and carries no traceback."""
    assert 400 <= response.status_code < 500, (field, response.status_code, response.text[:300])
    assert field in response.text, (field, response.text[:300])
    assert "Traceback" not in response.text


def test_bad_stored_values_are_skipped_with_a_warning(server: LabelServer, studies: Path) -> None:
    ids = _ids(studies)
    for _ in range(3):
        answer = requests.post(f"{server.url}/activelearning/random", json={}, timeout=TIMEOUT)
        assert answer.status_code == 200 and answer.json()["id"] in ids, answer.text[:300]
    answer = requests.post(f"{server.url}/activelearning/film_score", json={}, timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["id"] == ids[1] and answer.json()["value"] == 0.25  # the only readable value
    everything = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=TIMEOUT)
    assert everything.status_code == 200, everything.text[:300]
    first = everything.json()["objects"][ids[0]]["image"]["info"]
    assert "plaid_al_values" not in first and "reviewer_note" not in first
    assert isinstance(first["strategy"]["random"]["ts"], int)  # next-sample wrote a good value back
    log = server.log_path.read_text(errors="replace")
    assert f"image {ids[0]}: stored plaid_al_values skipped" in log
    assert f"image {ids[1]}: stored strategy skipped" in log


def _hostile_requests(url: str, image_id: str) -> list[tuple[str, requests.Request]]:
    """(field the answer must name, request) for every endpoint MONAI Label exposes for PLAID."""
    infer = f"{url}/infer/calcification"
    nested: object = 1
    for _ in range(20):
        nested = [nested]
    json_headers = {"Content-Type": "application/json"}
    cases: list[tuple[str, requests.Request]] = []

    def form_infer(field: str, params: str, **query: str) -> None:
        cases.append((field, requests.Request("POST", infer, params={"image": image_id, **query},
                                              data={"params": params})))

    for params in ("[1, 2]", '"calcification"', "3", "null"):
        form_infer("params", params)
    form_infer("threshold", '{"threshold": NaN}')
    form_infer("threshold", '{"threshold": Infinity}')
    form_infer("threshold", '{"threshold": true}')
    form_infer("threshold", '{"threshold": "0.5x"}')
    form_infer("threshold", json.dumps({"threshold": 10**30}))
    form_infer("label_output", '{"label_output": ["mask"]}')
    form_infer("result_extension", json.dumps({"result_extension": "\u0000.nrrd"}))
    form_infer("dicom_outputs", '{"dicom_outputs": "seg"}')  # local datastore: refused before inference
    form_infer("dicom_seg", "{}", output="dicom_seg")
    form_infer("output", "{}", output="xml")
    form_infer("save_label", '{"save_label": "maybe"}')
    form_infer("label_tag", '{"save_label": true, "label_tag": "../../x"}')
    form_infer("label_tag", '{"save_label": true, "label_tag": "final"}')
    form_infer("timeout", '{"timeout": -1}')
    form_infer("timeout", '{"timeout": "soon"}')
    form_infer("timeout", '{"timeout": 0}')
    form_infer("device", '{"device": {"cuda": 1}}')
    form_infer("client_id", json.dumps({"client_id": "c" * 1000}))
    form_infer("nested", json.dumps({"extra": nested}))
    form_infer("params", json.dumps({"note": "x" * 300_000}))
    form_infer("params.huge", '{"huge": 1e999}')
    form_infer("params.note", '{"note": "\\ud800"}')
    form_infer("params", "{oops")
    cases.append(("session_id", requests.Request("POST", infer, params={"image": image_id, "session_id": "abc"})))
    cases.append(("label", requests.Request("POST", infer, params={"image": image_id},
                                            files={"label": ("l.nrrd", b"0")})))
    cases.append(("file", requests.Request("POST", infer, files={"file": ("scan.exe", b"MZ")})))
    cases.append(("params", requests.Request("POST", infer, params={"image": image_id},
                                             data=[("params", "[1]"), ("params", '"x"')])))  # duplicated form field

    def post_json(field: str, path: str, body: str, **query: str) -> None:
        cases.append((field, requests.Request("POST", f"{url}{path}", params=query, data=body,
                                              headers=json_headers)))

    post_json("model", "/train/calcification", '{"model": "other"}')
    post_json("epochs", "/train/calcification", '{"epochs": NaN}')
    post_json("epochs", "/train/calcification", '{"epochs": [3]}')
    post_json("learning_rate", "/train/calcification", '{"learning_rate": true}')
    post_json("device", "/train/calcification", '{"device": ["cpu"]}')
    post_json("name", "/train/calcification", json.dumps({"name": "run\u0000"}))
    post_json("params", "/train/calcification", json.dumps({"comment": "y" * 20_000}))
    post_json("calcification", "/train/", '{"calcification": [1]}')
    post_json("run_sync", "/train/calcification", "{}", run_sync="maybe")
    post_json("force", "/scoring/active_learning", '{"force": "maybe"}')
    post_json("method", "/scoring/active_learning", '{"method": "other"}')
    post_json("active_learning", "/scoring/", '{"active_learning": "all"}')
    batch = "/batch/infer/calcification"
    post_json("label_tag", batch, '{"multi_gpu": false, "label_tag": "../x"}')
    post_json("label_tag", batch, '{"multi_gpu": false, "label_tag": "final"}')
    post_json("images", batch, '{"multi_gpu": false, "images": ["a", "b"]}')
    post_json("max_workers", batch, '{"multi_gpu": false, "max_workers": -1}')
    post_json("threshold", batch, '{"multi_gpu": false, "threshold": "nan"}')
    post_json("gpus", batch, '{"multi_gpu": false, "gpus": [0]}')
    post_json("images", batch, '{"multi_gpu": false}', images="some")
    post_json("strategy", "/activelearning/random", '{"strategy": "first"}')
    post_json("client_id", "/activelearning/random", '{"client_id": {"a": 1}}')
    post_json("labels", "/activelearning/random", '{"labels": "calcification"}')
    post_json("label_tag", "/activelearning/random", '{"label_tag": "../x"}')
    post_json("params.a", "/activelearning/first", '{"a": NaN}')
    post_json("params.labels", "/activelearning/film_score", '{"labels": [1]}')

    def put_form(field: str, path: str, form: dict[str, str], **query: str) -> None:
        cases.append((field, requests.Request("PUT", f"{url}{path}", params=query, data=form)))

    for info, field in (("[1]", "info"), ('"text"', "info"),
                        ('{"plaid_al_values": {"film_score": "high"}}', "plaid_al_values.film_score"),
                        ('{"plaid_al_values": {"entropy": 1}}', "plaid_al_values"), ('{"a": NaN}', "info.a"),
                        ('{"strategy": {"random": {"ts": "x"}}}', "strategy.random.ts"),
                        ('{"strategy": [1]}', "strategy"), ('{"ts": 1e300}', "ts")):
        put_form(field, "/datastore/image/info", {"info": info}, image=image_id)
    for info, field in (("[1]", "info"), ('{"ts": "yesterday"}', "ts"),
                        ('{"seg_sop_instance_uid": "../x"}', "seg_sop_instance_uid"),
                        ('{"params": [1, 2]}', "info.params"), ('{"params": "text"}', "info.params")):
        put_form(field, "/datastore/label/info", {"info": info}, label=image_id, tag="final")
    put_form("info", "/datastore/updatelabelinfo", {"params": "[1]"}, label=image_id, tag="final")  # the old route
    png = b"\x89PNG\r\n\x1a\n"
    cases.append(("file name", requests.Request("PUT", f"{url}/datastore/image", params={"image": "fresh"},
                                                files={"file": ("a" * 300 + ".png", png)})))
    cases.append(("params", requests.Request("PUT", f"{url}/datastore/image", params={"image": "fresh"},
                                             files={"file": ("fresh.png", png)}, data={"params": "[1]"})))
    cases.append(("image", requests.Request("PUT", f"{url}/datastore/image", params={"image": "../fresh"},
                                            files={"file": ("fresh.png", png)})))
    cases.append(("tag", requests.Request("PUT", f"{url}/datastore/label", params={"image": image_id, "tag": "../x"},
                                          files={"label": ("l.nrrd", b"0")})))
    cases.append(("ts", requests.Request("PUT", f"{url}/datastore/label", params={"image": image_id},
                                         files={"label": ("l.nrrd", b"0")}, data={"params": '{"ts": "x"}'})))
    cases.append(("file", requests.Request("PUT", f"{url}/datastore/image", params={"image": "fresh"})))  # empty
    cases.append(("label", requests.Request("PUT", f"{url}/datastore/label", params={"image": image_id})))
    cases.append(("limit_cases", requests.Request("GET", f"{url}/datastore/dataset", params={"limit_cases": -1})))
    cases.append(("final label", requests.Request("GET", f"{url}/datastore/dataset")))
    cases.append(("Session", requests.Request("PUT", f"{url}/session/", files={"files": ("a.png", png)})))
    cases.append(("", requests.Request("HEAD", f"{url}/datastore/image",
                                       params={"image": image_id, "check_sum": "\u00f1:abc"})))  # HEAD: no body
    cases.append(("WSI", requests.Request("POST", f"{url}/infer/wsi_v2/calcification", params={"image": image_id},
                                          files={"file": ("slide.png", png)})))
    cases.append(("level", requests.Request("POST", f"{url}/infer/wsi_v2/calcification", params={"image": image_id},
                                            data={"wsi": '{"level": "top"}'})))
    cases.append(("checkpoint", requests.Request("PUT", f"{url}/model/calcification",
                                                 files={"file": ("model.pt", b"PK\x03\x04 not a model")})))
    for method, path in (("PUT", "/model/other"), ("GET", "/model/other"), ("GET", "/model/info/other"),
                         ("DELETE", "/model/other")):
        files = {"file": ("model.pt", b"0")} if method == "PUT" else None
        cases.append(("unknown model 'other'", requests.Request(method, f"{url}{path}", files=files)))
    if shutil.which("nvidia-smi") is None:
        cases.append(("nvidia-smi", requests.Request("GET", f"{url}/logs/gpu")))
        post_json("multi_gpu", batch, '{"threshold": 0.5}')  # MONAI Label's default multi_gpu needs a GPU
    return cases


def test_hostile_values_get_4xx_naming_the_field(server: LabelServer, studies: Path, server_tmp: Path) -> None:
    image_id = _ids(studies)[2]
    studies_before, tmp_before, model_before = _tree(studies), _tree(server_tmp), _tree(server.model_dir)
    inferences_before = server.log_path.read_text(errors="replace").count(INFER_SUMMARY)
    with requests.Session() as session:
        for field, request in _hostile_requests(server.url, image_id):
            _refused(session.send(request.prepare(), timeout=TIMEOUT), field)
    assert server.healthy()
    log = server.log_path.read_text(errors="replace")
    assert log.count(INFER_SUMMARY) == inferences_before  # every bad infer option was refused before the model ran
    assert "Traceback" not in log
    time.sleep(1)  # background clean-ups run after the answers
    assert _tree(studies) == studies_before
    assert _tree(server_tmp) == tmp_before
    assert _tree(server.model_dir) == model_before  # a bad upload never replaces the published model


def test_inference_reads_datastore_images_and_same_request_uploads_only(server: LabelServer, studies: Path,
                                                                      server_tmp: Path) -> None:
    image_id = _ids(studies)[2]
    source = next(studies.glob(f"{image_id}.*"))
    stray = server_tmp / f"tmp{os.getpid()}{source.suffix}"  # a file like MONAI Label's own uploads
    shutil.copyfile(source, stray)
    try:
        with source.open("rb") as upload:
            answer = requests.post(f"{server.url}/infer/calcification", params={"output": "json"},
                                   files={"file": (source.name, upload)}, timeout=TIMEOUT)
        assert answer.status_code == 200, answer.text[:300]
        assert answer.json()["image_shape"] == list(read_mammogram(source).shape)

        details = set()
        for path in (str(stray), str(source), "/etc/hostname", str(server_tmp / "tmpnothere.png")):
            answer = requests.post(f"{server.url}/infer/calcification", params={"image": path, "output": "json"},
                                   timeout=TIMEOUT)
            assert answer.status_code == 404, answer.text[:300]
            details.add(answer.json()["detail"].replace(Path(path).name, "<name>"))  # paths are cut to names
        assert len(details) == 1  # an existing file and a missing one get the same answer
    finally:
        stray.unlink()


def test_same_host_client_with_default_tmpdir_keeps_every_result(server: LabelServer, studies: Path, server_tmp: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(server_tmp))  # the client's default tmpdir is the server's
    client = MONAILabelClient(server.url)
    image_id = _ids(studies)[2]
    shape = read_mammogram(next(studies.glob(f"{image_id}.*"))).shape
    kept = []
    for run in range(6):
        upload = str(next(studies.glob(f"{image_id}.*"))) if run % 2 else None
        result, params = client.infer("calcification", "" if upload else image_id, {"threshold": 0.0}, file=upload)
        time.sleep(0.5)  # the server's clean-up after the answer has run by now
        assert result and Path(result).is_file(), f"run {run}: the client's result file is gone"
        assert np.squeeze(itk.array_from_image(itk.imread(result))).shape == shape
        assert params["patches_positive"] == params["patches_scored"] > 0
        kept.append(result)
    assert len(set(kept)) == len(kept)  # unique names: clients on one host do not overwrite each other
    leftovers = [p.name for p in server_tmp.iterdir() if p.name.startswith("plaid-request-")]
    assert leftovers == []
    assert server.healthy()


def test_a_valid_checkpoint_upload_replaces_the_model(server: LabelServer, studies: Path, work: Path) -> None:
    replacement = work / "replacement.pt"
    save_checkpoint(replacement, build_model(pretrained=False), threshold=0.25)
    with replacement.open("rb") as upload:
        answer = requests.put(f"{server.url}/model/calcification", files={"file": ("new.pt", upload)}, timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text[:300]
    published = server.model_dir / "calcification.pt"
    assert published.read_bytes() == replacement.read_bytes()
    assert not list(server.model_dir.glob(".*upload"))
    result = requests.post(f"{server.url}/infer/calcification", params={"image": _ids(studies)[0], "output": "json"},
                           timeout=TIMEOUT)
    assert result.status_code == 200 and result.json()["threshold"] == 0.25, result.text[:300]


def test_an_image_id_naming_a_server_file_reads_the_datastore_image(server: LabelServer, studies: Path) -> None:
    """MONAI Label reads an id that is also an existing path (relative to the server's working folder) as that
    path; PLAID hands its task the datastore image. A requested save_label lands in the image's labels."""
    collision = next(p.name for p in sorted(Path.cwd().iterdir()) if "." not in p.name and p.name.isalnum())
    source = next(studies.glob(f"{_ids(studies)[0]}.png"), None) or next(studies.glob("*.png"))
    with source.open("rb") as upload:
        added = requests.put(f"{server.url}/datastore/image", params={"image": collision},
                             files={"file": (f"{collision}.png", upload)}, timeout=TIMEOUT)
    assert added.status_code == 200, added.text[:300]
    answer = requests.post(f"{server.url}/infer/calcification", params={"image": collision, "output": "json"},
                           data={"params": '{"save_label": true, "threshold": 0}'}, timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["image_shape"] == list(read_mammogram(source).shape)
    saved = studies / "labels" / "original" / f"{collision}.nrrd"
    assert saved.is_file()
    mask = np.squeeze(itk.array_from_image(itk.imread(str(saved))))
    assert mask.shape == read_mammogram(source).shape and mask.any()  # threshold 0: every tissue patch marked
