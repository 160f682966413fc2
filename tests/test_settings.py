"""Configuration from the environment: sane defaults, and a clear error naming each bad variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from dispatch.errors import ValidationFailed
from receiver.settings import load_settings
from receiver.startup import startup_summary


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


def test_an_unknown_relay_variable_stops_the_start_with_a_suggestion(monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt RELAY_APIXO_APIKEY is an error naming the variable it probably meant, not ignored."""
    monkeypatch.setenv("RELAY_APIXO_APIKEY", "k")
    with pytest.raises(ValidationFailed) as caught:
        load_settings()
    assert "RELAY_APIXO_APIKEY is not a setting (did you mean RELAY_APIXO_API_KEY?)" in caught.value.message
    monkeypatch.delenv("RELAY_APIXO_APIKEY")
    monkeypatch.setenv("RELAY_ZZZ_NOTHING_LIKE_IT", "1")
    with pytest.raises(ValidationFailed, match="not a setting"):
        load_settings()


def test_a_dotenv_file_in_the_working_directory_is_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """RELAY_ variables in ./.env are settings (the environment still wins), and typos there are caught."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("RELAY_PUBLIC_URL=https://relay.example.com\nRELAY_RETRY_JITTER=0.5\n")
    monkeypatch.setenv("RELAY_RETRY_JITTER", "0.1")
    s = load_settings()
    assert s.public_url == "https://relay.example.com" and s.retry_jitter == 0.1
    (tmp_path / ".env").write_text("RELAY_PUBLIK_URL=https://relay.example.com\n")
    with pytest.raises(ValidationFailed, match="did you mean RELAY_PUBLIC_URL"):
        load_settings()


def test_errors_name_the_flag_and_never_say_value_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad value from a CLI flag names the flag; pydantic's "Value error," prefix never shows."""
    with pytest.raises(ValidationFailed) as caught:
        load_settings(flags={"database_url": "--database"}, database_url="mysql://db")
    assert caught.value.message.startswith("invalid configuration: --database: must be sqlite:///")
    monkeypatch.setenv("RELAY_PUBLIC_URL", "ftp://x")
    with pytest.raises(ValidationFailed) as caught:
        load_settings()
    assert "Value error" not in caught.value.message and "RELAY_PUBLIC_URL" in caught.value.message


@pytest.mark.parametrize("value", ["[-1]", "not json"])
def test_retry_schedule_errors_show_an_example(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """RELAY_RETRY_SCHEDULE mistakes come with a working example."""
    monkeypatch.setenv("RELAY_RETRY_SCHEDULE", value)
    with pytest.raises(ValidationFailed, match=r"RELAY_RETRY_SCHEDULE=\[5, 300, 1800\]"):
        load_settings()


def test_startup_summary_says_what_serve_runs_with_and_warns_about_the_port() -> None:
    """serve's summary names the database (without a password), public URL, vendors configured and not,
    the worker, and warns when a loopback public URL points at another port than the one served."""
    s = load_settings(
        database_url="postgresql://relay:hunter2@db:5432/relay", apixo_api_key=SecretStr("k"), secret_key=None
    )
    lines = startup_summary(s, port=8005, worker=False)
    text = "\n".join(lines)
    assert "database: postgresql://relay:***@db:5432/relay" in text and "hunter2" not in text
    assert "vendors configured: apixo" in text and "artnex (set RELAY_ARTNEX_API_KEY)" in text
    assert "delivery worker: off" in text
    assert "serve listens on port 8005: vendors would call back to port 8000" in text
    assert not [line for line in startup_summary(s, port=8000, worker=True) if "listens on port" in line]
