"""The vendor adapters, one module each, all behind :class:`receiver.vendors.base.VendorAdapter`."""

from __future__ import annotations

from dispatch.errors import NotFound
from receiver.vendors import apiframe, apixo, artnex, dreamina, ltxstudio
from receiver.vendors.base import VendorAdapter

ADAPTERS: dict[str, VendorAdapter] = {
    module.ADAPTER.name: module.ADAPTER for module in (ltxstudio, dreamina, apiframe, apixo, artnex)
}


def get_adapter(vendor: str) -> VendorAdapter:
    """The adapter for ``vendor`` (``"apixo"``). Raises :class:`NotFound` naming the known vendors."""
    try:
        return ADAPTERS[vendor]
    except KeyError:
        raise NotFound(f"unknown vendor {vendor!r}; known: {', '.join(sorted(ADAPTERS))}") from None
