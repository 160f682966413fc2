"""The vendor adapters, one module each, all behind :class:`receiver.vendors.base.VendorAdapter`.

The registry finds them itself: every module of this package whose name does not start with ``_`` and
is not ``base`` is a vendor module, and its ``ADAPTER`` is registered under ``ADAPTER.name``.

Adding a vendor
---------------
1. ``receiver/vendors/<name>.py``: the params model and an ``AdapterBase`` subclass (see
   ``apixo.py``) whose docstrings cite the vendor's page, read bodies with ``receiver.vendors._fields``,
   and end with ``ADAPTER: VendorAdapter = <Name>Adapter()``. Set ``params_example``; set
   ``poll_timing`` if the vendor has a status endpoint (the poller and ``RELAY_POLL_AFTER`` pick it up),
   ``cost_field`` if its bodies report a cost, ``callback_lost`` if it says when it gave up calling back.
2. ``receiver/fakes/payloads/<name>/*.json``: the vendor's documented examples, named by kind and state:
   ``submit_*`` / ``response_*`` (2xx submit answers), ``callback_*`` (callback bodies), ``status_*``
   (200 status answers), ``error_<status>`` or ``error_*`` (error answers).

``tests/test_adapter_contract.py`` then runs the shared contract over the new adapter and its payloads
(request fields, job ids, every fixture's state and cost, hostile bodies); its own test module holds only
what is specific to the vendor. The credential and base URL are the settings the adapter names in
``credential_setting`` and ``base_url_setting`` (``"acme_api_key"`` → ``RELAY_ACME_API_KEY``), with
``default_base_url``: :class:`receiver.settings.Settings` reads a name that is not one of its fields from the
environment or ``.env``, so no edit outside the module is needed.
"""

from __future__ import annotations

import importlib
import pkgutil

from dispatch.errors import NotFound
from receiver.vendors.base import VendorAdapter


def discover(paths: list[str] | None = None) -> dict[str, VendorAdapter]:
    """``{adapter.name: adapter}`` for every vendor module of this package, in module name order;
    ``paths`` are the folders to look in (this package's own by default; a module found elsewhere is
    imported as ``receiver.vendors.<name>`` all the same). Raises ``ImportError`` or
    ``AttributeError`` (no ``ADAPTER``) for a broken vendor module."""
    found: dict[str, VendorAdapter] = {}
    search = list(__path__) if paths is None else paths
    saved = list(__path__)
    __path__[:] = search  # so that importlib finds modules in every folder searched
    try:
        infos = sorted(pkgutil.iter_modules(search), key=lambda info: info.name)
        for info in infos:
            if info.name.startswith("_") or info.name == "base":
                continue
            adapter: VendorAdapter = importlib.import_module(f"{__name__}.{info.name}").ADAPTER
            found[adapter.name] = adapter
    finally:
        __path__[:] = saved
    return found


ADAPTERS: dict[str, VendorAdapter] = discover()


def get_adapter(vendor: str) -> VendorAdapter:
    """The adapter for ``vendor`` (``"apixo"``). Raises :class:`NotFound` naming the known vendors."""
    try:
        return ADAPTERS[vendor]
    except KeyError:
        raise NotFound(f"unknown vendor {vendor!r}; known: {', '.join(sorted(ADAPTERS))}") from None


def polled_vendors() -> tuple[str, ...]:
    """The vendors the polling fallback asks about their jobs: those whose adapter has a ``poll_timing``
    (``("apiframe", "apixo", "dreamina", "ltxstudio")``)."""
    return tuple(name for name, adapter in ADAPTERS.items() if adapter.poll_timing is not None)
