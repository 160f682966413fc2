"""Every list endpoint pages with ``limit`` and a keyset ``next_cursor`` (issue 11), tested in-process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.inprocess import relay_client


async def _walk(client: httpx.AsyncClient, path: str, limit: int, between: Any = None) -> list[str]:
    """Every id a list returns, page by page; ``between`` runs after the first page (inserts)."""
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        answer = await client.get(path, params=params)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert len(body["data"]) <= limit
        seen += [row["id"] for row in body["data"]]
        if between is not None and cursor is None:
            await between()
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


def test_subscribers_and_sources_page_oldest_first_without_gaps(tmp_path: Path) -> None:
    """Seven subscribers in pages of two: all seven once, in the list's order; the last page says no more."""

    async def main() -> None:
        async with relay_client(tmp_path) as client:
            made = []
            for n in range(7):
                r = await client.post("/v1/subscribers", json={"url": f"https://hooks.example.com/{n}"})
                made.append(r.json()["id"])
            full = [
                s["id"] for s in (await client.get("/v1/subscribers", params={"limit": 500})).json()["data"]
            ]
            walked = await _walk(client, "/v1/subscribers", 2)
            assert walked == full and sorted(walked) == sorted(made)
            sources = [
                (await client.post("/v1/sources", json={"vendor": "apixo"})).json()["id"] for _ in range(3)
            ]
            assert sorted(await _walk(client, "/v1/sources", 2)) == sorted(sources)

    asyncio.run(main())


def test_newest_first_lists_are_stable_under_inserts(tmp_path: Path) -> None:
    """Jobs created (through a source) while a client pages do not shift or repeat the pages it reads."""

    async def main() -> None:
        async with relay_client(tmp_path) as client:
            source = (await client.post("/v1/sources", json={"vendor": "apixo"})).json()
            token_path = source["callback_url"].split("/v1/", 1)[1]

            async def callback(n: int) -> None:
                body = {"code": 200, "data": {"taskId": f"task_{n}", "state": "processing"}}
                r = await client.post(f"/v1/{token_path}", json=body)
                assert r.status_code == 200, r.text

            for n in range(9):
                await callback(n)
            before = [j["id"] for j in (await client.get("/v1/jobs", params={"limit": 500})).json()["data"]]

            async def insert_more() -> None:
                for n in range(100, 104):
                    await callback(n)

            walked = await _walk(client, "/v1/jobs", 4, between=insert_more)
            assert walked == before  # the newer jobs sort before the cursor: never seen, nothing repeated
            for path in ("/v1/inbound", "/v1/events", "/v1/deliveries"):
                ids = await _walk(client, path, 3)
                assert len(ids) == len(set(ids))

    asyncio.run(main())


@pytest.mark.parametrize("cursor", ["nope", "", "MTo", "x" * 300, "\u00e9"])
def test_a_cursor_the_relay_did_not_return_is_a_422(tmp_path: Path, cursor: str) -> None:
    """A forged or damaged cursor is refused with the error envelope, not a 500 or an empty page."""

    async def main() -> None:
        async with relay_client(tmp_path) as client:
            for path in ("/v1/jobs", "/v1/subscribers", "/v1/inbound"):
                r = await client.get(path, params={"cursor": cursor})
                assert r.status_code == 422 and r.json()["error"]["message"].startswith("cursor:"), r.text

    asyncio.run(main())
