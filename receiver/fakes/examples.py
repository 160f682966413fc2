"""The vendor payload examples the fakes and the tests share, shipped with the package.

Files live in ``receiver/fakes/payloads/<vendor>/<name>.json``; they are the examples from
VENDORS.md (and the shared vendor pages), one file per vendor message kind and state.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PAYLOADS", "payload", "payload_names"]

PAYLOADS = Path(__file__).parent / "payloads"


def payload(vendor: str, name: str) -> bytes:
    """The raw bytes of ``payloads/<vendor>/<name>.json``.

    Example: ``payload("apixo", "callback_success")``. Raises ``FileNotFoundError`` if absent.
    """
    return (PAYLOADS / vendor / f"{name}.json").read_bytes()


def payload_names(vendor: str) -> list[str]:
    """Every payload name stored for ``vendor``, sorted (``["callback_failed", ...]``)."""
    return sorted(p.stem for p in (PAYLOADS / vendor).glob("*.json"))
