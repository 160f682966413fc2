"""Every shape the vendor pages allow, through the whole relay (issue 20, findings 2, 3, 4 and 7).

The fake vendors produce each variant on a scenario marker (``receiver.fakes.config.SHAPE_MARKERS``):
other vendor job id forms, float numbers, APIXO ``resultJson`` as an object or with several URLs, LTX ISO
expiry, Apiframe images as objects, a success announced before its URL, Dreamina as seed 001 shows it.
Each case submits one job through ``POST /v1/jobs`` and checks that it ends with the vendor's outcome and
its URL(s), read from the fake's final record as the vendor's page describes it:

- ``callback``: the outcome comes by callback (the first poll is 30 s away);
- ``poll``: no callbacks (``lost``) and a first poll at once, so status answers carry it, each status
  request on the vendor's exact documented path;
- ``answer``: the submit answer carries it (Artnex is synchronous, LTX ``pollForResult``).

In every mode the vendor job id is the one the fake minted, read from the submit answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, quote

import pytest

from dispatch.model import event_id
from fixtures.harness import wait_until
from receiver.fakes import FakeConfig, ltx_source_job
from tests.relay_env import RelayEnv, relay_env
from tests.vendor_inputs import FAKE_NAME, make_params

ASYNC_VENDORS = ("ltxstudio", "dreamina", "apiframe", "apixo")
ID_MARKERS = ("iduuid", "idnum", "iddot", "idslash", "idquery", "idutf8")
FAIL_CODES = {
    "ltxstudio": "vendor_failed",
    "dreamina": "fail_code: 2043",
    "apiframe": "vendor_failed",
    "apixo": "ImageFormatIncorrect",
}
# (vendor, markers): every variant of an async vendor, sent through callbacks and through polls
ASYNC_CASES = [
    *[(vendor, marker) for vendor in ASYNC_VENDORS for marker in ID_MARKERS],
    *[(vendor, "floats") for vendor in ASYNC_VENDORS],
    *[(vendor, "idquery fail") for vendor in ASYNC_VENDORS],  # a failure about an id needing encoding
    ("apixo", "resultobj"),
    ("apixo", "multiurl"),
    ("apixo", "resultobj multiurl floats"),
    ("apixo", "lateurl"),
    ("ltxstudio", "isoexpiry"),
    ("ltxstudio", "lateurl floats"),
    ("apiframe", "imageobj"),
    ("apiframe", "imageobj floats idslash"),
    ("dreamina", "seed001"),
    ("dreamina", "seed001 fail"),
]
MODES = ("callback", "poll")
# (vendor, markers) whose outcome the submit answer carries
ANSWER_CASES = [
    *[("artnex", marker) for marker in (*ID_MARKERS, "floats", "floats iddot")],
    *[("ltxstudio", marker) for marker in (*ID_MARKERS, "floats", "isoexpiry")],
]
STATUS_PATHS = {
    "ltxstudio": ("/v1/ltxstudio/assets/", ":@"),  # useapi shows ':' and '@' unencoded (VENDORS.md §1)
    "dreamina": ("/v1/dreamina/images/", ":@"),
    "apiframe": ("/v2/jobs/", ""),
}
FAKE = FakeConfig(callback_delay=0.05, apixo_retry_scale=0.001, apixo_allow_http=True)


@pytest.fixture(scope="module")
def callback_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayEnv]:
    """The first poll 30 s after the submit: outcomes come by callback (a success without its URL is
    polled for at once: every 0.05 s)."""
    timing = {
        "poll_after": dict.fromkeys(ASYNC_VENDORS, 30.0),
        "poll_every": dict.fromkeys(ASYNC_VENDORS, 0.05),
    }
    with relay_env(tmp_path_factory.mktemp("shapes-cb"), fake=FAKE, **timing) as started:
        yield started


@pytest.fixture(scope="module")
def poll_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayEnv]:
    """The first poll 0.02 s after the submit, then every 0.05 s (growing x1.5)."""
    timing = {
        "poll_after": dict.fromkeys(ASYNC_VENDORS, 0.02),
        "poll_every": dict.fromkeys(ASYNC_VENDORS, 0.05),
    }
    with relay_env(tmp_path_factory.mktemp("shapes-poll"), fake=FAKE, **timing) as started:
        yield started


def vendor_urls(vendor: str, record: dict[str, Any]) -> list[str]:
    """The output URLs in a vendor's final record, read as its page describes them."""
    if vendor == "ltxstudio":
        return [record["status"]["artifact"]["assetUrl"]]  # seed 000 model
    if vendor == "dreamina":
        return [image["imageUrl"] for image in record["response"]["images"]]  # U-DRE-GET
    if vendor == "apiframe":
        result = record["result"]  # a URL, or {"images": [...]} (seed 002)
        if isinstance(result, str):
            return [result]
        return [image["url"] if isinstance(image, dict) else image for image in result["images"]]
    if vendor == "apixo":
        result = record["resultJson"]  # JSON.parse(data.resultJson).resultUrls (seed 003)
        return list((json.loads(result) if isinstance(result, str) else result)["resultUrls"])
    return [record["body"]["image_url"]]  # seed 004


def fake_job(env: RelayEnv, vendor: str, vendor_job_id: str) -> Any:
    job = env.fake.job(FAKE_NAME.get(vendor, vendor), vendor_job_id)
    assert job is not None, f"the fake has no {vendor} job {vendor_job_id!r}"
    return job


def check_outcome(env: RelayEnv, vendor: str, markers: str, job: dict[str, Any]) -> None:
    """The job ended with the vendor's outcome: failed with its code, or succeeded with exactly the
    URL(s) of its final record, also in the job.succeeded event."""
    record = fake_job(env, vendor, job["vendor_job_id"]).record
    if "fail" in markers.split():
        assert (job["status"], job["error"]["code"]) == ("failed", FAIL_CODES[vendor]), job
        return
    urls = vendor_urls(vendor, record)
    assert job["status"] == "succeeded", job
    assert [o["url"] for o in job["outputs"]] == urls and urls
    (succeeded,) = [e for e in job["events"] if e["type"] == "job.succeeded"]
    assert succeeded["id"] == event_id(job["id"], "job.succeeded")
    assert [o["url"] for o in succeeded["payload"]["data"]["outputs"]] == urls
    # a success without its URL (callback or poll) flags the job; a poll may also miss that moment
    early = [
        i for i in job["inbound"] if '"resultJson":""' in i["body"] or _completed_without_asset(i["body"])
    ]
    assert ("success_without_output" in job["flags"]) == bool(early), job["inbound"]
    if "lateurl" in markers and "lost" not in markers:
        assert early, "the callback announced the success without its URL"


def _completed_without_asset(body: str) -> bool:
    """An LTX job model saying ``completed`` without ``status.artifact``."""
    try:
        status = json.loads(body).get("status")
    except ValueError:
        return False
    return isinstance(status, dict) and status.get("type") == "completed" and "artifact" not in status


def check_status_paths(env: RelayEnv, vendor: str, vendor_job_id: str) -> None:
    """Every status request the fake received for the job was on the vendor's documented path, with the
    id as one percent-encoded segment (APIXO: the ``taskId`` query value), and found the job."""
    seen = env.fake.statuses(FAKE_NAME.get(vendor, vendor), vendor_job_id)
    assert seen, f"no status request reached the fake for {vendor_job_id!r}"
    for request in seen:
        assert request.found, request
        if vendor == "apixo":
            assert request.raw_path == "/api/v1/statusTask/image-upscaler"
            assert parse_qs(request.query) == {"taskId": [vendor_job_id]}
        else:
            prefix, safe = STATUS_PATHS[vendor]
            assert request.raw_path == prefix + quote(vendor_job_id, safe=safe), request


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("vendor", "markers"), ASYNC_CASES, ids=[f"{v}-{m}" for v, m in ASYNC_CASES])
def test_every_shape_ends_with_the_vendors_outcome(
    request: pytest.FixtureRequest, mode: str, vendor: str, markers: str
) -> None:
    """A job whose vendor answers in this shape ends with the vendor's outcome and URL(s), by callback or
    by polling, its vendor job id read from the submit answer and every poll on the documented path."""
    env: RelayEnv = request.getfixturevalue(f"{mode}_env")
    params, _src = make_params(vendor, f"{markers} lost" if mode == "poll" else markers)
    submitted = env.submit(vendor, params)
    final = "failed" if "fail" in markers.split() else "succeeded"
    job = env.wait_status(submitted["id"], final, timeout=15)
    fake = fake_job(env, vendor, job["vendor_job_id"])
    assert job["vendor_job_id"] == fake.job_id
    if mode == "callback":
        wait_until(lambda: fake.finished, timeout=15, message=f"fake {vendor} job never finished")
        job = env.job(job["id"])
    check_outcome(env, vendor, f"{markers} lost" if mode == "poll" else markers, job)
    verdicts = {i["verdict"] for i in job["inbound"]}
    assert not verdicts & {"invalid", "mismatch", "unknown_state", "conflict"}, job["inbound"]
    via = "poll" if mode == "poll" or "lateurl" in markers else "callback"
    assert job["outcome_via"] == via
    if via == "poll":
        check_status_paths(env, vendor, job["vendor_job_id"])


@pytest.mark.parametrize(("vendor", "markers"), ANSWER_CASES, ids=[f"{v}-{m}" for v, m in ANSWER_CASES])
def test_every_shape_in_a_submit_answer_ends_with_the_vendors_outcome(
    poll_env: RelayEnv, vendor: str, markers: str
) -> None:
    """A submit answer in this shape (Artnex's synchronous one, LTX's ``pollForResult`` one) gives the
    job the vendor's outcome and URL, and the vendor job id the fake minted."""
    if vendor == "ltxstudio":  # no callback: the answer alone carries the outcome
        params: dict[str, Any] = {"jobId": ltx_source_job(f"{markers} lost"), "pollForResult": 2}
    else:
        params, _src = make_params(vendor, markers)
    submitted = poll_env.submit(vendor, params)
    job = poll_env.wait_status(submitted["id"], "succeeded", timeout=15)
    assert job["vendor_job_id"] == fake_job(poll_env, vendor, job["vendor_job_id"]).job_id
    check_outcome(poll_env, vendor, markers, job)
    assert job["outcome_via"] == "response"
    if vendor == "artnex" and "iddot" in markers:
        assert "." in job["vendor_job_id"] and job["cost"] == {"amount": 100.0, "unit": "credits"}
