"""What the wheel ships: only ``receiver`` and ``dispatch``, with everything the demo needs at run time."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from receiver.fakes.examples import PAYLOADS, payload_names

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PRODUCT = ("receiver", "dispatch")


def test_only_the_product_packages_are_installed() -> None:
    """No top-level ``fixtures`` (a well-known PyPI name) or ``tests`` package goes into the wheel."""
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["receiver*", "dispatch*"]


def test_product_code_imports_no_test_helpers() -> None:
    """Nothing under receiver/ or dispatch/ imports ``fixtures``, ``tests`` or ``bench``: an installed
    relay has none of them."""
    offending: list[str] = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                offending += [
                    f"{path.relative_to(ROOT)}:{node.lineno} {name}"
                    for name in names
                    if name.split(".")[0] in ("fixtures", "tests", "bench")
                ]
    assert offending == []


def test_package_data_covers_payloads_and_type_markers() -> None:
    """The payload examples and both ``py.typed`` markers exist and are declared as package data."""
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    assert data["receiver.fakes"] == ["payloads/*/*.json"]
    assert PAYLOADS == ROOT / "receiver" / "fakes" / "payloads"
    for vendor in ("apiframe", "apixo", "artnex", "dreamina", "ltxstudio"):
        assert payload_names(vendor), vendor
    for package in PRODUCT:
        assert "py.typed" in data[package]
        assert (ROOT / package / "py.typed").is_file()


def test_license_is_declared_and_shipped() -> None:
    """Apache-2.0 as an SPDX expression, with the full licence text in LICENSE."""
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_the_demo_verifies_with_the_reference_library() -> None:
    """The demo's subscriber checks signatures with ``standardwebhooks``, a runtime dependency, not
    with the relay's own signing code."""
    source = (ROOT / "receiver" / "demo.py").read_text()
    assert "from standardwebhooks.webhooks import Webhook" in source
    assert "dispatch.signing" not in source
    assert any(dep.startswith("standardwebhooks") for dep in PYPROJECT["project"]["dependencies"])
