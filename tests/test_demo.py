"""The demo command itself, as a newcomer runs it."""

from __future__ import annotations

from click.testing import CliRunner

from receiver.cli import cli


def test_demo_command_succeeds_and_reports_every_vendor() -> None:
    """``upscale-relay demo`` exits 0 and its table names every vendor with verified deliveries."""
    result = CliRunner().invoke(cli, ["demo", "--timeout", "60"])
    assert result.exit_code == 0, result.output
    for label in ("LTX Studio", "Dreamina", "Apiframe", "APIXO", "Artnex", "APIXO (failing)"):
        assert label in result.output
    assert "every event delivered and verified" in result.output
    assert "FAILED" not in result.output
