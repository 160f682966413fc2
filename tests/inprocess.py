"""The relay app in-process for API tests: ``create_app(settings)`` on a real SQLite file, its lifespan
run, requests sent through ``httpx.ASGITransport`` (no sockets, no threads: fast and deterministic)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from starlette.types import Receive, Scope, Send

from receiver.app import create_app
from receiver.settings import Settings
from tests.relay_env import API_TOKEN, TEST_SECRET_KEY


@asynccontextmanager
async def relay_client(tmp_path: Path, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An ``httpx.AsyncClient`` talking to a fresh relay app (admin token set), lifespan included."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'relay.db'}",
        api_token=SecretStr(API_TOKEN),
        secret_key=SecretStr(TEST_SECRET_KEY),
        allow_private_targets=True,
        **overrides,
    )
    app = create_app(settings, run_worker=False)
    async with app.router.lifespan_context(app) as state:

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            # what a server does with the lifespan's state: hand a copy to every request
            await app({**scope, "state": dict(state or {})}, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://relay.test", headers=headers
        ) as client:
            yield client
