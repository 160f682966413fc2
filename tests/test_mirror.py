"""Mirroring end to end (issue 13): fake vendors serving real images, a relay copying them to
``file://`` or to a real S3-compatible server (moto), and a subscriber receiving job.succeeded
with the copy. Runs on Postgres too under ``RELAY_TEST_DATABASE``."""

from __future__ import annotations

import hashlib
import json
import stat
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import obstore
import pytest
from click.testing import CliRunner
from moto.server import ThreadedMotoServer
from obstore.store import LocalStore, S3Store

from dispatch.errors import ValidationFailed
from dispatch.model import event_id, parse_iso
from fixtures.harness import free_port, serve_in_thread, wait_until
from receiver.cli import cli
from receiver.fakes import FakeConfig, ltx_source_job, source_image
from receiver.fakes.subscriber import Delivery
from receiver.mirroring import MirrorTarget, signing_key
from receiver.settings import load_settings
from tests.databases import query
from tests.output_host import OutputHost, plant_outputs
from tests.relay_env import TEST_SECRET_KEY, RelayEnv, relay_env

FAKE = FakeConfig(callback_delay=0.02, apixo_retry_scale=0.001, apixo_allow_http=True, serve_assets=True)
APIXO = {"input": {"image_urls": [source_image()]}}
JOBS: dict[str, dict[str, Any]] = {
    "apixo": APIXO,
    "artnex": {"image": source_image()},
    "ltxstudio": {"jobId": ltx_source_job()},
}


def _file_env(tmp_path: Path, fake: FakeConfig = FAKE, **overrides: Any) -> Any:
    mirror = f"file://{tmp_path / 'mirror'}"
    return relay_env(tmp_path, fake, mirror_url=mirror, mirror_backoff=0.05, **overrides)


def _delivered(env: RelayEnv, job_id: str, count: int = 1) -> Delivery:
    eid = event_id(job_id, "job.succeeded")
    wait_until(
        lambda: len(env.sub_log.by_event_id().get(eid, [])) >= count,
        timeout=15,
        message="job.succeeded not delivered",
    )
    delivery = env.sub_log.by_event_id()[eid][count - 1]
    assert delivery.verified is True, delivery.verify_error
    assert delivery.contract_error is None, delivery.contract_error
    return delivery


def _succeeded_event(env: RelayEnv, job_id: str) -> dict[str, Any]:
    eid = event_id(job_id, "job.succeeded")
    wait_until(lambda: env.client.get(f"/v1/events/{eid}").status_code == 200, timeout=15)
    payload: dict[str, Any] = env.ok(env.client.get(f"/v1/events/{eid}"), 200)["payload"]
    return payload


def _metric(env: RelayEnv, vendor: str, outcome: str) -> float:
    text = env.client.get("/metrics").text
    prefix = f'relay_mirror_total{{outcome="{outcome}",vendor="{vendor}"}} '
    values = [float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix)]
    return values[0] if values else 0.0


@pytest.mark.parametrize("vendor", sorted(JOBS))
def test_file_mirror_copies_each_output_before_job_succeeded(tmp_path: Path, vendor: str) -> None:
    """The delivered job.succeeded carries a mirror whose signed relay URL serves the same bytes,
    size and SHA-256 as the vendor's, with the image's real size and content type."""
    with _file_env(tmp_path) as env:
        env.subscribe()
        job = env.submit(vendor, JOBS[vendor])
        output = _delivered(env, job["id"]).json["data"]["outputs"][0]
        mirror = output["mirror"]
        assert output["mirror_error"] is None
        source = httpx.get(output["url"])
        assert source.status_code == 200
        assert mirror["size_bytes"] == len(source.content)
        assert mirror["sha256"] == hashlib.sha256(source.content).hexdigest()
        assert (output["width"], output["height"]) == (64, 48)  # read from the image itself
        assert output["mime_type"] == source.headers["content-type"]
        served = httpx.get(mirror["url"])  # no token: the URL's signature is the credential
        assert served.status_code == 200, served.text
        assert served.content == source.content
        assert served.headers["content-type"] == source.headers["content-type"]
        expires = parse_iso(mirror["expires_at"])
        assert expires is not None and expires > datetime.now(UTC) + timedelta(days=6)
        assert (tmp_path / "mirror" / job["id"] / "0").read_bytes() == source.content
        assert _metric(env, vendor, "copied") == 1.0


def test_a_file_mirror_is_owner_only(tmp_path: Path) -> None:
    """A file:// mirror's folders are mode 0700 and its files 0600, like the database (issue 19)."""
    with _file_env(tmp_path) as env:
        env.subscribe()
        job_id = env.submit("apixo", APIXO)["id"]
        _delivered(env, job_id)
        root = tmp_path / "mirror"
        modes = {path: stat.S_IMODE(path.stat().st_mode) for path in [root, *root.rglob("*")]}
        assert (root / job_id / "0") in modes
        assert {p: m for p, m in modes.items() if m != (0o700 if p.is_dir() else 0o600)} == {}


def test_output_route_takes_the_token_or_a_valid_signature(tmp_path: Path) -> None:
    """GET /v1/outputs/{job}/{index}: the admin token or a signed URL opens it; no credential, a
    forged signature or an expired one is a 401; an output that does not exist is a 404."""
    with _file_env(tmp_path) as env:
        env.subscribe()
        job_id = env.submit("apixo", APIXO)["id"]
        url = _delivered(env, job_id).json["data"]["outputs"][0]["mirror"]["url"]
        path = f"/v1/outputs/{job_id}/0"
        assert httpx.get(env.relay.url + path).status_code == 401
        assert httpx.get(env.relay.url + path + "?xsig=1").status_code == 401  # no real sig: token needed
        admin = env.client.get(path)
        assert admin.status_code == 200 and admin.headers["content-type"] == "image/jpeg"  # APIXO's default
        assert httpx.get(url).content == admin.content
        forged = url[:-1] + ("0" if url[-1] != "0" else "1")
        assert httpx.get(forged).status_code == 401
        settings = load_settings(
            database_url=env.database_url, secret_key=TEST_SECRET_KEY, mirror_url=f"file://{tmp_path}"
        )
        target = MirrorTarget(
            LocalStore(tmp_path), public_url=env.relay.url, ttl=60, key=signing_key(settings)
        )
        expired, _ = target.url(job_id, 0, now=time.time() - 3600)
        answer = httpx.get(expired)
        assert answer.status_code == 401 and "expired" in answer.json()["error"]["message"]
        fresh, _ = target.url(job_id, 0)
        assert httpx.get(fresh).status_code == 200  # the same key signs what the relay signed
        assert env.client.get(f"/v1/outputs/{job_id}/1").status_code == 404
        assert env.client.get(f"/v1/outputs/{job_id}/x").status_code == 404


def test_an_output_over_the_cap_is_emitted_with_mirror_error(tmp_path: Path) -> None:
    """Over RELAY_MIRROR_MAX_BYTES the copy fails for good: job.succeeded carries mirror null and
    mirror_error too_large, and the outcome is counted."""
    with _file_env(tmp_path, mirror_max_bytes=100) as env:
        env.subscribe()
        job_id = env.submit("apixo", APIXO)["id"]
        output = _delivered(env, job_id).json["data"]["outputs"][0]
        assert output["mirror"] is None
        assert output["mirror_error"]["code"] == "too_large"
        assert "RELAY_MIRROR_MAX_BYTES" in output["mirror_error"]["message"]
        assert _metric(env, "apixo", "too_large") == 1.0
        assert not (tmp_path / "mirror" / job_id / "0").exists()


def test_a_vendor_url_gone_is_retried_until_its_expiry_then_emitted_with_mirror_error(tmp_path: Path) -> None:
    """A result URL answering 404 is retried with backoff until the vendor's stated expiry, then
    job.succeeded is emitted anyway with mirror_error expired."""
    fake = FakeConfig(callback_delay=0.02, apixo_allow_http=True, serve_assets=True, asset_ttl=1.0)
    with _file_env(tmp_path, fake) as env:
        env.subscribe()
        job_id = env.submit("ltxstudio", {"jobId": ltx_source_job("assetgone")})["id"]
        output = _delivered(env, job_id).json["data"]["outputs"][0]
        assert output["mirror"] is None
        assert output["mirror_error"]["code"] == "expired"
        assert _metric(env, "ltxstudio", "retry") >= 1.0
        assert _metric(env, "ltxstudio", "expired") == 1.0


def test_a_vendor_url_on_a_private_address_is_refused(tmp_path: Path) -> None:
    """Without RELAY_ALLOW_PRIVATE_TARGETS the SSRF guard refuses a loopback result URL: the event
    is emitted with mirror_error refused, nothing is stored."""
    with _file_env(tmp_path, allow_private_targets=False) as env:
        job_id = env.submit("apixo", APIXO)["id"]
        output = _succeeded_event(env, job_id)["data"]["outputs"][0]
        assert output["mirror"] is None
        assert output["mirror_error"]["code"] == "refused"
        assert "loopback" in output["mirror_error"]["message"]
        assert not (tmp_path / "mirror" / job_id).exists()


def test_a_replay_after_the_mirror_url_expired_carries_a_fresh_one(tmp_path: Path) -> None:
    """Mirror URLs are signed anew at each delivery attempt: once the first delivery's URL has
    expired, a replay delivers another that works."""
    with _file_env(tmp_path, mirror_url_ttl=3) as env:
        env.subscribe()
        job_id = env.submit("apixo", APIXO)["id"]
        first = _delivered(env, job_id).json["data"]["outputs"][0]["mirror"]
        wait_until(lambda: httpx.get(first["url"]).status_code == 401, timeout=10, interval=0.2)
        env.ok(env.client.post(f"/v1/events/{event_id(job_id, 'job.succeeded')}/replay", json={}), 202)
        second = _delivered(env, job_id, count=2).json["data"]["outputs"][0]["mirror"]
        assert second["url"] != first["url"] and second["expires_at"] > first["expires_at"]
        assert second["sha256"] == first["sha256"]
        assert httpx.get(second["url"]).status_code == 200


def test_the_jobs_api_shows_freshly_signed_mirror_urls(tmp_path: Path) -> None:
    """GET /v1/jobs/{id} and GET /v1/jobs sign each mirror URL when asked: a job whose stored URL has
    expired (set here in the database, an hour old) still shows one that opens."""
    with _file_env(tmp_path) as env:
        env.subscribe()
        job_id = env.submit("apixo", APIXO)["id"]
        _delivered(env, job_id)
        settings = load_settings(
            database_url=env.database_url, secret_key=TEST_SECRET_KEY, mirror_url=f"file://{tmp_path}"
        )
        target = MirrorTarget(
            LocalStore(tmp_path), public_url=env.relay.url, ttl=60, key=signing_key(settings)
        )
        expired, expired_at = target.url(job_id, 0, now=time.time() - 3600)
        ((stored,),) = query(env.database_url, "SELECT outputs FROM jobs WHERE id = ?", (job_id,))
        outputs = json.loads(stored)
        outputs[0]["mirror"].update(url=expired, expires_at=expired_at.isoformat())
        query(env.database_url, "UPDATE jobs SET outputs = ? WHERE id = ?", (json.dumps(outputs), job_id))
        assert httpx.get(expired).status_code == 401
        shown = env.job(job_id)["outputs"][0]["mirror"]
        listed = next(j for j in env.ok(env.client.get("/v1/jobs"), 200)["data"] if j["id"] == job_id)
        for mirror in (shown, listed["outputs"][0]["mirror"]):
            expires = parse_iso(mirror["expires_at"])
            assert mirror["url"] != expired and expires is not None and expires > datetime.now(UTC)
            assert httpx.get(mirror["url"]).status_code == 200


def test_upscale_relay_mirror_copies_again_and_refuses_what_it_cannot(tmp_path: Path) -> None:
    """``upscale-relay mirror JOB_ID`` re-mirrors a succeeded job and prints it; an unknown job and
    mirroring switched off are clear errors."""
    with _file_env(tmp_path) as env:
        env.subscribe()
        job_id = env.submit("apixo", APIXO)["id"]
        before = _delivered(env, job_id).json["data"]["outputs"][0]["mirror"]
        (tmp_path / "mirror" / job_id / "0").unlink()
        cli_env = {
            "RELAY_SECRET_KEY": TEST_SECRET_KEY,
            "RELAY_PUBLIC_URL": env.relay.url,
            "RELAY_ALLOW_PRIVATE_TARGETS": "true",
            "RELAY_MIRROR_URL": f"file://{tmp_path / 'mirror'}",
        }
        result = CliRunner().invoke(cli, ["--database", env.database_url, "mirror", job_id], env=cli_env)
        assert result.exit_code == 0, result.output
        printed = json.loads(result.output)
        assert printed["outputs"][0]["mirror"]["sha256"] == before["sha256"]
        assert (tmp_path / "mirror" / job_id / "0").stat().st_size == before["size_bytes"]
        missing = CliRunner().invoke(cli, ["--database", env.database_url, "mirror", "job_nope"], env=cli_env)
        assert missing.exit_code != 0 and "job_nope" in missing.output
        off = {**cli_env, "RELAY_MIRROR_URL": ""}
        result = CliRunner().invoke(cli, ["--database", env.database_url, "mirror", job_id], env=off)
        assert result.exit_code != 0 and "RELAY_MIRROR_URL" in result.output


def test_a_bad_mirror_url_names_the_variable() -> None:
    """RELAY_MIRROR_URL must be file:///PATH or s3://BUCKET[/PREFIX]; anything else names it."""
    with pytest.raises(ValidationFailed, match="RELAY_MIRROR_URL: must be file:///"):
        load_settings(mirror_url="ftp://host/x")
    with pytest.raises(ValidationFailed, match="RELAY_MIRROR_ENDPOINT_URL"):
        load_settings(mirror_url="s3://b", mirror_endpoint_url="minio:9000")
    assert load_settings(mirror_url="s3://bucket/prefix/").mirror_url == "s3://bucket/prefix"


# S3 (a real S3-compatible server: moto's) -----------------------------------------------------------
@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    name = f"relay-{uuid.uuid4().hex[:12]}"
    assert httpx.put(f"{s3_endpoint}/{name}").status_code == 200
    return name


def test_s3_mirror_serves_a_presigned_copy_and_a_remirror_overwrites_it(
    tmp_path: Path, s3_endpoint: str, bucket: str
) -> None:
    """With s3:// the event carries a presigned URL serving the copy with its content type; a
    re-mirror (POST /v1/jobs/{id}/mirror) writes the same key, so the bucket holds one object."""
    overrides = {"mirror_url": f"s3://{bucket}/mirrors", "mirror_endpoint_url": s3_endpoint}
    with relay_env(tmp_path, FAKE, mirror_backoff=0.05, **overrides) as env:
        env.subscribe()
        job_id = env.submit("apixo", APIXO)["id"]
        output = _delivered(env, job_id).json["data"]["outputs"][0]
        mirror = output["mirror"]
        assert "X-Amz-Signature=" in mirror["url"] and mirror["url"].startswith(s3_endpoint)
        source = httpx.get(output["url"])
        served = httpx.get(mirror["url"])
        assert served.status_code == 200 and served.content == source.content
        assert served.headers["content-type"] == source.headers["content-type"] == "image/jpeg"  # kept
        assert mirror["sha256"] == hashlib.sha256(source.content).hexdigest()
        assert (output["width"], output["height"]) == (64, 48)

        again = env.ok(env.client.post(f"/v1/jobs/{job_id}/mirror"), 200)
        assert again["outputs"][0]["mirror"]["sha256"] == mirror["sha256"]
        store = S3Store(bucket, endpoint=s3_endpoint, allow_http=True)
        assert [meta["path"] for meta in obstore.list(store).collect()] == [f"mirrors/{job_id}/0"]
        assert env.client.post("/v1/jobs/job_nope/mirror").status_code == 404


def test_an_s3_copy_that_is_not_an_image_is_stored_as_an_attachment(
    tmp_path: Path, s3_endpoint: str, bucket: str
) -> None:
    """An HTML "result" mirrored to S3 is stored as application/octet-stream with Content-Disposition:
    attachment, so its presigned URL downloads it instead of rendering it (issue 19)."""
    outputs = OutputHost()
    overrides = {"mirror_url": f"s3://{bucket}/typed", "mirror_endpoint_url": s3_endpoint}
    with (
        serve_in_thread(outputs.app()) as host,
        relay_env(tmp_path, FAKE, mirror_backoff=0.05, **overrides) as env,
    ):
        job = plant_outputs(env.relay.url, env.client.headers, env.fake, [f"{host.url}/result"])
        wait_until(lambda: env.job(job["id"])["outputs"][0].get("mirror") is not None, timeout=15)
        output = env.job(job["id"])["outputs"][0]
        assert output["mime_type"] == "application/octet-stream"
        served = httpx.get(output["mirror"]["url"])
        assert served.status_code == 200 and b"<script>" in served.content
        assert served.headers["content-type"] == "application/octet-stream"
        assert served.headers["content-disposition"] == "attachment"


def test_a_large_output_is_streamed_to_s3_in_parts(tmp_path: Path, s3_endpoint: str, bucket: str) -> None:
    """A 12 MiB result of unknown size is streamed through in parts (a multipart upload: the ETag
    names its parts) and arrives whole, with its size, SHA-256 and the image's real dimensions."""
    fake = FakeConfig(apixo_allow_http=True, serve_assets=True, asset_extra_bytes=12 * 1024 * 1024)
    overrides = {"mirror_url": f"s3://{bucket}/big", "mirror_endpoint_url": s3_endpoint}
    with relay_env(tmp_path, fake, mirror_backoff=0.05, **overrides) as env:
        env.subscribe()
        job_id = env.submit("apixo", APIXO)["id"]
        output = _delivered(env, job_id).json["data"]["outputs"][0]
        source = httpx.get(output["url"])
        assert "content-length" not in source.headers and len(source.content) > 12 * 1024 * 1024
        mirror = output["mirror"]
        assert mirror["size_bytes"] == len(source.content)
        assert mirror["sha256"] == hashlib.sha256(source.content).hexdigest()
        assert (output["width"], output["height"]) == (64, 48)
        store = S3Store(bucket, endpoint=s3_endpoint, allow_http=True)
        head = obstore.head(store, f"big/{job_id}/0")
        assert head["size"] == len(source.content)
        assert head["e_tag"] is not None and "-" in head["e_tag"]  # "<md5 of part md5s>-<parts>"


def test_a_stream_growing_past_the_cap_is_cut_off(tmp_path: Path) -> None:
    """Without a Content-Length the cap is enforced while streaming: the copy stops, nothing is
    stored, and job.succeeded carries mirror_error too_large."""
    fake = FakeConfig(apixo_allow_http=True, serve_assets=True, asset_extra_bytes=3 * 1024 * 1024)
    with _file_env(tmp_path, fake, mirror_max_bytes=1024 * 1024) as env:
        env.subscribe()
        job_id = env.submit("apixo", APIXO)["id"]
        output = _delivered(env, job_id).json["data"]["outputs"][0]
        assert output["mirror"] is None and output["mirror_error"]["code"] == "too_large"
        assert not (tmp_path / "mirror" / job_id / "0").exists()
        assert all(p.is_dir() for p in (tmp_path / "mirror").rglob("*"))  # no file, not even a partial one


def test_mirror_routes_answer_clearly_when_they_cannot(tmp_path: Path) -> None:
    """With mirroring off POST /v1/jobs/{id}/mirror is a 503 naming RELAY_MIRROR_URL and outputs are
    404; with it on, a failed job cannot be mirrored (409) and its job.failed is not held."""
    with relay_env(tmp_path / "off", FAKE) as env:
        job_id = env.submit("apixo", APIXO)["id"]
        env.wait_status(job_id, "succeeded")
        off = env.client.post(f"/v1/jobs/{job_id}/mirror")
        assert off.status_code == 503 and "RELAY_MIRROR_URL" in off.json()["error"]["message"]
        assert env.client.get(f"/v1/outputs/{job_id}/0").status_code == 404
        assert "mirror" not in env.job(job_id)["outputs"][0]  # the contract is unchanged when off
    with _file_env(tmp_path / "on") as env:
        env.subscribe()
        job_id = env.submit("apixo", {"input": {"image_urls": [source_image("fail")]}})["id"]
        eid = event_id(job_id, "job.failed")
        wait_until(lambda: eid in env.sub_log.by_event_id(), timeout=15, message="job.failed not delivered")
        assert env.client.post(f"/v1/jobs/{job_id}/mirror").status_code == 409
