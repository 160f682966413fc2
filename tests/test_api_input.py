"""Hostile and malformed input on every admin API path that takes a body or query: a clear 4xx with
the relay's error envelope, never a 500, and nothing stored or sent because of it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from dispatch.model import event_id
from fixtures.harness import wait_until
from receiver.fakes import SOURCE_IMAGE
from tests.databases import query
from tests.relay_env import RelayEnv, relay_env

TABLES = ("jobs", "sources", "subscribers", "events", "deliveries", "inbound")

BAD_BODIES: dict[str, bytes] = {
    "not-json": b"{not json",
    "not-utf8": b'{"url": "\xff\xfe"}',
    "array": b"[]",
    "string": b'"hello"',
    "null": b"null",
    "number": b"42",
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "unknown-field": b'{"surprise": true}',
    "wrong-types": b'{"url": 1, "vendor": [], "params": "x", "since": {}, "enabled": "yes", "subscriber_id": 7}',
    "nul-bytes": b'{"url": "https://example.com/\\u0000", "vendor": "\\u0000"}',
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayEnv]:
    with relay_env(tmp_path_factory.mktemp("api-input")) as running:
        yield running


@pytest.fixture(scope="module")
def ids(env: RelayEnv) -> dict[str, str]:
    """A subscriber and a delivered event, so the per-id paths exist."""
    sub = env.subscribe()
    job = env.submit("artnex", {"image": SOURCE_IMAGE})
    eid = event_id(job["id"], "job.succeeded")
    wait_until(lambda: eid in env.sub_log.by_event_id(), message="seed event not delivered")
    return {"sub": sub["id"], "event": eid}


def _counts(database_url: str) -> dict[str, int]:
    return {t: query(database_url, f"SELECT COUNT(*) FROM {t}")[0][0] for t in TABLES}


WRITES = [
    ("POST", "/v1/jobs"),
    ("POST", "/v1/sources"),
    ("POST", "/v1/subscribers"),
    ("PATCH", "/v1/subscribers/{sub}"),
    ("POST", "/v1/subscribers/{sub}/recover"),
    ("POST", "/v1/events/{event}/replay"),
]


@pytest.mark.parametrize(("method", "path"), WRITES, ids=[f"{m} {p}" for m, p in WRITES])
@pytest.mark.parametrize("body", list(BAD_BODIES.values()), ids=list(BAD_BODIES))
def test_bad_bodies_get_422_and_change_nothing(
    env: RelayEnv, ids: dict[str, str], method: str, path: str, body: bytes
) -> None:
    """Every malformed body is a 422 ``validation_failed`` with a message; no row appears, no vendor
    is called, no delivery is made."""
    before = (_counts(env.database_url), len(env.fake.submits()), env.sub_log.count())
    response = env.client.request(
        method, path.format(**ids), content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text[:500]
    error = response.json()["error"]
    assert error["code"] == "validation_failed" and error["message"]
    assert (_counts(env.database_url), len(env.fake.submits()), env.sub_log.count()) == before


QUERIES = [
    ("/v1/jobs", {"limit": "-1"}),
    ("/v1/jobs", {"limit": "9" * 40}),
    ("/v1/jobs", {"limit": "1e3"}),
    ("/v1/events", {"since": "yesterday"}),
    ("/v1/events", {"since": "2026-13-45T99:00:00Z"}),
    ("/v1/deliveries", {"limit": "0"}),
    ("/v1/deliveries", {"status": "exploded"}),
    ("/v1/inbound", {"limit": "abc"}),
    ("/v1/inbound", {"vendor": "midjourney"}),
    ("/v1/jobs", {"status": "done"}),
    ("/v1/jobs", {"vendor": "LTX"}),
    ("/v1/events", {"type": "job.completed"}),
]


@pytest.mark.parametrize(("path", "params"), QUERIES, ids=[f"{p} {q}" for p, q in QUERIES])
def test_bad_query_parameters_get_422(env: RelayEnv, path: str, params: dict[str, str]) -> None:
    """An out-of-range or unparseable query parameter is a 422 naming it."""
    response = env.client.get(path, params=params)
    assert response.status_code == 422, response.text[:500]
    assert next(iter(params)) in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs/nope",
        "/v1/events/' OR 1=1 --",
        "/v1/deliveries/%00",
        "/v1/subscribers/" + "x" * 5000,
        "/v1/inbound/-1",
        "/v1/sources/../../etc/passwd",
    ],
)
def test_unknown_or_hostile_ids_are_404(env: RelayEnv, path: str) -> None:
    """Ids that name nothing, including injection-shaped and oversized ones, are a plain 404."""
    response = env.client.get(path)
    assert response.status_code == 404, response.text[:500]


def test_retry_and_rotate_on_missing_ids_are_404(env: RelayEnv) -> None:
    """Action paths on ids that do not exist answer 404 and store nothing."""
    before = _counts(env.database_url)
    for path in (
        "/v1/deliveries/dlv_missing/retry",
        "/v1/subscribers/sub_missing/rotate-secret",
        "/v1/events/evt_missing/replay",
        "/v1/inbound/999999/reprocess",
    ):
        response = env.client.post(path, json={})
        assert response.status_code == 404, (path, response.text[:300])
        assert response.json()["error"]["code"] == "not_found"
    assert _counts(env.database_url) == before


def test_wrong_method_is_405_not_500(env: RelayEnv) -> None:
    """An unsupported method on a known path is 405."""
    assert env.client.put("/v1/jobs", json={}).status_code == 405
    assert httpx.delete(f"{env.relay.url}/v1/callbacks/apixo/token").status_code == 405
