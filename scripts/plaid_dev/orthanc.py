"""Start and stop a private Orthanc (Debian package, DICOMweb plugin) on loopback, and upload DICOM files.

The demo and the tests share this launcher, as they share `plaid_dev.serving` for MONAI Label.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from plaid_dev.serving import free_port, wait_until_healthy

logger = logging.getLogger(__name__)

ORTHANC_BINARY = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
ORTHANC_USER = "orthanc"
DEBIAN_PACKAGES = ("orthanc", "orthanc-dicomweb")


class OrthancUnavailable(RuntimeError):
    """Orthanc or its DICOMweb plugin is not installed, or it did not start."""


def orthanc_missing() -> str | None:
    """Why Orthanc cannot be started here (None when the binary and the DICOMweb plugin are installed)."""
    if not Path(ORTHANC_BINARY).is_file():
        return f"{ORTHANC_BINARY} is missing (apt-get install {' '.join(DEBIAN_PACKAGES)})"
    if not Path(DICOMWEB_PLUGIN).is_file():
        return f"{DICOMWEB_PLUGIN} is missing (apt-get install orthanc-dicomweb)"
    return None


def orthanc_config(storage: Path, http_port: int, users: dict[str, str] | None = None,
                   name: str = "PLAID") -> dict:
    """Orthanc's JSON configuration: no DICOM (DIMSE) server, DICOMweb under /dicom-web/, and
    ``RemoteAccessAllowed`` false (Orthanc 1.10 has no bind-address option: it listens on every interface
    but answers loopback clients only)."""
    return {
        "Name": name,
        "StorageDirectory": str(storage / "db"),
        "IndexDirectory": str(storage / "db"),
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "DicomServerEnabled": False,
        "AuthenticationEnabled": bool(users),
        "RegisteredUsers": dict(users or {}),
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado",
                     "Ssl": False, "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
        "StableAge": 1,
        "HttpTimeout": 60,
        "StorageCompression": False,
    }


@dataclass
class OrthancServer:
    """A running Orthanc: its base URL, DICOMweb root, credentials and storage folder."""

    process: subprocess.Popen
    url: str
    storage: Path
    log_path: Path
    users: dict[str, str] = field(default_factory=dict)
    owns_storage: bool = False

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb root (QIDO-RS, WADO-RS and STOW-RS)."""
        return f"{self.url}/dicom-web"

    @property
    def credentials(self) -> tuple[str, str] | None:
        """The first registered (user, password), if authentication is on."""
        return next(iter(self.users.items()), None)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30.0) -> tuple[int, bytes]:
        """One HTTP request to Orthanc's REST API with its credentials; returns (status, body)."""
        headers = dict(headers or {})
        if self.credentials:
            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        request = urllib.request.Request(f"{self.url}{path}", data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def healthy(self) -> bool:
        """True when the process runs and /system answers."""
        if self.process.poll() is not None:
            return False
        try:
            return self.request("GET", "/system", timeout=5)[0] == 200
        except OSError:
            return False

    def upload(self, path: str | Path) -> dict:
        """Store one DICOM file through Orthanc's REST API (an empty ``Expect:`` avoids a 1 s wait each)."""
        status, body = self.request("POST", "/instances", Path(path).read_bytes(),
                                    {"Content-Type": "application/dicom", "Expect": ""})
        if status != 200:
            raise RuntimeError(f"Orthanc refused {path}: HTTP {status} {body[:200]!r}")
        return json.loads(body)

    def upload_folder(self, folder: str | Path, pattern: str = "*.dcm") -> list[dict]:
        """Store every matching DICOM file of a folder (sorted); returns Orthanc's answers."""
        return [self.upload(path) for path in sorted(Path(folder).glob(pattern))]

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the Orthanc process itself (not to `runuser`), then wait; remove a temporary storage."""
        if self.process.poll() is None:
            for pid in _orthanc_pids(self.process.pid):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                for pid in _orthanc_pids(self.process.pid):
                    os.kill(pid, signal.SIGKILL)
                self.process.wait(timeout)
        if self.owns_storage:
            shutil.rmtree(self.storage, ignore_errors=True)

    def __enter__(self) -> OrthancServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _orthanc_pids(launcher_pid: int) -> list[int]:
    """The Orthanc process: the launcher's children when it is `runuser`, else the launcher itself."""
    children_file = Path(f"/proc/{launcher_pid}/task/{launcher_pid}/children")
    try:
        children = [int(pid) for pid in children_file.read_text().split()]
    except OSError:
        children = []
    return children or [launcher_pid]


def start_orthanc(
    storage: str | Path | None = None,
    port: int | None = None,
    users: dict[str, str] | None = None,
    log_path: str | Path | None = None,
    startup_timeout: float = 30.0,
) -> OrthancServer:
    """Start Orthanc on 127.0.0.1 with the DICOMweb plugin and wait until its REST API answers.

    ``storage`` (a fresh temporary folder when None, removed on stop) holds the database and the config;
    as root, Orthanc runs as the ``orthanc`` user through ``runuser`` and owns the storage, so a given
    ``storage`` must sit where that user can reach it. ``users`` turns on HTTP basic authentication.
    """
    missing = orthanc_missing()
    if missing:
        raise OrthancUnavailable(missing)
    owns_storage = storage is None
    storage = Path(storage or tempfile.mkdtemp(prefix="plaid-orthanc-"))
    (storage / "db").mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config_path = storage / "orthanc.json"
    config_path.write_text(json.dumps(orthanc_config(storage, port, users), indent=2))
    log_path = Path(log_path or storage / "orthanc.log")
    command = [ORTHANC_BINARY, "--logdir=" + str(storage), str(config_path)]
    if os.geteuid() == 0:
        account = pwd.getpwnam(ORTHANC_USER)
        for path in (storage, storage / "db", config_path):
            os.chown(path, account.pw_uid, account.pw_gid)
        command = ["runuser", "-u", ORTHANC_USER, "--", ORTHANC_BINARY, str(config_path)]
    logger.info("starting Orthanc on 127.0.0.1:%d (storage %s)", port, storage)
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = OrthancServer(process=process, url=f"http://127.0.0.1:{port}", storage=storage, log_path=log_path,
                           users=dict(users or {}), owns_storage=owns_storage)
    failure = wait_until_healthy(server, "Orthanc", startup_timeout, poll_s=0.1)
    if failure:
        raise OrthancUnavailable(failure)
    return server
