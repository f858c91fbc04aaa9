"""End to end: a real MONAI Label server on 127.0.0.1 running apps/plaid, driven by MONAI Label's client.

The tests in this module share one server and run in order: no model -> bad requests -> training ->
inference -> a saved correction used by the next training -> scoring and uncertainty sampling.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import itk
import numpy as np
import pytest
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException, MONAILabelUtils
from PIL import Image

from plaid.io.images import read_mammogram
from plaid.patches.grid import PatchGrid
from plaid.patches.labels import patch_labels_from_mask
from plaid.synth.datasets import generate_dataset
from plaid_dev.serving import LabelServer, start_label_server

pytestmark = pytest.mark.server

UNLABELED = 3
TRAIN_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small synthetic mammograms (PNG and DICOM); the last two have no final label."""
    root = tmp_path_factory.mktemp("studies")
    rows = generate_dataset(root, count=6, seed=11, height=672, width=560, calcified_fraction=1.0)
    for row in rows[-UNLABELED:]:
        (root / "labels" / "final" / f"{row['image_id']}.png").unlink()
    return root


@pytest.fixture(scope="module")
def server(studies: Path, tmp_path_factory: pytest.TempPathFactory) -> LabelServer:
    model_dir = tmp_path_factory.mktemp("model")
    handle = start_label_server(
        studies,
        conf={"model_dir": str(model_dir), "epochs": "1", "batch_size": "8"},
        log_path=model_dir.parent / "server.log",
        env={"MONAI_LABEL_AUTO_UPDATE_SCORING": "false"},
    )
    yield handle
    handle.stop()


def _image_ids(client: MONAILabelClient) -> dict[str, dict]:
    return client.datastore()["objects"]


def _labelled(client: MONAILabelClient, labelled: bool) -> list[str]:
    return sorted(k for k, v in _image_ids(client).items() if ("final" in v.get("labels", {})) == labelled)


def _wait_for_training(client: MONAILabelClient) -> dict:
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        status = client.train_status()
        if status.get("status") in ("DONE", "ERROR"):
            return status
        time.sleep(2)
    raise TimeoutError("training did not finish")


def _status_code(error: MONAILabelClientException) -> int:
    return int(str(error.msg).split("Status: ")[1].split(";")[0])


def test_info_lists_model_trainer_strategies_and_scoring(client: MONAILabelClient) -> None:
    info = client.info()
    assert info["models"]["calcification"]["labels"] == {"calcification": 1}
    assert info["models"]["calcification"]["dimension"] == 2
    assert "calcification" in info["trainers"]
    assert list(info["strategies"])[0] == "film_score" and {"random", "first"} <= set(info["strategies"])
    assert "patch_uncertainty" not in info["strategies"]             # lost to random selection: removed
    assert "active_learning" in info["scoring"]
    assert info["active_learning"]["default_strategy"] == "film_score" and info["active_learning"]["why"]
    assert info["trainers"]["calcification"]["config"]["epochs"] == 1  # --conf reached the trainer


def test_infer_without_model_is_a_clear_error(client: MONAILabelClient, server: LabelServer) -> None:
    image_id = _labelled(client, True)[0]
    with pytest.raises(MONAILabelClientException) as caught:
        client.infer("calcification", image_id, {})
    assert _status_code(caught.value) == 409
    assert "no trained calcification model" in str(caught.value.msg)
    assert server.healthy()


def test_bad_requests_get_4xx_and_nothing_stored_is_lost(client: MONAILabelClient, server: LabelServer,
                                                         studies: Path, tmp_path: Path) -> None:
    labelled_id = _labelled(client, True)[0]
    label_file = next((studies / "labels" / "final").glob(f"{labelled_id}.*"))
    label_bytes = label_file.read_bytes()

    with pytest.raises(MONAILabelClientException) as unknown:
        client.infer("calcification", "no-such-image", {})
    assert _status_code(unknown.value) == 404

    wrong = tmp_path / "wrong.png"
    Image.fromarray(np.ones((100, 90), dtype=np.uint8)).save(wrong)
    with pytest.raises(MONAILabelClientException) as wrong_shape:
        client.save_label(labelled_id, str(wrong), tag="final")
    assert 400 <= _status_code(wrong_shape.value) < 500
    assert "does not match image" in str(wrong_shape.value.msg)
    assert label_file.read_bytes() == label_bytes

    text = tmp_path / "report.png"
    text.write_text("not an image at all")
    with pytest.raises(MONAILabelClientException) as not_image:
        client.upload_image(str(text), image_id="report")
    assert 400 <= _status_code(not_image.value) < 500
    assert "report" not in _image_ids(client)
    assert server.healthy()


def test_training_publishes_model_and_infer_returns_grid_aligned_mask(
    client: MONAILabelClient, server: LabelServer, studies: Path
) -> None:
    client.train_start("calcification", {"epochs": 1, "batch_size": 8})
    status = _wait_for_training(client)
    assert status["status"] == "DONE", status
    published = server.model_dir / "calcification.pt"
    assert published.is_file()

    image_id = _labelled(client, False)[0]
    image = read_mammogram(next(studies.glob(f"{image_id}.*")))
    label_file, result = client.infer("calcification", image_id, {"threshold": 0.0})
    mask = np.squeeze(itk.array_from_image(itk.imread(label_file)))
    assert mask.shape == image.shape
    assert set(np.unique(mask)) <= {0, 1}
    grid = PatchGrid(*image.shape)
    for top, left, bottom, right in grid.boxes():
        block = mask[top:bottom, left:right]
        assert block.min() == block.max()  # each patch is all-in or all-out
    assert result["threshold"] == 0.0
    assert result["patches_positive"] == result["patches_scored"] > 0  # threshold 0 marks every scored patch
    assert result["patches_scored"] + result["patches_skipped"] == len(grid)
    first = result["positives"][0]
    assert set(first) == {"patch", "box", "probability"} and 0.0 <= first["probability"] <= 1.0
    assert result["image_shape"] == list(image.shape)

    probability_file, _ = client.infer("calcification", image_id, {"label_output": "probability",
                                                                   "result_extension": ".nii.gz"})
    probabilities = np.squeeze(itk.array_from_image(itk.imread(probability_file)))
    assert probabilities.shape == image.shape and probabilities.dtype == np.float32
    assert 0.0 <= probabilities.min() and probabilities.max() <= 1.0


def test_corrupt_image_in_datastore_is_a_4xx(client: MONAILabelClient, server: LabelServer, studies: Path) -> None:
    (studies / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    deadline = time.monotonic() + 60
    while "corrupt" not in _image_ids(client) and time.monotonic() < deadline:
        time.sleep(1)
    assert "corrupt" in _image_ids(client)
    with pytest.raises(MONAILabelClientException) as caught:
        client.infer("calcification", "corrupt", {})
    assert _status_code(caught.value) == 422 and "corrupt.png" in str(caught.value.msg)
    assert server.healthy()
    (studies / "corrupt.png").unlink()


def test_saved_correction_is_used_by_the_next_training(client: MONAILabelClient, server: LabelServer,
                                                       studies: Path, tmp_path: Path) -> None:
    image_id = _labelled(client, False)[0]
    image = read_mammogram(next(studies.glob(f"{image_id}.*")))
    edit = np.zeros(image.shape, dtype=np.uint8)
    yy, xx = np.ogrid[: image.shape[0], : image.shape[1]]
    edit[(yy - 448) ** 2 + (xx - 300) ** 2 <= 9] = 1  # a painted speck across a patch border (not grid-aligned)
    edited = tmp_path / f"{image_id}.nrrd"
    itk.imwrite(itk.image_from_array(edit), str(edited))
    client.save_label(image_id, str(edited), tag="final")
    assert image_id in _labelled(client, True)

    client.train_start("calcification", {"epochs": 1, "batch_size": 8})
    assert _wait_for_training(client)["status"] == "DONE"
    runs = sorted((server.model_dir / "runs").iterdir())
    trained_on = json.loads((runs[-1] / "patch_labels.json").read_text())
    assert image_id in trained_on
    expected = np.flatnonzero(patch_labels_from_mask(edit, PatchGrid(*image.shape)))
    assert trained_on[image_id]["positive_patches"] == expected.tolist()
    assert len(expected) == 2  # the speck straddles the boundary between patches 4 and 7


def test_default_strategy_follows_stored_values(client: MONAILabelClient, server: LabelServer) -> None:
    status, body, _, _ = MONAILabelUtils.http_method("POST", server.url, "/scoring/active_learning")
    assert status == 200, body
    deadline = time.monotonic() + 300
    unlabeled = _labelled(client, False)
    assert unlabeled
    while time.monotonic() < deadline:
        objects = _image_ids(client)
        if all("plaid_al_values" in objects[i]["image"]["info"] for i in unlabeled):
            break
        time.sleep(2)
    scores = {i: objects[i]["image"]["info"]["plaid_al_values"]["film_score"] for i in unlabeled}
    chosen = client.next_sample("film_score", {})
    assert chosen["id"] == max(scores, key=scores.get)
    assert chosen["id"] in unlabeled

    # Raise another image's stored score above all others: the ranking must follow it.
    others = [i for i in _labelled(client, False) if i != chosen["id"]]
    if not others:
        pytest.skip("only one unlabeled image left")
    target = others[0]
    info = json.dumps({"plaid_al_values": {"film_score": max(scores.values()) + 100.0}})
    MONAILabelUtils.http_multipart("PUT", server.url, f"/datastore/image/info?image={target}", {"info": info}, {})
    assert client.next_sample("film_score", {})["id"] == target
    assert client.next_sample("first", {})["id"] in _labelled(client, False)
