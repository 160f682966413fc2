"""Configuration from the environment: sane defaults, and a clear error naming each bad variable."""

from __future__ import annotations

import pytest

from dispatch.errors import ValidationFailed
from receiver.settings import load_settings


def test_defaults_match_the_design() -> None:
    """With nothing set, the defaults are the ones DESIGN.md documents."""
    s = load_settings()
    assert s.database_url == "sqlite:///relay.db" and s.public_url == "http://127.0.0.1:8000"
    assert s.retry_schedule == (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    assert s.allow_private_targets is False and s.max_body_bytes == 1_048_576


def test_environment_is_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """RELAY_ variables, JSON for lists and objects, override the defaults."""
    monkeypatch.setenv("RELAY_PUBLIC_URL", "https://relay.example.com/")
    monkeypatch.setenv("RELAY_RETRY_SCHEDULE", "[1, 2]")
    monkeypatch.setenv("RELAY_POLL_AFTER", '{"apixo": 15}')
    s = load_settings()
    assert s.public_url == "https://relay.example.com"
    assert s.retry_schedule == (1, 2) and s.poll_after == {"apixo": 15}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RELAY_MAX_BODY_BYTES", "lots"),
        ("RELAY_MAX_BODY_BYTES", "10"),
        ("RELAY_PUBLIC_URL", "ftp://relay"),
        ("RELAY_DATABASE_URL", "mysql://db"),
        ("RELAY_RETRY_SCHEDULE", "[-1]"),
        ("RELAY_RETRY_SCHEDULE", "not json"),
        ("RELAY_POLL_AFTER", '{"nope": 1}'),
        ("RELAY_POLL_EVERY", '{"apixo": 0}'),
        ("RELAY_RETRY_JITTER", "2"),
        ("RELAY_DELIVERY_TIMEOUT", "-1"),
        ("RELAY_SHUTDOWN_GRACE", "-0.5"),
        ("RELAY_DB_BUSY_TIMEOUT", "soon"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    """A malformed or out-of-range value fails with a message that names its variable."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationFailed) as caught:
        load_settings()
    assert variable in caught.value.message
