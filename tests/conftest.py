"""Shared test setup.

Two cores run the suite (pytest-xdist may run two workers): one torch thread per worker
avoids oversubscribing them.
"""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture
def fixtures_dir() -> str:
    """Directory of small files the tests share (tiny search spaces and the like)."""
    return FIXTURES
