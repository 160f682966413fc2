"""Shared fixtures: a real SQLite store on a temporary file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from dispatch.secretbox import SecretBox
from dispatch.store.sqlite import SQLiteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore.open(tmp_path / "relay.db", SecretBox(Fernet.generate_key()))
    yield s
    s.close()
