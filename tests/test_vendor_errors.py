"""Every documented vendor submit error, produced by the fake on demand, through the whole relay.

Each case submits one job through ``POST /v1/jobs`` whose input carries a ``submit<status>`` marker
(see ``receiver.fakes``): the fake answers that status with the vendor's documented body. A
refusal (400/401/402/403/404) fails the job with the mapped relay code (Artnex keeps its own). For
429 and 5xx only what holds whether the relay fails, retries or waits is asserted: the vendor got the
submit and answered that status, ``POST /v1/jobs`` answered 2xx, and the job did not succeed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.harness import wait_until
from receiver.fakes import FakeConfig
from tests.relay_env import RelayEnv, relay_env
from tests.vendor_inputs import make_params, submits_for

# (vendor, status, relay error code) for each refusal a vendor's page documents at submit.
REFUSALS: list[tuple[str, int, str]] = [
    ("ltxstudio", 400, "vendor_rejected"),  # seed 000
    ("ltxstudio", 401, "vendor_unauthorized"),
    ("ltxstudio", 402, "insufficient_credits"),
    ("dreamina", 400, "vendor_rejected"),  # seed 001
    ("dreamina", 401, "vendor_unauthorized"),
    ("dreamina", 404, "vendor_not_found"),
    ("apiframe", 400, "vendor_rejected"),  # seed 002 (+403 from the OpenAPI document)
    ("apiframe", 401, "vendor_unauthorized"),
    ("apiframe", 402, "insufficient_credits"),
    ("apiframe", 403, "vendor_forbidden"),
    ("apixo", 400, "vendor_rejected"),  # seed 003
    ("apixo", 401, "vendor_unauthorized"),
    ("apixo", 402, "insufficient_credits"),
    ("apixo", 403, "vendor_forbidden"),
    ("artnex", 400, "invalid_image_format"),  # seed 004: Artnex's own error codes
    ("artnex", 401, "invalid_api_key"),
    ("artnex", 402, "insufficient_credits"),
]
# (vendor, status) for the "try again" answers: persistent 5xx markers.
UNAVAILABLE: list[tuple[str, int]] = [
    ("apiframe", 503),  # seed 002: job queue temporarily down
    ("apixo", 502),  # seed 003: upstream service error
    ("apixo", 503),  # older APIXO error page
    ("apixo", 504),  # seed 003: upstream timeout
]
# (vendor, marker) for the one-shot faults (the first submit of the input only).
ONE_SHOT: list[tuple[str, str]] = [
    ("apixo", "submit429"),  # seed 003
    ("apixo", "submit500"),  # seed 003
    ("apiframe", "submit429"),  # AF-OAS
    ("artnex", "submit429"),  # seed 004: daily quota
]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayEnv]:
    with relay_env(tmp_path_factory.mktemp("vendor-errors")) as started:
        yield started


def post_job(env: RelayEnv, vendor: str, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/jobs``; asserts a 2xx answer and returns the job."""
    response = env.client.post("/v1/jobs", json={"vendor": vendor, "params": params})
    assert 200 <= response.status_code < 300, f"{response.status_code}: {response.text}"
    job: dict[str, Any] = response.json()
    return job


@pytest.mark.parametrize(("vendor", "status", "code"), REFUSALS, ids=[f"{v}-{s}" for v, s, _ in REFUSALS])
def test_documented_refusal_fails_the_job_with_its_code(
    env: RelayEnv, vendor: str, status: int, code: str
) -> None:
    """A documented 4xx at submit fails the job with the mapped code and the vendor's message, sent once."""
    params, src = make_params(vendor, f"submit{status}")
    job = post_job(env, vendor, params)
    assert job["status"] != "succeeded"
    done = env.wait_status(job["id"], "failed")
    assert done["error"]["code"] == code and done["error"]["message"]
    assert done["vendor_job_id"] is None
    assert [s.status for s in submits_for(env, vendor, src)] == [status]


@pytest.mark.parametrize(("vendor", "status"), UNAVAILABLE, ids=[f"{v}-{s}" for v, s in UNAVAILABLE])
def test_documented_unavailable_answer_never_succeeds(env: RelayEnv, vendor: str, status: int) -> None:
    """A documented 5xx at submit reaches the vendor and the job does not succeed (it fails, waits or
    is retried, as the relay's submit policy decides)."""
    params, src = make_params(vendor, f"submit{status}")
    job = post_job(env, vendor, params)
    wait_until(lambda: submits_for(env, vendor, src), message=f"{vendor} never got the submit")
    assert {s.status for s in submits_for(env, vendor, src)} == {status}
    assert env.job(job["id"])["status"] != "succeeded"


@pytest.mark.parametrize(("vendor", "marker"), ONE_SHOT, ids=[f"{v}-{m}" for v, m in ONE_SHOT])
def test_documented_one_shot_fault_reaches_the_vendor(env: RelayEnv, vendor: str, marker: str) -> None:
    """A documented 429/500 at the first submit is answered to the relay, whose POST /v1/jobs stays 2xx."""
    params, src = make_params(vendor, marker)
    post_job(env, vendor, params)
    wait_until(lambda: submits_for(env, vendor, src), message=f"{vendor} never got the submit")
    assert submits_for(env, vendor, src)[0].status == int(marker.removeprefix("submit"))


def test_apixo_fake_refuses_an_http_callback_url_without_the_switch(tmp_path: Path) -> None:
    """Without ``apixo_allow_http`` the fake APIXO refuses the loopback relay's http callback_url with a
    400, as APIXO does (seed 003: a public HTTPS URL), so the job fails as vendor_rejected."""
    strict = FakeConfig(callback_delay=0.02, apixo_retry_scale=0.001)
    with relay_env(tmp_path, fake=strict) as env:
        params, src = make_params("apixo", "")
        job = post_job(env, "apixo", params)
        done = env.wait_status(job["id"], "failed")
        assert done["error"]["code"] == "vendor_rejected" and "HTTPS" in done["error"]["message"]
        [submit] = submits_for(env, "apixo", src)
        assert submit.status == 400 and submit.body["callback_url"].startswith("http://")
