"""The admin API in-process (issue 11, "tests in the middle"): auth, limits and the schema through
``httpx.ASGITransport`` against ``create_app(settings)`` on a real SQLite file — no sockets. What needs
sockets (callbacks from fake vendors, deliveries, processes) stays in the real-server tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.inprocess import relay_client


def test_auth_is_required_everywhere_but_the_public_paths(tmp_path: Path) -> None:
    """/v1 needs the bearer token (401 with the error envelope otherwise); health and the schema do not."""

    async def main() -> None:
        async with relay_client(tmp_path) as client:
            for path in ("/v1/jobs", "/v1/subscribers", "/v1/events", "/v1/inbound", "/v1/deliveries"):
                bare = await client.get(path, headers={"Authorization": ""})
                wrong = await client.get(path, headers={"Authorization": "Bearer nope"})
                assert bare.status_code == wrong.status_code == 401, path
                assert wrong.json()["error"]["code"] == "unauthorized"
                assert (await client.get(path)).status_code == 200
            for path in ("/healthz", "/readyz", "/openapi.json"):
                assert (await client.get(path, headers={"Authorization": ""})).status_code == 200, path

    asyncio.run(main())


def test_limits_are_clear_errors(tmp_path: Path) -> None:
    """An admin body over RELAY_MAX_API_BODY_BYTES is a 413, too many headers a 431, a bad limit a 422."""

    async def main() -> None:
        async with relay_client(tmp_path, max_api_body_bytes=2048, max_headers=20) as client:
            big = await client.post("/v1/subscribers", content=b"{" + b" " * 4096 + b"}")
            assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"
            flood = await client.get("/v1/jobs", headers={f"x-h{n}": "v" for n in range(30)})
            assert flood.status_code == 431
            assert (await client.get("/v1/jobs", params={"limit": 501})).status_code == 422
            assert (await client.get("/v1/jobs", params={"limit": "\u00b2"})).status_code == 422

    asyncio.run(main())


def test_every_answer_matches_the_published_schema(tmp_path: Path) -> None:
    """Answers of the list and create routes have exactly the fields /openapi.json promises."""

    async def main() -> None:
        async with relay_client(tmp_path) as client:
            spec = (await client.get("/openapi.json")).json()
            assert spec["openapi"].startswith("3.1")
            created = await client.post("/v1/subscribers", json={"url": "https://hooks.example.com/x"})
            assert created.status_code == 201 and created.json()["secret"].startswith("whsec_")
            listed = (await client.get("/v1/subscribers")).json()
            assert set(listed) == {"data", "next_cursor"} and listed["data"][0]["id"] == created.json()["id"]
            assert "secret" not in listed["data"][0]
            paths = spec["paths"]
            assert "/v1/subscribers" in paths and "post" in paths["/v1/subscribers"]
            assert "201" in paths["/v1/subscribers"]["post"]["responses"]

    asyncio.run(main())


def test_the_transport_never_opens_a_socket(tmp_path: Path) -> None:
    """The harness is in-process: its client uses ASGITransport, not a network transport."""

    async def main() -> None:
        async with relay_client(tmp_path) as client:
            assert isinstance(client._transport, httpx.ASGITransport)

    asyncio.run(main())
