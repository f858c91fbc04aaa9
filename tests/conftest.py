"""Shared fixtures: small synthetic images written to temporary folders."""

from __future__ import annotations

import logging

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator so every test is repeatable."""
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _quiet_third_party_logs() -> None:
    logging.getLogger("PIL").setLevel(logging.WARNING)
