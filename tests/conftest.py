"""Shared fixtures: a seeded generator, quiet third-party logs, and MONAI Label's client for a module's server."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from monailabel.client import MONAILabelClient

CHECKOUT_LIB = Path(__file__).resolve().parents[1] / "lib"


if TYPE_CHECKING:  # the skip-policy test runs this file where only the installed packages import
    from plaid_dev.serving import LabelServer


def pytest_configure(config: pytest.Config) -> None:
    """Make every subprocess a test starts import this checkout's code, and never download anything.

    The shared virtual environment's editable install may point at another checkout; a PYTHONPATH entry
    for this checkout's ``lib`` wins over it in every child process (CLI runs, MONAI Label servers).
    """
    entries = [str(CHECKOUT_LIB), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(entries))
    os.environ.setdefault("PLAID_OFFLINE", "1")
    # Timing every inference runtime at each model load would dominate the suite's run time; the
    # measured choice has its own tests (tests/test_runtime_backends.py).
    os.environ.setdefault("PLAID_RUNTIME", "torch-fp32")
    # Runtime choices measured by tests are remembered in a throwaway folder, never in the user's cache.
    os.environ["PLAID_CACHE_DIR"] = tempfile.mkdtemp(prefix="plaid-test-cache-")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the throwaway cache folder `pytest_configure` made."""
    shutil.rmtree(os.environ.get("PLAID_CACHE_DIR", ""), ignore_errors=True)


_SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Note every skipped test (expected failures are not skips)."""
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPPED.append(report.nodeid)


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true a skipped test fails the run: CI must run every test (`make test` provisions what they need)."""
    if _ci() and _SKIPPED and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name the skipped tests that failed a CI run."""
    if _ci() and _SKIPPED:
        terminalreporter.section("skipped tests fail the run under CI=true", red=True)
        for nodeid in _SKIPPED:
            terminalreporter.line(f"SKIPPED (not allowed in CI): {nodeid}", red=True)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator so every test is repeatable."""
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _quiet_third_party_logs() -> None:
    logging.getLogger("PIL").setLevel(logging.WARNING)


@pytest.fixture(scope="module")
def provider() -> Iterator[Any]:
    """A loopback OpenID Connect provider holding the site's accounts (`oidc_provider`), for servers with login."""
    from oidc_provider import OidcProvider, site_accounts  # only the login tests need it (and ship it)

    oidc = OidcProvider(accounts=site_accounts())
    server = oidc.start()
    yield oidc
    server.shutdown()


@pytest.fixture(scope="module")
def client(server: LabelServer) -> MONAILabelClient:
    """MONAI Label's Python client for the requesting module's ``server`` fixture (downloads beside its log)."""
    return MONAILabelClient(server.url, tmpdir=str(server.log_path.parent))
