"""Idempotent submits (issue 11): ``POST /v1/jobs`` with an ``Idempotency-Key`` creates and submits one
job per key within 24 h, also when two requests with the key arrive at once."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from receiver.fakes import source_image
from tests.relay_env import API_TOKEN, RelayEnv, relay_env

PARAMS: dict[str, Any] = {"input": {"image_urls": [source_image("lost")]}}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayEnv]:
    with relay_env(tmp_path_factory.mktemp("idempotency")) as running:
        yield running


def _post(env: RelayEnv, key: str | None, params: Mapping[str, Any] = PARAMS) -> httpx.Response:
    headers = {"Authorization": f"Bearer {API_TOKEN}"} | ({"Idempotency-Key": key} if key else {})
    return httpx.post(
        f"{env.relay.url}/v1/jobs", json={"vendor": "apixo", "params": params}, headers=headers, timeout=30
    )


def _submits(env: RelayEnv, image: str) -> int:
    return len([s for s in env.fake.submits("apixo") if image in str(s.body)])


def test_the_same_key_returns_the_original_job_and_submits_once(env: RelayEnv) -> None:
    """A retry with the same key and body: 200, Idempotent-Replayed: true, the same job, one submit."""
    params = {"input": {"image_urls": [source_image("lost-once")]}}
    first = _post(env, "order-1", params)
    again = _post(env, "order-1", params)
    assert first.status_code == 202 and "idempotent-replayed" not in first.headers
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"] and again.json()["idempotency_key"] == "order-1"
    assert _submits(env, source_image("lost-once")) == 1


def test_the_same_key_with_another_body_is_a_422(env: RelayEnv) -> None:
    """Reusing a key for a different request is refused, naming the header, and creates nothing."""
    assert _post(env, "order-2").status_code == 202
    other = _post(env, "order-2", {"input": {"image_urls": [source_image("lost-other")]}})
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["error"]["message"]
    assert _submits(env, source_image("lost-other")) == 0


def test_two_requests_with_one_key_at_once_create_one_job(env: RelayEnv) -> None:
    """Eight concurrent requests with the same key: one job, one vendor submit, the rest replayed."""
    params = {"input": {"image_urls": [source_image("lost-race")]}}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _post(env, "order-race", params), range(8)))
    print("race:", [(a.status_code, a.headers.get("idempotent-replayed")) for a in answers])
    assert len({a.json()["id"] for a in answers}) == 1
    assert sorted(a.status_code for a in answers) == [200] * 7 + [202]
    assert _submits(env, source_image("lost-race")) == 1


@pytest.mark.parametrize("key", [b"", b"x" * 256, b"a b", b"caf\xc3\xa9"])
def test_a_malformed_key_is_a_422(env: RelayEnv, key: bytes) -> None:
    """Empty, over-long, spaced or non-ASCII keys are refused before anything is stored."""
    response = httpx.post(
        f"{env.relay.url}/v1/jobs",
        json={"vendor": "apixo", "params": PARAMS},
        headers=[(b"Authorization", f"Bearer {API_TOKEN}".encode()), (b"Idempotency-Key", key)],
    )
    assert response.status_code == 422 and "Idempotency-Key" in response.text


def test_without_a_key_every_post_is_a_new_job(env: RelayEnv) -> None:
    """No key, no deduplication: two posts, two jobs."""
    ids = {_post(env, None).json()["id"] for _ in range(2)}
    assert len(ids) == 2


def test_a_key_is_free_again_after_24_hours(tmp_path: Path) -> None:
    """Past the 24 h window the key belongs to a new job (the old one keeps its history)."""
    with relay_env(tmp_path) as env:
        first = _post(env, "order-old").json()
        store_url = env.database_url
        assert store_url
        from receiver.database import open_store
        from receiver.settings import load_settings
        from tests.relay_env import TEST_SECRET_KEY

        store = open_store(load_settings(database_url=store_url, secret_key=TEST_SECRET_KEY))
        try:
            with store.transaction() as conn:
                conn.execute(
                    "UPDATE jobs SET created_at = created_at - ? WHERE id = ?", (25 * 3_600_000, first["id"])
                )
        finally:
            store.close()
        second = _post(env, "order-old")
        assert second.status_code == 202 and second.json()["id"] != first["id"]
