"""The README stays true to the code: every setting and every CLI command is documented."""

from __future__ import annotations

from pathlib import Path

import click

from receiver.cli import cli
from receiver.settings import Settings

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    """Each RELAY_ variable the settings read appears in the README's configuration table."""
    missing = [
        f"RELAY_{name.upper()}" for name in Settings.model_fields if f"RELAY_{name.upper()}" not in README
    ]
    assert missing == []


def test_every_cli_command_is_in_the_readme() -> None:
    """Each CLI command path (e.g. 'subscribers recover') appears in the README."""

    def paths(command: click.Command, prefix: str) -> list[str]:
        if not isinstance(command, click.Group):
            return [prefix]
        return [p for name, sub in command.commands.items() for p in paths(sub, f"{prefix} {name}".strip())]

    missing = [p for p in paths(cli, "") if p not in README]
    assert missing == []


def test_readme_opens_with_the_two_setup_commands() -> None:
    """The first two code blocks install and run the demo, then install and run the tests."""
    blocks = README.split("```bash\n")[1:3]
    assert "upscale-relay demo" in blocks[0] and "pip install" in blocks[0]
    assert "pytest" in blocks[1] and "pip install" in blocks[1]
