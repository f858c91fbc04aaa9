"""Issue 29: MONAI Label's own login through every PLAID endpoint, on HTTP and on TLS, and no correction lost.

A small OpenID Connect provider on 127.0.0.1 (`tests.oidc_provider`) plays the Keycloak realm; PLAID's server
runs with ``MONAI_LABEL_AUTH_ENABLE`` against it, once over plain HTTP and once over TLS with a certificate
made here (the client verifies it against the test's CA), and a server without login serves an identical
site for comparison. Every operation of the login server's own OpenAPI document is sent:

- with no token and each forged token (expired, other key, ``alg: none``, other realm, HMAC with the public
  key, no expiry, not a JWT): 401; with a valid token whose roles are too low: 403. After all of them no
  file under the site changed and no model ran;
- with the right role: the same status (and error detail) as the same request to the server without login.

The requests are harmless by construction (unknown ids, values PLAID refuses), so both servers stay alike.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from oidc_provider import ROLES, OidcProvider, new_key
from PIL import Image
from served_site import Site, build_site, file_state, start_site_server, state_changes

from plaid.io.labels import read_label_mask
from plaid_dev.serving import REPO_ROOT, LabelServer

pytestmark = pytest.mark.server

TIMEOUT = 120
INFER_SUMMARY = "patches positive, image score"
PUBLIC, TOKEN = "public", "token"
# The role each operation needs: MONAI Label's RBAC, and PLAID's narrowing of PUT/DELETE /model/{model}.
ROLE_TABLE = {
    "GET /auth/": PUBLIC, "POST /auth/token": PUBLIC, "GET /auth/token/valid": TOKEN,
    "GET /info/": "user", "GET /model/{model}": "admin", "PUT /model/{model}": "admin",
    "DELETE /model/{model}": "admin", "GET /model/info/{model}": "admin",
    "POST /infer/{model}": "user", "POST /infer/wsi_v2/{model}": "user",
    "GET /batch/infer": "user", "DELETE /batch/infer": "admin", "POST /batch/infer/{model}": "admin",
    "GET /train/": "user", "DELETE /train/": "admin", "POST /train/{model}": "admin",
    "POST /activelearning/{strategy}": "user",
    "GET /scoring/": "user", "DELETE /scoring/": "annotator", "POST /scoring/{method}": "annotator",
    "GET /datastore/": "user", "PUT /datastore/image": "annotator", "DELETE /datastore/image": "admin",
    "HEAD /datastore/image": "user", "GET /datastore/image": "user", "GET /datastore/image/info": "user",
    "PUT /datastore/image/info": "annotator", "PUT /datastore/label": "annotator",
    "DELETE /datastore/label": "admin", "HEAD /datastore/label": "user", "GET /datastore/label": "user",
    "GET /datastore/label/info": "user", "PUT /datastore/label/info": "annotator",
    "GET /datastore/label/versions": "user", "PUT /datastore/label/restore": "annotator",  # PLAID's routes
    "GET /datastore/dataset": "annotator", "GET /logs/": "admin", "GET /logs/gpu": "admin",
    "GET /session/{session_id}": "user", "DELETE /session/{session_id}": "user", "PUT /session/": "user",
}
RIGHT = {"user": "uma", "annotator": "ann", "admin": "ada"}  # an account holding the role
TOO_LOW = {"user": "nobody", "annotator": "uma", "admin": "rita"}  # the strongest account without it
PATH_VALUES = {"model": "calcification", "strategy": "random", "method": "patch_uncertainty",
               "session_id": "no-such-session"}
QUERY_VALUES = {"image": "no_such_image", "id": "no_such_image", "label": "no_such_image", "tag": "final",
                "version": 1}
JSON_BODIES = {"/train/{model}": {"epochs": -1}, "/scoring/{method}": {"force": "maybe"},
               "/batch/infer/{model}": {"multi_gpu": "maybe"}, "/activelearning/{strategy}": {"labels": "x"}}


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it: (certificate, key, CA certificate) files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = new_key(), new_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "PLAID test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False).sign(ca_key, hashes.SHA256()))
    paths = (folder / "server.pem", folder / "server.key", folder / "ca.pem")
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return paths


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, LabelServer]]:
    site = build_site(tmp_path_factory.mktemp("plain"))
    server = start_site_server(site)
    yield site, server
    server.stop()


@pytest.fixture(scope="module", params=["http", "https"])
def secured(request: pytest.FixtureRequest, provider: OidcProvider,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, LabelServer]]:
    site = build_site(tmp_path_factory.mktemp(f"login-{request.param}"))
    tls = make_tls(site.root) if request.param == "https" else None
    env = {"MONAI_LABEL_AUTH_ENABLE": "true", "MONAI_LABEL_AUTH_REALM_URI": provider.realm_uri}
    server = start_site_server(site, env=env, token=provider.token("uma"), tls=tls)
    yield site, server
    server.stop()


def _verify(server: LabelServer) -> Any:
    return str(server.ca_file) if server.ca_file else True


def _operations(server: LabelServer) -> list[tuple[str, dict[str, Any]]]:
    """(label 'METHOD /path', operation object) for every operation of the server's OpenAPI document."""
    document = requests.get(f"{server.url}/openapi.json", timeout=TIMEOUT, verify=_verify(server)).json()
    return [(f"{method.upper()} {path}", operation) for path, methods in document["paths"].items()
            for method, operation in methods.items()]


def _request(label: str, operation: dict[str, Any]) -> dict[str, Any]:
    """A harmless request for the operation, built from its parameters: unknown ids, refused values."""
    method, path = label.split(" ", 1)
    values = dict(PATH_VALUES, model="other") if method == "DELETE" else PATH_VALUES
    url_path = path.format(**{name: values[name] for name in values if f"{{{name}}}" in path})
    query = {p["name"]: QUERY_VALUES[p["name"]] for p in operation.get("parameters", [])
             if p["in"] == "query" and p.get("required")}
    if path == "/infer/{model}" or path == "/infer/wsi_v2/{model}":
        query["image"] = QUERY_VALUES["image"]
    content = operation.get("requestBody", {}).get("content", {})
    request: dict[str, Any] = {"method": method, "path": url_path, "params": query}
    if "application/json" in content:
        request["json"] = JSON_BODIES.get(path, {})
    elif "multipart/form-data" in content:
        request["files"] = {"file" if "label" not in path else "label": ("upload.png", b"not an image")}
        if path == "/session/":
            request["files"] = {"files": ("upload.png", b"not an image")}
    elif "application/x-www-form-urlencoded" in content:
        request["data"] = {"username": "ann", "password": "wrong"} if path == "/auth/token" else {"info": "{}"}
    return request


def _send(server: LabelServer, request: dict[str, Any], token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    spec = dict(request)
    return requests.request(spec.pop("method"), f"{server.url}{spec.pop('path')}", headers=headers,
                            timeout=TIMEOUT, verify=_verify(server), **spec)


def _detail(answer: requests.Response) -> Any:
    """The error detail of a JSON answer (None for an empty one, such as HEAD's)."""
    return answer.json().get("detail") if answer.content else None


def _site_state(site: Site) -> dict:
    return file_state(site.studies, site.model_dir, site.sessions, site.server_tmp)


def test_the_role_table_holds_for_every_openapi_operation(provider: OidcProvider, secured: tuple[Site, LabelServer],
                                                         plain: tuple[Site, LabelServer]) -> None:
    site, server = secured
    operations = _operations(server)
    assert {label for label, _ in operations} == set(ROLE_TABLE), "give each new operation its role in ROLE_TABLE"
    before, inferences = _site_state(site), server.log_path.read_text(errors="replace").count(INFER_SUMMARY)
    forged = provider.forged("ada")
    wrong = []
    for label, operation in operations:
        role, request = ROLE_TABLE[label], _request(label, operation)
        if role == PUBLIC:
            continue
        for name, token in [("no token", None), *forged.items()]:
            answer = _send(server, request, token)
            if answer.status_code != 401:
                wrong.append(f"{label} with {name}: {answer.status_code} {answer.text[:120]}")
        if role in TOO_LOW:
            answer = _send(server, request, provider.token(TOO_LOW[role]))
            if answer.status_code != 403:
                wrong.append(f"{label} as {TOO_LOW[role]}: {answer.status_code} {answer.text[:120]}")
    assert wrong == []
    assert state_changes(before, _site_state(site)) == []  # nothing written by a refused request
    assert server.log_path.read_text(errors="replace").count(INFER_SUMMARY) == inferences  # no model ran

    differences = []
    for label, operation in operations:
        if ROLE_TABLE[label] == PUBLIC or label == "GET /auth/token/valid":
            continue
        request = _request(label, operation)
        answer = _send(server, request, provider.token(RIGHT[ROLE_TABLE[label]]))
        expected = _send(plain[1], request, None)
        same = answer.status_code == expected.status_code and (
            answer.status_code < 400 or _detail(answer) == _detail(expected))
        if not same:
            differences.append(f"{label}: {answer.status_code} {answer.text[:100]} != {expected.status_code} "
                               f"{expected.text[:100]}")
    assert differences == []
    assert "Traceback" not in server.log_path.read_text(errors="replace")


def test_login_through_monai_label_gives_a_token_that_works(provider: OidcProvider,
                                                            secured: tuple[Site, LabelServer]) -> None:
    _, server = secured
    login = requests.post(f"{server.url}/auth/token", data={"username": "ann", "password": "ann-pw"},
                          timeout=TIMEOUT, verify=_verify(server))
    assert login.status_code == 200, login.text[:300]
    token = login.json()["access_token"]
    me = requests.get(f"{server.url}/auth/token/valid", headers={"Authorization": f"Bearer {token}"},
                      timeout=TIMEOUT, verify=_verify(server))
    assert me.status_code == 200 and me.json()["username"] == "ann" and ROLES["annotator"] in me.json()["roles"]
    refused = requests.post(f"{server.url}/auth/token", data={"username": "ann", "password": "wrong"},
                            timeout=TIMEOUT, verify=_verify(server))
    assert refused.status_code == 401 and "wrong" not in refused.text.replace("wrong user name", "")


def test_tls_needs_a_client_that_trusts_the_certificate(secured: tuple[Site, LabelServer]) -> None:
    _, server = secured
    http_url, https_url = (server.url.replace("https://", "http://"), server.url.replace("http://", "https://"))
    if server.ca_file is None:  # the plain server speaks no TLS
        assert requests.get(f"{http_url}/auth/", timeout=TIMEOUT).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{https_url}/auth/", timeout=TIMEOUT)
        return
    assert requests.get(f"{https_url}/auth/", timeout=TIMEOUT, verify=str(server.ca_file)).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{https_url}/auth/", timeout=TIMEOUT)  # the system's CAs do not know the test CA
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{http_url}/auth/", timeout=TIMEOUT)  # plain HTTP to the TLS port fails


def _mask(path: Path, shape: tuple[int, int], corner: int) -> Path:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[corner:corner + 20, corner:corner + 20] = 1
    Image.fromarray(mask * 255).save(path)
    return path


def _labels_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "lib")}
    return subprocess.run([sys.executable, "-m", "plaid.cli", "labels", *args], capture_output=True, text=True,
                          env=env, timeout=TIMEOUT, check=False)


def test_two_corrections_keep_both_versions_and_training_reads_the_newest(
        provider: OidcProvider, secured: tuple[Site, LabelServer], tmp_path: Path) -> None:
    site, server = secured
    image_id = site.image_ids()[0]  # it has a final label from the synthetic set
    shape = read_label_mask(next((site.studies / "labels" / "final").glob(f"{image_id}.*"))).shape
    for user, corner in (("ann", 10), ("bob", 100)):
        with _mask(tmp_path / f"{user}.png", shape, corner).open("rb") as upload:
            answer = requests.put(f"{server.url}/datastore/label", params={"image": image_id, "tag": "final"},
                                  data={"params": json.dumps({"user": "mallory"})},  # a client cannot name the user
                                  files={"label": ("mask.png", upload)}, timeout=TIMEOUT, verify=_verify(server),
                                  headers={"Authorization": f"Bearer {provider.token(user)}"})
        assert answer.status_code == 200, answer.text[:300]
    listed = _labels_cli("versions", str(site.studies), image_id, "--json")
    versions = json.loads(listed.stdout)
    api = requests.get(f"{server.url}/datastore/label/versions", params={"label": image_id}, timeout=TIMEOUT,
                       verify=_verify(server), headers={"Authorization": f"Bearer {provider.token('uma')}"})
    assert api.status_code == 200 and api.json() == versions  # the API lists what the CLI reads
    assert [(v["version"], v["user"]) for v in versions] == [(1, "unknown"), (2, "ann"), (3, "bob")], listed.stdout
    assert versions[1]["saved_at"] <= versions[2]["saved_at"] and all(v["saved_at_utc"] for v in versions)
    kept = site.studies / ".plaid-label-history" / "final" / image_id
    assert read_label_mask(kept / versions[1]["file"])[10, 10] == 1  # ann's correction is kept

    def training_label() -> np.ndarray:
        datalist = requests.get(f"{server.url}/datastore/", params={"output": "train"}, timeout=TIMEOUT,
                                verify=_verify(server), headers={"Authorization": f"Bearer {provider.token('ada')}"})
        item = next(i for i in datalist.json() if Path(i["image"]).name.startswith(image_id))
        return read_label_mask(item["label"])

    assert training_label()[100, 100] == 1 and training_label()[10, 10] == 0  # training reads bob's, the newest
    token_file = tmp_path / "token"
    token_file.write_text(provider.token("ann"))
    restore = ["restore", image_id, "2", "--server", server.url, "--token-file", str(token_file)]
    if server.ca_file:
        restore += ["--ca-file", str(server.ca_file)]
    assert _labels_cli(*restore).returncode == 0
    assert training_label()[10, 10] == 1
    removed = requests.delete(f"{server.url}/datastore/label", params={"id": image_id, "tag": "final"},
                              timeout=TIMEOUT, verify=_verify(server),
                              headers={"Authorization": f"Bearer {provider.token('ada')}"})
    assert removed.status_code == 200, removed.text[:300]
    versions = json.loads(_labels_cli("versions", str(site.studies), image_id, "--json").stdout)
    assert [(v["version"], v["user"], v["event"]) for v in versions][3:] == [(4, "ann", "saved"),
                                                                            (5, "ada", "deleted")]
    assert versions[3]["info"]["restored_from"] == 2 and (kept / versions[2]["file"]).is_file()
    assert _labels_cli("purge", str(site.studies), image_id).returncode == 2  # needs --yes
    assert (kept / versions[2]["file"]).is_file()
    assert _labels_cli("purge", str(site.studies), image_id, "--yes").returncode == 0
    assert not kept.exists() and _labels_cli("versions", str(site.studies), image_id).returncode == 1
