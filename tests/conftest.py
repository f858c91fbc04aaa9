"""Shared fixtures: a seeded generator, quiet third-party logs, and MONAI Label's client for a module's server."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from monailabel.client import MONAILabelClient

from plaid.serving import LabelServer

CHECKOUT_LIB = Path(__file__).resolve().parents[1] / "lib"


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


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator so every test is repeatable."""
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _quiet_third_party_logs() -> None:
    logging.getLogger("PIL").setLevel(logging.WARNING)


@pytest.fixture(scope="module")
def client(server: LabelServer) -> MONAILabelClient:
    """MONAI Label's Python client for the requesting module's ``server`` fixture (downloads beside its log)."""
    return MONAILabelClient(server.url, tmpdir=str(server.log_path.parent))
