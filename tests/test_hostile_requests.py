"""Hostile and concurrent requests against a real `monailabel start_server` on 127.0.0.1, over plain HTTP.

One server for the module. The tests run in order: every hostile request gets a 4xx, the studies folder
is byte-for-byte unchanged and the server stays up; then concurrent label saves; then the listing rules
(issue 11 item 3), unknown names (item 4) and "nothing left to label" (item 5) through MONAI Label's client.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import itk
import numpy as np
import pytest
import requests
import torch
from monailabel.client import MONAILabelClient
from PIL import Image

from plaid.io.images import read_mammogram
from plaid.io.labels import read_label_mask
from plaid.synth.datasets import generate_dataset
from plaid_dev.serving import LabelServer, start_label_server

pytestmark = pytest.mark.server

TIMEOUT = 60


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small synthetic mammograms (PNG and DICOM), none labelled, plus files PLAID cannot label."""
    root = tmp_path_factory.mktemp("hostile") / "studies"
    generate_dataset(root, count=6, seed=5, height=448, width=448, calcified_fraction=1.0)
    for label in (root / "labels" / "final").iterdir():
        label.unlink()
    (root / "spleen_10.nii.gz").write_bytes(b"\x1f\x8b" + b"\0" * 64)
    (root / "notes.txt").write_text("radiologist notes")
    return root


@pytest.fixture(scope="module")
def server(studies: Path) -> LabelServer:
    model_dir = studies.parent / "model"
    handle = start_label_server(studies, conf={"model_dir": str(model_dir), "epochs": "1"},
                                log_path=studies.parent / "server.log",
                                env={"MONAI_LABEL_AUTO_UPDATE_SCORING": "false"})
    yield handle
    handle.stop()


def _image_ids(studies: Path) -> list[str]:
    return sorted(path.name.split(".")[0] for path in studies.iterdir() if path.suffix in (".png", ".dcm"))


def _checksum(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` except MONAI Label's lock file."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file() and path.name != ".lock"}


def _mask_file(path: Path, shape: tuple[int, int], suffix: str) -> Path:
    """A valid label of ``shape`` (a speck in the middle) written as ``suffix``."""
    mask = np.zeros(shape, dtype=np.uint8)
    mask[shape[0] // 2 - 3: shape[0] // 2 + 3, shape[1] // 2 - 3: shape[1] // 2 + 3] = 1
    target = path.with_name(path.name.split(".")[0] + suffix)
    if suffix == ".png":
        Image.fromarray(mask).save(target)
    else:
        itk.imwrite(itk.image_from_array(mask), str(target))
    return target


def _assert_clean(response: requests.Response, server: LabelServer, studies: Path, expected: int | None = None) -> None:
    """A 4xx (``expected`` if given) whose body names no server path."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    if expected is not None:
        assert response.status_code == expected, response.text[:500]
    for secret in (str(studies), str(server.model_dir), f"{tempfile.gettempdir()}/tmp"):
        assert secret not in response.text, response.text[:500]
    assert "Traceback" not in response.text


def _put_image(server: LabelServer, image_id: str, name: str, content: bytes) -> requests.Response:
    return requests.put(f"{server.url}/datastore/image", params={"image": image_id},
                        files={"file": (name, content)}, data={"params": "{}"}, timeout=TIMEOUT)


def _put_label(server: LabelServer, image_id: str, tag: str, path: Path) -> requests.Response:
    return requests.put(f"{server.url}/datastore/label", params={"image": image_id, "tag": tag},
                        files={"label": (path.name, path.read_bytes())}, data={"params": "{}"}, timeout=TIMEOUT)


def _infer(server: LabelServer, image: str, params: dict, model: str = "calcification") -> requests.Response:
    return requests.post(f"{server.url}/infer/{model}", params={"image": image, "output": "json"},
                         data={"params": json.dumps(params)}, timeout=TIMEOUT)


def test_hostile_requests_get_4xx_and_leave_the_studies_folder_unchanged(
    server: LabelServer, studies: Path, tmp_path: Path
) -> None:
    image_ids = _image_ids(studies)
    dicom_id = next(i for i in image_ids if (studies / f"{i}.dcm").is_file())
    shape = read_mammogram(studies / f"{dicom_id}.dcm").shape
    good_label = _mask_file(tmp_path / "good.nrrd", shape, ".nrrd")
    before = _checksum(studies)
    small = tmp_path / "small.png"
    Image.fromarray(np.full((10, 10), 128, dtype=np.uint8)).save(small)
    dicom_bytes = (studies / f"{dicom_id}.dcm").read_bytes()
    uploads = {
        "text.dcm": b"this is a radiology report, not a DICOM file\n" * 20,
        "truncated.dcm": dicom_bytes[: len(dicom_bytes) // 3],
        "empty.png": b"",
        "garbage.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8,
        "small.png": small.read_bytes(),
        "volume.nii.gz": (studies / "spleen_10.nii.gz").read_bytes(),
    }
    for name, content in uploads.items():
        _assert_clean(_put_image(server, "newcase", name, content), server, studies)
    good_png = next(studies.glob("*.png")).read_bytes()
    for hostile_id in ("../evil", "/tmp/evil", "a/b", ".."):
        _assert_clean(_put_image(server, hostile_id, "x.png", good_png), server, studies, 422)
    _assert_clean(_put_image(server, dicom_id, "x.png", good_png), server, studies, 409)  # never replaced

    wrong_size = _mask_file(tmp_path / "wrong.nrrd", (shape[0] // 2, shape[1]), ".nrrd")
    not_image = tmp_path / "notimage.nrrd"
    not_image.write_text("NRRD0004\nthis is not a label\n")
    text_label = tmp_path / "label.txt"
    text_label.write_text("0 1 0")
    _assert_clean(_put_label(server, dicom_id, "final", wrong_size), server, studies, 422)
    _assert_clean(_put_label(server, dicom_id, "final", not_image), server, studies, 422)
    _assert_clean(_put_label(server, dicom_id, "final", text_label), server, studies, 422)
    _assert_clean(_put_label(server, "no_such_image", "final", good_label), server, studies, 404)
    for tag in ("..", "../..", "/tmp", "final/../../x", ".hidden", "back\\slash", "new\nline"):
        _assert_clean(_put_label(server, dicom_id, tag, good_label), server, studies, 422)

    for params in ({"threshold": "abc"}, {"threshold": 7}, {"threshold": "nan"}, {"result_extension": ".txt"},
                   {"result_extension": "/../../x.nrrd"}, {"label_output": "everything"}):
        response = _infer(server, dicom_id, params)
        _assert_clean(response, server, studies, 422)
        assert next(iter(params)) in response.json()["detail"]
    outside = [str(studies / f"{dicom_id}.dcm"), "/etc/passwd", "/no/such/file.png", "../studies", str(studies)]
    answers = {path: _infer(server, path, {}) for path in outside}
    for response in answers.values():
        _assert_clean(response, server, studies, 404)
    _assert_clean(_infer(server, "", {}), server, studies, 422)
    assert _infer(server, dicom_id, {}).status_code == 409  # a datastore image, but no model yet

    for kind, path in (("infer", "/infer/no_such_model"), ("train", "/train/no_such_trainer"),
                       ("strategy", "/activelearning/no_such_strategy"), ("scoring", "/scoring/no_such_method")):
        response = requests.post(f"{server.url}{path}", params={"image": dicom_id}, timeout=TIMEOUT)
        _assert_clean(response, server, studies, 404)
        assert response.json()["available"], kind
    assert "calcification" in requests.post(f"{server.url}/infer/x", params={"image": dicom_id},
                                            timeout=TIMEOUT).json()["available"]
    for body in ({"epochs": "abc"}, {"epochs": 0}, {"epochs": 2.5}, {"batch_size": True}, {"name": "../../etc"},
                 {"frozen_layers": 999}, {"learning_rate": -1}, {"val_fraction": 1.5}, {"amp": "maybe"},
                 {"device": "gpu-please"}):
        response = requests.post(f"{server.url}/train/calcification", json=body, timeout=TIMEOUT)
        _assert_clean(response, server, studies, 422)
        assert next(iter(body)) in response.json()["detail"]
    for method, path, params in (("DELETE", "/datastore/image", {"id": "no_such_image"}),
                                 ("PUT", "/datastore/image/info", {"image": "no_such_image"}),
                                 ("PUT", "/datastore/label/info", {"label": "no_such_image", "tag": "final"})):
        _assert_clean(requests.request(method, f"{server.url}{path}", params=params, timeout=TIMEOUT),
                      server, studies, 404)

    malformed = requests.put(f"{server.url}/datastore/label", params={"image": dicom_id, "tag": "final"},
                             files={"label": ("good.nrrd", good_label.read_bytes())}, data={"params": "{oops"},
                             timeout=TIMEOUT)
    _assert_clean(malformed, server, studies, 400)
    _assert_clean(requests.post(f"{server.url}/infer/calcification", params={"image": dicom_id},
                                data={"params": "not json"}, timeout=TIMEOUT), server, studies, 400)
    _assert_clean(requests.put(f"{server.url}/datastore/image/info", params={"image": dicom_id},
                               data={"info": "[unclosed"}, timeout=TIMEOUT), server, studies, 400)

    assert server.healthy()
    assert _checksum(studies) == before


def test_corrupt_or_incompatible_checkpoint_is_a_409_without_paths(server: LabelServer, studies: Path) -> None:
    image_id = _image_ids(studies)[0]
    published = server.model_dir / "calcification.pt"
    published.parent.mkdir(parents=True, exist_ok=True)
    try:
        for content in ("garbage", "foreign"):
            if content == "garbage":
                published.write_bytes(b"PK\x03\x04 not a torch file" * 10)
            else:
                torch.save({"state_dict": {"layer.weight": torch.zeros(3)}, "epoch": 1}, str(published))
            response = _infer(server, image_id, {})
            _assert_clean(response, server, studies, 409)
            assert "calcification.pt cannot be loaded" in response.json()["detail"]
    finally:
        published.unlink()
    assert server.healthy()


def test_twelve_concurrent_label_saves_leave_four_readable_labels(server: LabelServer, studies: Path,
                                                                  tmp_path: Path) -> None:
    targets = _image_ids(studies)[:4]
    shapes = {image_id: read_mammogram(next(studies.glob(f"{image_id}.*"))).shape for image_id in targets}
    jobs = []
    for round_number, suffix in enumerate((".png", ".nrrd", ".nii.gz")):
        for image_id in targets:
            jobs.append((image_id, _mask_file(tmp_path / f"{image_id}-{round_number}.x", shapes[image_id], suffix)))
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda job: _put_label(server, job[0], "final", job[1]), jobs))
    assert [answer.status_code for answer in answers] == [200] * 12, [a.text for a in answers if a.status_code != 200]

    stored = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=TIMEOUT).json()["objects"]
    on_disk = json.loads((studies / "datastore_v2.json").read_text())["objects"]
    labelled = sorted(image_id for image_id, entry in stored.items() if "final" in entry["labels"])
    assert labelled == sorted(targets)
    for image_id in targets:
        ext = stored[image_id]["labels"]["final"]["ext"]
        assert on_disk[image_id]["labels"]["final"]["ext"] == ext
        mask = read_label_mask(studies / "labels" / "final" / f"{image_id}{ext}", shapes[image_id])
        assert mask.sum() == 36
        assert next(studies.glob(f"{image_id}.*")).is_file()  # the image itself is untouched


def test_datastore_lists_only_what_plaid_can_label(server: LabelServer, studies: Path) -> None:
    stored = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=TIMEOUT).json()["objects"]
    assert sorted(stored) == _image_ids(studies)
    assert "spleen_10" not in stored and "notes" not in stored
    client = MONAILabelClient(server.url)
    seen = set()
    for _ in range(3):
        for strategy in ("first", "random"):
            sample = client.next_sample(strategy, {})
            assert str(studies) not in json.dumps(sample)
            seen.add(sample["id"])
    assert seen <= set(_image_ids(studies))
    log = server.log_path.read_text(errors="replace")
    assert log.count("ignoring 2 file(s) in the studies folder") == 1
    assert "notes.txt, spleen_10.nii.gz" in log


def test_no_image_left_to_label_is_an_answer_clients_handle(server: LabelServer, studies: Path,
                                                            tmp_path: Path) -> None:
    client = MONAILabelClient(server.url, tmpdir=str(tmp_path))
    for image_id in _image_ids(studies):
        shape = read_mammogram(next(studies.glob(f"{image_id}.*"))).shape
        client.save_label(image_id, str(_mask_file(tmp_path / f"{image_id}.x", shape, ".nrrd")), tag="final")
    for strategy in ("first", "random", "film_score"):
        sample = client.next_sample(strategy, {})
        assert not sample.get("id"), sample
        assert "no image left to label" in sample["message"]
    assert server.healthy()
