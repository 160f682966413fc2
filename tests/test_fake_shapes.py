"""The fake vendors produce the shapes their pages allow (issue 20, "Fakes that vary as the vendors
may"): other job id forms, float numbers, APIXO ``resultJson`` as an object or with several URLs, LTX
ISO expiry, Apiframe images as objects, a success announced before its URL, Dreamina as seed 001 shows
it; they import nothing from the adapters, and Apiframe's fake signs as the Apiframe SDK documents.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import pytest

import receiver.fakes
from fixtures.harness import wait_until
from receiver.fakes import (
    FakeConfig,
    apiframe_signature,
    config,
    dreamina_source_job,
    ltx_source_job,
    source_image,
)
from receiver.vendors import apiframe as apiframe_adapter
from tests.test_fake_vendors import Env as FakesEnv, fakes_running

CONFIG = FakeConfig(callback_delay=0.02, apixo_retry_scale=0.001, apixo_allow_http=True)
VENDORS = ("ltx", "dreamina", "apiframe", "apixo", "artnex")
ID_MARKERS = ("iduuid", "idnum", "iddot", "idslash", "idquery", "idutf8")
ID_FORMS = {
    "iduuid": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "idnum": r"[0-9]{13}",
    "iddot": r"v1\.[0-9a-f]{8}\.upscale",
    "idslash": r"a/\.\./b[0-9a-f]{8}",
    "idquery": r"x[0-9a-f]{8}\?y=1#z%41",
    "idutf8": r"tâche-[0-9a-f]{8}-画像",
}


class Env(FakesEnv):
    """The fake vendors, a receiver recording their callbacks, a client of the fake, and helpers."""

    def submit(self, vendor: str, marker: str) -> tuple[str, str, dict[str, Any]]:
        """Submit one job carrying ``marker`` with a callback to a fresh hook; returns the hook name,
        the vendor job id and the submit answer's JSON."""
        name = f"{vendor}-{uuid.uuid4().hex[:8]}"
        hook = f"{self.receiver_url}/hooks/{name}"
        auth = {"Authorization": f"Bearer {CONFIG.useapi_token}"}
        if vendor == "ltx":
            body: dict[str, Any] = {"jobId": ltx_source_job(marker), "replyUrl": hook, "replyRef": "ref-1"}
            answer = self.fake.post("/v1/ltxstudio/images/upscale", json=body, headers=auth).json()
            return name, answer["jobId"], answer
        if vendor == "dreamina":
            body = {"jobid": dreamina_source_job(marker), "replyUrl": hook, "replyRef": "ref-1"}
            answer = self.fake.post("/v1/dreamina/images/upscale", json=body, headers=auth).json()
            return name, answer["jobid"], answer
        image = source_image(f"{marker} {uuid.uuid4().hex[:8]}")
        if vendor == "apiframe":
            body = {
                "model": "topaz-image-upscale",
                "topazUpscaleParams": {"image": image},
                "webhookUrl": hook,
            }
            body["webhookEvents"] = ["progress", "completed", "failed"]
            headers = {"X-API-Key": CONFIG.apiframe_api_key}
            answer = self.fake.post("/v2/images/upscale", json=body, headers=headers).json()
            return name, answer["jobId"], answer
        if vendor == "apixo":
            body = {"request_type": "callback", "callback_url": hook, "input": {"image_urls": [image]}}
            headers = {"Authorization": f"Bearer {CONFIG.apixo_api_key}"}
            answer = self.fake.post("/api/v1/generateTask/image-upscaler", json=body, headers=headers).json()
            return name, answer["data"]["taskId"], answer
        headers = {"Authorization": f"Bearer {CONFIG.artnex_api_key}"}
        answer = self.fake.post("/v1/upscale", json={"image": image}, headers=headers).json()
        return name, answer["request_id"], answer

    def settled(self, vendor: str, job_id: str) -> dict[str, Any]:
        """Wait until the fake sent every callback of the job and shows its final record; returns it."""
        job = self.state.job(vendor, job_id)
        assert job is not None, f"the fake has no {vendor} job {job_id!r}"
        wait_until(lambda: job.finished, timeout=5, message=f"{vendor} job {job_id} never finished")
        return job.record

    def callbacks(self, name: str) -> list[Any]:
        return [d.json for d in self.log.deliveries(name)]


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with fakes_running(CONFIG) as started:
        yield Env(started.fake, started.state, started.receiver_url, started.log)


# -- the fakes are independent of the adapters -------------------------------------------------------


def test_no_fake_module_imports_the_adapters() -> None:
    """No module of ``receiver/fakes/`` imports ``receiver.vendors`` (or anything in it), by any import
    statement or by name: the fakes follow the vendors' pages, not the adapters' reading of them."""
    folder = Path(receiver.fakes.__file__).parent
    modules = sorted(folder.rglob("*.py"))
    assert len(modules) >= 10
    for path in modules:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        imported: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                imported += [base, *(f"{base}.{alias.name}" for alias in node.names)]
                assert node.level == 0 or "vendors" not in base, f"{path.name}: relative import of {base}"
        offending = [
            name for name in imported if name == "receiver.vendors" or name.startswith("receiver.vendors.")
        ]
        offending += [name for name in imported if name == "receiver" or name.endswith(".vendors")]
        assert offending == [], f"{path.name} imports {offending}"
        assert "receiver.vendors" not in path.read_text(encoding="utf-8"), (
            f"{path.name} names receiver.vendors"
        )


def test_apiframe_fake_signs_the_sdk_test_vector() -> None:
    """The fake's own signer reproduces the Apiframe SDK's test vector, and the relay's verifier accepts
    what it signs (with or without the ``sha256=`` prefix) and refuses the SDK's wrong-key case.

    Vector: key ``afk_`` + 40 zeros and body ``JSON.stringify({ jobId: 'abc', status: 'COMPLETED' })``
    from ``apiframe-ai/apiframe-nodejs-sdk`` ``test/webhooks.test.ts`` (commit 4c7d6dbb789c); the digest is
    the one VENDORS.md §3 computed from them with Node's crypto and Python's hmac.
    """
    key = "afk_0000000000000000000000000000000000000000"
    body = b'{"jobId":"abc","status":"COMPLETED"}'
    expected = "sha256=58e6d7af820911d918b1b43ade255ec260002ca8b24ba46dd057a99d192c89f4"
    assert apiframe_signature(key, body) == expected
    wrong_key = "afk_1111111111111111111111111111111111111111"  # the SDK's "rejects a wrong API key"
    assert apiframe_signature(wrong_key, body) != expected
    assert apiframe_signature(key, body + b" ") != expected  # the SDK's "rejects a tampered body"
    verify = apiframe_adapter.ADAPTER.verify_callback
    verify(body, {"X-Webhook-Signature": expected}, key)
    verify(body, {"x-webhook-signature": expected.removeprefix("sha256=").upper()}, key)
    with pytest.raises(Exception, match="does not match"):
        verify(body, {"X-Webhook-Signature": apiframe_signature(wrong_key, body)}, key)


def test_apiframe_fake_signer_is_its_own_code() -> None:
    """The fake's signer is not the adapter's function under another name: its code differs, and the
    scheme it implements (HMAC-SHA256 keyed by the SHA-256 digest bytes of the key) holds on any input."""
    assert apiframe_signature is not apiframe_adapter.sign
    assert apiframe_signature.__code__.co_code != apiframe_adapter.sign.__code__.co_code
    for key, body in (("afk_x", b""), ("ключ", '{"é":1}'.encode()), ("k" * 200, b"\x00\xff")):
        secret = hashlib.sha256(key.encode()).digest()
        assert apiframe_signature(key, body) == "sha256=" + hmac.new(secret, body, "sha256").hexdigest()


def test_shape_markers_are_scenario_markers_and_no_marker_contains_another() -> None:
    """Every shape marker is a scenario marker, and no marker is a substring of another (a marker is
    found by substring in the job's input)."""
    markers = config.SCENARIO_MARKERS
    assert set(getattr(config, "SHAPE_MARKERS", ("none",))) <= set(markers)
    clashes = [(a, b) for a in markers for b in markers if a != b and a in b]
    assert clashes == []


# -- job id forms ---------------------------------------------------------------------------------------

STATUS_PATHS = {"ltx": "/v1/ltxstudio/assets/", "dreamina": "/v1/dreamina/images/", "apiframe": "/v2/jobs/"}


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("marker", ID_MARKERS)
def test_id_markers_mint_that_id_form_everywhere(env: Env, vendor: str, marker: str) -> None:
    """An ``id…`` marker gives the vendor job id that form in the submit answer, the callbacks and the
    status record, and the status endpoint finds the job at its percent-encoded path (or query value)."""
    name, job_id, _answer = env.submit(vendor, marker)
    assert re.fullmatch(
        ID_FORMS[marker] if vendor != "artnex" or marker != "iddot" else r"req\.ups\.[0-9a-f]{12}", job_id
    ), job_id
    record = env.settled(vendor, job_id)
    if vendor == "artnex":
        assert record["body"]["request_id"] == job_id
        return
    ids = {"ltx": "jobId", "dreamina": "jobid", "apiframe": "jobId"}
    for body in env.callbacks(name):
        said = body["data"]["taskId"] if vendor == "apixo" else body[ids[vendor]]
        assert said == job_id
    if vendor == "apixo":
        headers = {"Authorization": f"Bearer {CONFIG.apixo_api_key}"}
        answer = env.fake.get("/api/v1/statusTask/image-upscaler", params={"taskId": job_id}, headers=headers)
        assert answer.status_code == 200 and answer.json()["data"]["taskId"] == job_id
        (logged,) = env.state.statuses("apixo", job_id)
        assert parse_qs(logged.query) == {"taskId": [job_id]}
        return
    safe = "" if vendor == "apiframe" else ":@"
    path = STATUS_PATHS[vendor] + quote(job_id, safe=safe)
    headers = {"X-API-Key": CONFIG.apiframe_api_key, "Authorization": f"Bearer {CONFIG.useapi_token}"}
    answer = env.fake.get(path, headers=headers)
    assert answer.status_code == 200, answer.text
    (logged,) = env.state.statuses(vendor, job_id)
    assert (logged.raw_path, logged.found) == (path, True)


# -- numbers and results -----------------------------------------------------------------------------------


def test_apixo_floats_result_object_and_several_urls(env: Env) -> None:
    """APIXO ``floats``: times and a fractional ``costTime`` as floats; ``resultobj``: ``resultJson`` is
    an object; ``multiurl``: two URLs in ``resultUrls`` (callback and status alike)."""
    name, job_id, _ = env.submit("apixo", "floats resultobj multiurl")
    record = env.settled("apixo", job_id)
    (envelope,) = env.callbacks(name)
    data = envelope["data"]
    assert data == record
    assert isinstance(data["createTime"], float) and isinstance(data["completeTime"], float)
    assert data["costTime"] % 1 == 0.5
    assert isinstance(data["resultJson"], dict) and len(data["resultJson"]["resultUrls"]) == 2
    _, plain_id, _ = env.submit("apixo", "multiurl")
    plain = env.settled("apixo", plain_id)
    assert isinstance(plain["resultJson"], str) and len(json.loads(plain["resultJson"])["resultUrls"]) == 2
    assert isinstance(plain["createTime"], int) and isinstance(plain["costTime"], int)


def test_apixo_lateurl_announces_the_success_before_its_url(env: Env) -> None:
    """APIXO ``lateurl``: the success callback carries ``resultJson: ""``; the status endpoint shows the
    stored URL a step later."""
    name, job_id, _ = env.submit("apixo", "lateurl")
    record = env.settled("apixo", job_id)
    (envelope,) = env.callbacks(name)
    assert (envelope["data"]["state"], envelope["data"]["resultJson"]) == ("success", "")
    assert record["state"] == "success" and json.loads(record["resultJson"])["resultUrls"][0].startswith(
        "https://"
    )


def test_apiframe_floats_and_images_as_objects(env: Env) -> None:
    """Apiframe ``floats``: ``progress`` and ``creditCost`` as floats (``100.0``); ``imageobj``:
    ``result.images`` entries are ``{"url": …}`` objects."""
    name, job_id, _ = env.submit("apiframe", "floats imageobj")
    record = env.settled("apiframe", job_id)
    bodies = env.callbacks(name)
    assert [b["progress"] for b in bodies] == [30.0, 70.0, 100.0]
    assert all(isinstance(b["progress"], float) for b in bodies) and isinstance(
        bodies[-1]["creditCost"], float
    )
    (image,) = bodies[-1]["result"]["images"]
    assert set(image) == {"url"} and image["url"].startswith("https://cdn2.apiframe.ai/")
    assert record["result"] == bodies[-1]["result"] and record["progress"] == 100.0


def test_ltx_floats_iso_expiry_and_lateurl(env: Env) -> None:
    """LTX ``floats``: ``progress`` as ``100.0``; ``isoexpiry``: ``expirationDateString`` in ISO 8601;
    ``lateurl``: the completion callback has no artifact, the status endpoint shows it a step later."""
    name, job_id, _ = env.submit("ltx", "floats isoexpiry")
    env.settled("ltx", job_id)
    (done,) = env.callbacks(name)
    assert done["status"]["progress"] == 100.0 and isinstance(done["status"]["progress"], float)
    expiry = datetime.fromisoformat(done["status"]["artifact"]["expirationDateString"])
    assert expiry.utcoffset() is not None
    name, job_id, _ = env.submit("ltx", "lateurl")
    record = env.settled("ltx", job_id)
    (early,) = env.callbacks(name)
    assert early["status"]["type"] == "completed" and "artifact" not in early["status"]
    assert record["status"]["artifact"]["assetUrl"].startswith("https://")


def test_dreamina_floats_and_seed_001_shapes(env: Env) -> None:
    """Dreamina ``floats``: sizes and ``forecastCost`` as floats; ``seed001``: the callback is the job
    record with ``replyRef`` only, the image carries what seed 001's sample reads, no ``updated``; a
    failure carries ``error`` only; the id has seed 001's ``…-US:<email>:dreamina`` form."""
    name, job_id, _ = env.submit("dreamina", "floats")
    env.settled("dreamina", job_id)
    (done,) = env.callbacks(name)
    image = done["response"]["images"][0]
    assert isinstance(image["width"], float) and isinstance(done["response"]["forecastCost"], float)
    name, job_id, answer = env.submit("dreamina", "seed001")
    assert re.fullmatch(r"j\d{19}I-u12345-US:demo\+seed001@example\.com:dreamina", job_id)
    assert "replyRef" not in answer and "replyUrl" not in answer
    record = env.settled("dreamina", job_id)
    (done,) = env.callbacks(name)
    assert done == record | {"replyRef": "ref-1"}
    assert "updated" not in done and set(done["response"]["images"][0]) == {"imageUrl", "width", "height"}
    name, job_id, _ = env.submit("dreamina", "seed001 fail")
    env.settled("dreamina", job_id)
    (failed,) = env.callbacks(name)
    assert failed["status"] == "failed" and failed["error"] and "errorDetails" not in failed


def test_artnex_floats_and_dotted_request_id(env: Env) -> None:
    """Artnex ``floats``: ``credits_used: 100.0``; ``iddot``: a ``request_id`` with dots (finding 4)."""
    _, request_id, answer = env.submit("artnex", "floats iddot")
    assert answer["success"] is True and answer["credits_used"] == 100.0
    assert isinstance(answer["credits_used"], float) and "." in request_id
