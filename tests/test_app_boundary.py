"""The app's server boundary: bind-address warning and path-free error messages."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from monailabel.interfaces.exception import ImageNotFoundException

from plaid.errors import CheckpointError, ImageReadError, ModelNotFoundError

APP_DIR = Path(__file__).resolve().parents[1] / "apps" / "plaid"
if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))

from lib.server.errors import UnknownTaskError, detail_for, status_for  # noqa: E402
from lib.server.startup import served_host, warn_if_exposed  # noqa: E402


@pytest.mark.parametrize(("argv", "host"), [
    (["monailabel", "start_server", "--app", "a", "--studies", "s"], "0.0.0.0"),
    (["monailabel", "start_server", "--host", "127.0.0.1"], "127.0.0.1"),
    (["monailabel", "start_server", "-i", "10.1.2.3"], "10.1.2.3"),
    (["monailabel", "start_server", "--host=::"], "::"),
    (["python", "-m", "monailabel.interfaces.utils.app", "-m", "train"], None),
])
def test_served_host_reads_the_start_server_command_line(argv: list[str], host: str | None) -> None:
    assert served_host(argv) == host


def test_listening_beyond_loopback_without_auth_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lib.server.startup"):
        assert warn_if_exposed("0.0.0.0", auth_enabled=False)
        assert not warn_if_exposed("0.0.0.0", auth_enabled=True)
        assert not warn_if_exposed("127.0.0.1", auth_enabled=False)
        assert not warn_if_exposed("::1", auth_enabled=False)
        assert not warn_if_exposed("localhost", auth_enabled=False)
    assert len(caplog.records) == 1
    assert "0.0.0.0 WITHOUT authentication" in caplog.records[0].getMessage()


def test_errors_map_to_4xx_and_never_carry_server_paths() -> None:
    unreadable = ImageReadError("cannot decode image", "/srv/plaid/studies/case1.png")
    assert status_for(unreadable) == 422 and detail_for(unreadable) == "case1.png: cannot decode image"
    assert status_for(ModelNotFoundError("none")) == 409
    assert status_for(CheckpointError("bad")) == 409
    assert status_for(ImageNotFoundException("Image x not found")) == 404
    unknown = UnknownTaskError("model", "x", ["calcification"])
    assert status_for(unknown) == 404 and "available: calcification" in detail_for(unknown)
    assert detail_for(ValueError("failed at /home/user/model/run-1/best.pt, see C:\\data\\x.log")) == (
        "failed at best.pt, see x.log")
    assert status_for(ValueError("unexpected")) == 500


def test_subprocesses_import_this_checkouts_code() -> None:
    """Issue 8 'wrong code under test': a child `python` sees this checkout's lib/ first, whatever the venv's
    editable install points at."""
    import subprocess

    checkout_lib = Path(__file__).resolve().parents[1] / "lib"
    found = subprocess.run([sys.executable, "-c", "import plaid; print(plaid.__file__)"], capture_output=True,
                           text=True, check=True, timeout=120).stdout.strip()
    assert Path(found).resolve().is_relative_to(checkout_lib)
