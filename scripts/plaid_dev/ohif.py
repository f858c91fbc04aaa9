"""Serve the OHIF viewer (the production build inside the `@ohif/app` npm package) next to Orthanc.

`ensure_ohif` extracts ``dist/`` from the package tarball fetched with ``npm pack`` (no ``npm install``)
into ``~/.cache/plaid/ohif/<version>`` (or ``$PLAID_OHIF_CACHE``), outside the checkout, once.
`start_ohif` serves it on 127.0.0.1 with PLAID's ``app-config.js`` (`plaid_dev.ohif_config`), whose DICOMweb
data source is this same origin: ``/dicom-web`` and ``/wado`` are proxied to Orthanc, which adds the PACS credentials
server-side, so the browser needs neither CORS nor the password.
"""

from __future__ import annotations

import base64
import logging
import mimetypes
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from plaid_dev.ohif_config import OHIF_VERSION, app_config_js
from plaid_dev.serving import free_port

logger = logging.getLogger(__name__)

OHIF_PACKAGE = "@ohif/app"
PROXIED_PREFIXES = ("/dicom-web", "/wado")
FORWARDED_REQUEST_HEADERS = ("Accept", "Content-Type", "Range")
FORWARDED_RESPONSE_HEADERS = ("Content-Type", "Content-Range", "Accept-Ranges")
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")


class OhifUnavailable(RuntimeError):
    """The OHIF build is not cached and cannot be fetched (offline, or npm missing)."""


def ohif_cache(version: str = OHIF_VERSION) -> Path:
    """The folder holding ``dist/`` of one OHIF version."""
    root = os.environ.get("PLAID_OHIF_CACHE") or Path.home() / ".cache" / "plaid" / "ohif"
    return Path(root) / version


def ensure_ohif(version: str = OHIF_VERSION, offline: bool | None = None) -> Path:
    """The cached OHIF ``dist/`` folder, fetched with ``npm pack`` and extracted first if needed.

    With ``offline`` (default: the PLAID_OFFLINE environment variable) nothing is downloaded and a
    missing build raises `OhifUnavailable` saying how to fetch it.
    """
    cache = ohif_cache(version)
    dist = cache / "dist"
    if (dist / "index.html").is_file():
        return dist
    offline = os.environ.get("PLAID_OFFLINE", "") not in ("", "0") if offline is None else offline
    tarballs = sorted(cache.glob("ohif-app-*.tgz"))
    if not tarballs:
        if offline:
            raise OhifUnavailable(f"OHIF {version} is not in {cache} and PLAID_OFFLINE is set; fetch it once with "
                                  f"`cd {cache} && npm pack {OHIF_PACKAGE}@{version}`")
        if not shutil.which("npm"):
            raise OhifUnavailable("npm is not installed; it is needed once to fetch the OHIF build")
        cache.mkdir(parents=True, exist_ok=True)
        logger.info("fetching %s@%s with npm pack into %s", OHIF_PACKAGE, version, cache)
        # npm lists every file of the tarball as an `npm notice` line (about 250): keep them out of the output
        fetched = subprocess.run(["npm", "pack", f"{OHIF_PACKAGE}@{version}", "--pack-destination", str(cache),
                                  "--loglevel=error"], cwd=cache, capture_output=True, text=True)
        if fetched.returncode != 0:
            raise OhifUnavailable(f"`npm pack {OHIF_PACKAGE}@{version}` failed ({fetched.returncode}): "
                                  f"{fetched.stderr.strip()[-2000:]}")
        tarballs = sorted(cache.glob("ohif-app-*.tgz"))
    with tempfile.TemporaryDirectory(dir=cache) as folder, tarfile.open(tarballs[-1]) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith("package/dist/") and (m.isfile() or m.isdir())]
        archive.extractall(folder, members=members, filter="data")
        shutil.rmtree(dist, ignore_errors=True)
        os.replace(Path(folder) / "package" / "dist", dist)
    return dist


@dataclass
class OhifServer:
    """A running OHIF + DICOMweb proxy server."""

    httpd: ThreadingHTTPServer
    thread: threading.Thread
    url: str

    def viewer_url(self, study_uid: str, initial_series_uid: str | None = None) -> str:
        """The address that opens one study (optionally with a series, e.g. a SEG, in the first viewport)."""
        url = f"{self.url}/viewer?StudyInstanceUIDs={study_uid}"
        return f"{url}&initialSeriesInstanceUID={initial_series_uid}" if initial_series_uid else url

    def stop(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)

    def __enter__(self) -> OhifServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_ohif(orthanc_url: str, credentials: tuple[str, str] | None = None, dist: str | Path | None = None,
               host: str = "127.0.0.1", port: int | None = None) -> OhifServer:
    """Serve OHIF from ``dist`` (default: `ensure_ohif`) and proxy DICOMweb to ``orthanc_url`` in a thread."""
    dist = Path(dist or ensure_ohif())
    config = app_config_js().encode()
    authorization = ("Basic " + base64.b64encode(":".join(credentials).encode()).decode()) if credentials else None
    handler = type("OhifHandler", (_OhifHandler,), {"dist": dist, "config": config,
                                                    "upstream": orthanc_url.rstrip("/"),
                                                    "authorization": authorization})
    httpd = ThreadingHTTPServer((host, port or free_port(host)), handler)
    thread = threading.Thread(target=httpd.serve_forever, name="ohif", daemon=True)
    thread.start()
    url = f"http://{host}:{httpd.server_address[1]}"
    logger.info("OHIF %s on %s (DICOMweb proxied to %s)", OHIF_VERSION, url, orthanc_url)
    return OhifServer(httpd=httpd, thread=thread, url=url)


class _OhifHandler(BaseHTTPRequestHandler):
    """Static OHIF files (single-page app: unknown paths get index.html) and the DICOMweb proxy."""

    dist: Path
    config: bytes
    upstream: str
    authorization: str | None
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        logger.debug("ohif: " + format, *args)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.startswith(PROXIED_PREFIXES):
            self._proxy()
        else:
            self._static()

    def do_POST(self) -> None:  # noqa: N802
        if self.path.startswith(PROXIED_PREFIXES):
            self._proxy()
        else:
            self._send(405, b"method not allowed", "text/plain")

    def _static(self) -> None:
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if path == "/app-config.js":
            self._send(200, self.config, "text/javascript")
            return
        file = (self.dist / path.lstrip("/")).resolve()
        if not file.is_relative_to(self.dist.resolve()) or not file.is_file():
            file = self.dist / "index.html"
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        self._send(200, file.read_bytes(), kind)

    def _proxy(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {key: self.headers[key] for key in FORWARDED_REQUEST_HEADERS if self.headers.get(key)}
        headers["Host"] = self.headers.get("Host", "")
        headers["Expect"] = ""
        if self.authorization:
            headers["Authorization"] = self.authorization
        request = urllib.request.Request(self.upstream + self.path, data=body, method=self.command, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                status, content, answer_headers = response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            status, content, answer_headers = exc.code, exc.read(), exc.headers
        except (urllib.error.URLError, OSError) as exc:
            self._send(502, f"PACS unreachable: {exc}".encode(), "text/plain")
            return
        extra = {key: answer_headers[key] for key in FORWARDED_RESPONSE_HEADERS[1:] if answer_headers.get(key)}
        self._send(status, content, answer_headers.get("Content-Type", "application/octet-stream"), extra)

    def _send(self, status: int, content: bytes, kind: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(content)
