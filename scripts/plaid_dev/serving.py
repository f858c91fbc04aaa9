"""Start and stop a MONAI Label server on loopback (for the demo, tests and benchmarks)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_DIR = REPO_ROOT / "apps" / "plaid"
# The brief training `make demo` and `make pacs-demo` run when no model exists (README: what it gives).
DEMO_RECIPE = REPO_ROOT / "recipes" / "sample-data-demo.json"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class LabelServer:
    """A running `monailabel start_server` process (``model_dir``: its `--conf model_dir`, when given; ``token``:
    a bearer token when login is on; ``ca_file``: the CA that signed its TLS certificate)."""

    process: subprocess.Popen
    url: str
    log_path: Path
    model_dir: Path | None = None
    token: str | None = None
    ca_file: Path | None = None

    def _open(self, path: str, timeout: float):  # noqa: ANN202 (urllib's response type)
        request = urllib.request.Request(f"{self.url}{path}")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None
        return urllib.request.urlopen(request, timeout=timeout, context=context)

    def healthy(self) -> bool:
        """True when the process runs and /info/ answers."""
        if self.process.poll() is not None:
            return False
        try:
            with self._open("/info/", timeout=10) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def info(self) -> dict:
        """The server's /info/ document."""
        with self._open("/info/", timeout=30) as response:
            return json.loads(response.read())

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server and the task processes it started."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)

    def __enter__(self) -> LabelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_label_server(
    studies: str | Path,
    conf: dict[str, str] | None = None,
    app_dir: str | Path = APP_DIR,
    host: str = "127.0.0.1",
    port: int | None = None,
    log_path: str | Path | None = None,
    env: dict[str, str] | None = None,
    startup_timeout: float = 180.0,
    token: str | None = None,
    tls: tuple[Path, Path, Path] | None = None,
) -> LabelServer:
    """Run ``monailabel start_server`` for the PLAID app bound to ``host`` and wait until /info/ answers (with
    ``token`` when login is on). ``tls`` is (certificate, key, CA certificate): serve HTTPS, checked against the CA."""
    port = port or free_port(host)
    command = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(app_dir),
               "--studies", str(studies), "--host", host, "--port", str(port)]
    if tls:
        command += ["--ssl_certfile", str(tls[0]), "--ssl_keyfile", str(tls[1])]
    for key, value in (conf or {}).items():
        command += ["--conf", key, str(value)]
    log_path = Path(log_path or Path(studies).parent / f"monailabel-{port}.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "lib"), environment.get("PYTHONPATH")]))
    logger.info("starting MONAI Label on %s:%d (log %s)", host, port, log_path)
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment,
                                   start_new_session=True)
    model_dir = (conf or {}).get("model_dir")
    server = LabelServer(process=process, url=f"{'https' if tls else 'http'}://{host}:{port}", log_path=log_path,
                         model_dir=Path(model_dir) if model_dir else None, token=token,
                         ca_file=Path(tls[2]) if tls else None)
    failure = wait_until_healthy(server, "MONAI Label", startup_timeout, poll_s=1.0)
    if failure:
        raise RuntimeError(failure)
    return server


def wait_until_healthy(server, name: str, timeout_s: float, poll_s: float) -> str | None:
    """Poll ``server.healthy()`` until it is up (None), or say why not: its process exited (with the
    tail of its log) or ``timeout_s`` passed (the server is stopped then)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = server.log_path.read_text(errors="replace")[-3000:]
            return f"{name} exited with code {server.process.returncode}:\n{tail}"
        if server.healthy():
            return None
        time.sleep(poll_s)
    server.stop()
    return f"{name} did not answer on {server.url} within {timeout_s:.0f} s; see {server.log_path}"
