"""Issue 29: PLAID's DICOMweb datastore logs in to an Orthanc with authentication (RegisteredUsers) with a user
and password from a file or the environment, and the password appears in no log, /info answer, error message
or command line, also when it is wrong; a studies URL holding credentials is refused."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from plaid.synth.datasets import generate_dataset
from plaid_dev.orthanc import OrthancServer, orthanc_missing, start_orthanc
from plaid_dev.serving import LabelServer, free_port, start_label_server

pytestmark = [pytest.mark.server, pytest.mark.skipif(orthanc_missing() is not None,
                                                     reason=f"Orthanc unavailable: {orthanc_missing()}")]
USER = "plaid-reader"
PASSWORD = f"pw-{secrets.token_hex(12)}"
WRONG = f"wrong-{secrets.token_hex(12)}"
TIMEOUT = 120


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pacs-credentials")


@pytest.fixture(scope="module")
def orthanc(work: Path) -> Iterator[OrthancServer]:
    rows = generate_dataset(work / "synth", count=2, seed=8, height=448, width=448, formats=("dcm",))
    handle = start_orthanc(users={USER: PASSWORD}, log_path=work / "orthanc.log")
    for row in rows:
        handle.upload(work / "synth" / f"{row['image_id']}.dcm")
    yield handle
    handle.stop()


def _credentials_file(folder: Path, password: str, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"pacs-{name}.txt"
    path.write_text(f"{USER}:{password}\n")
    path.chmod(0o600)
    return path


def _server(work: Path, orthanc: OrthancServer, name: str, env: dict[str, str]) -> LabelServer:
    return start_label_server(orthanc.dicomweb_url, conf={"model_dir": str(work / "model"), "dicomweb_refresh_s": "1"},
                              log_path=work / f"{name}.log", port=free_port(),
                              env={"MONAI_LABEL_DATASTORE_CACHE_PATH": str(work / f"cache-{name}"), **env})


def _answers(server: LabelServer) -> list[str]:
    """/info/, the datastore, and error answers that touch the PACS."""
    texts = []
    for method, path, params in (("GET", "/info/", {}), ("GET", "/datastore/", {"output": "all"}),
                                 ("POST", "/infer/calcification", {"image": "1.2.3.4"}),
                                 ("GET", "/datastore/image", {"image": "1.2.3.4.5"})):
        answer = requests.request(method, f"{server.url}{path}", params=params, timeout=TIMEOUT)
        texts.append(f"{answer.status_code} {answer.text}")
    return texts


def _command_line(server: LabelServer) -> str:
    return Path(f"/proc/{server.process.pid}/cmdline").read_bytes().decode(errors="replace")


@pytest.mark.parametrize("source", ["file", "environment"])
def test_the_datastore_logs_in_and_never_shows_the_password(work: Path, orthanc: OrthancServer, source: str) -> None:
    env = ({"PLAID_PACS_CREDENTIALS_FILE": str(_credentials_file(work, PASSWORD, "good"))} if source == "file" else
           {"MONAI_LABEL_DATASTORE_USERNAME": USER, "MONAI_LABEL_DATASTORE_PASSWORD": PASSWORD})
    with _server(work, orthanc, source, env) as server:
        listing = requests.get(f"{server.url}/datastore/", params={"output": "stats"}, timeout=TIMEOUT).json()
        assert listing["total"] == 2  # QIDO-RS with the credentials worked
        texts, command = _answers(server), _command_line(server)
        log = server.log_path.read_text(errors="replace")
    assert all(PASSWORD not in text for text in texts)
    assert PASSWORD not in command and PASSWORD not in log
    assert f"user {USER}" in log  # the log says who logs in, not how


def test_a_wrong_password_is_refused_by_orthanc_and_not_shown(work: Path, orthanc: OrthancServer) -> None:
    env = {"PLAID_PACS_CREDENTIALS_FILE": str(_credentials_file(work, WRONG, "wrong"))}
    with _server(work, orthanc, "wrong", env) as server:
        stats = requests.get(f"{server.url}/datastore/", params={"output": "stats"}, timeout=TIMEOUT).json()
        assert stats["total"] == 0
        texts = _answers(server)
        log = server.log_path.read_text(errors="replace")
    assert "401" in log  # Orthanc refused the login: said in the log
    assert all(WRONG not in text and PASSWORD not in text for text in texts)
    assert WRONG not in log


def test_a_readable_credentials_file_and_a_url_with_credentials_are_refused(work: Path,
                                                                           orthanc: OrthancServer) -> None:
    loose = _credentials_file(work / "loose", PASSWORD, "loose")
    loose.chmod(0o644)
    with pytest.raises(RuntimeError) as caught:
        _server(work, orthanc, "loose", {"PLAID_PACS_CREDENTIALS_FILE": str(loose)})
    assert "chmod 600" in str(caught.value) and PASSWORD not in str(caught.value)
    url = orthanc.dicomweb_url.replace("http://", f"http://{USER}:{PASSWORD}@")
    with pytest.raises(RuntimeError) as caught:
        start_label_server(url, conf={"model_dir": str(work / "model")}, log_path=work / "url.log",
                           startup_timeout=120)
    assert "must not hold a user or password" in str(caught.value)
