"""Shared pytest fixtures: the ``../shared`` folder (tests that need it skip when it is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BSAFUSION_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent")
    return SHARED


@pytest.fixture(scope="session")
def reference_fixture(shared_dir: Path) -> Path:
    path = shared_dir / "reference" / "fixture"
    if not (path / "expected.npz").is_file():
        pytest.skip(f"{path} has no expected.npz")
    return path
