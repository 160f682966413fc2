"""Standard Webhooks signing and verification, cross-checked with the reference library."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given, strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from dispatch.errors import SignatureInvalid, ValidationFailed
from dispatch.signing import (
    delivery_headers,
    generate_secret,
    secret_bytes,
    sign,
    signature_header,
    verify,
)

# The test vector of the Standard Webhooks spec and its reference libraries.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = '{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
BODY = json.dumps({"id": "evt_1", "type": "job.succeeded", "data": {"note": "é ✓"}}).encode()
UA = "upscale-relay/0.1.0"


def _headers(secrets: list[str], body: bytes = BODY, *, timestamp: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    return delivery_headers("evt_1", body, secrets, timestamp=stamp, user_agent=UA)


def test_known_answer_matches_reference_library() -> None:
    """Our signature equals the pinned value the reference library computes for the spec's test vector."""
    reference = Webhook(SPEC_SECRET).sign(SPEC_ID, datetime.fromtimestamp(SPEC_TIMESTAMP, UTC), SPEC_BODY)
    assert reference == SPEC_SIGNATURE
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY.encode()) == SPEC_SIGNATURE


def test_generated_secret_shape() -> None:
    """A generated secret is "whsec_" plus base64 of 32 bytes, and two secrets differ."""
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(secret_bytes(secret)) == 32
    assert generate_secret() != secret


def test_secret_bytes_accepts_unprefixed_and_unpadded() -> None:
    """The whsec_ prefix and base64 padding are optional, as in the reference library."""
    raw = secret_bytes(SPEC_SECRET)
    assert len(raw) == 24
    assert secret_bytes(SPEC_SECRET.removeprefix("whsec_")) == raw
    padded = "whsec_" + base64.b64encode(bytes(range(25))).decode()
    assert secret_bytes(padded.rstrip("=")) == bytes(range(25))


@pytest.mark.parametrize("bad", ["whsec_", "whsec_!!!not-base64!!!", "whsec_c2hvcnQ=", ""])
def test_secret_bytes_rejects_malformed(bad: str) -> None:
    """A secret that is not base64 of at least 24 bytes is a ValidationFailed."""
    with pytest.raises(ValidationFailed):
        secret_bytes(bad)


def test_delivery_headers_shape() -> None:
    """Delivery headers carry id, timestamp, signature, idempotency key, content type and user agent."""
    headers = delivery_headers("evt_1", BODY, [SECRET], timestamp=1790000000, user_agent=UA)
    assert headers == {
        "webhook-id": "evt_1",
        "webhook-timestamp": "1790000000",
        "webhook-signature": sign(SECRET, "evt_1", 1790000000, BODY),
        "Idempotency-Key": "evt_1",
        "Content-Type": "application/json",
        "User-Agent": UA,
    }


def test_signature_header_requires_a_secret() -> None:
    """Signing with no secret at all is refused rather than sending an empty signature header."""
    with pytest.raises(ValidationFailed):
        signature_header([], "evt_1", 1790000000, BODY)


def test_reference_library_verifies_our_headers() -> None:
    """The reference library accepts our delivery headers and returns the parsed body."""
    assert Webhook(SECRET).verify(BODY, _headers([SECRET])) == json.loads(BODY)


def test_rotation_header_verifies_with_either_secret() -> None:
    """A two-signature header verifies with each secret, in both the reference library and ours."""
    headers = _headers([OTHER_SECRET, SECRET])
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (SECRET, OTHER_SECRET):
        Webhook(secret).verify(BODY, headers)
        verify(secret, headers, BODY)
    stranger = generate_secret()
    with pytest.raises(WebhookVerificationError):
        Webhook(stranger).verify(BODY, headers)
    with pytest.raises(SignatureInvalid):
        verify(stranger, headers, BODY)


def test_we_verify_reference_library_signatures() -> None:
    """Headers built by the reference library's sign() pass our verify()."""
    now = int(time.time())
    signature = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(now, UTC), BODY.decode())
    headers = {"Webhook-Id": "msg_1", "Webhook-Timestamp": str(now), "Webhook-Signature": signature}
    verify(SECRET, headers, BODY)


def test_verify_is_case_insensitive_and_skips_unknown_versions() -> None:
    """Header names match in any case, and non-v1 or garbled entries do not prevent a later v1 match."""
    headers = {k.upper(): v for k, v in _headers([SECRET]).items()}
    headers["WEBHOOK-SIGNATURE"] = "v2,abc v1,%%% v1 " + headers["WEBHOOK-SIGNATURE"]
    verify(SECRET, headers, BODY)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("body", b'{"id": "evt_2"}'),
        ("webhook-id", "evt_2"),
        ("webhook-timestamp", "shift"),
        ("webhook-signature", "v1," + base64.b64encode(b"\0" * 32).decode()),
    ],
)
def test_tampering_is_detected(field: str, value: object) -> None:
    """Changing the body, id, timestamp or signature makes verification fail with SignatureInvalid."""
    now = int(time.time())
    headers = _headers([SECRET], timestamp=now)
    body = BODY
    if field == "body":
        assert isinstance(value, bytes)
        body = value
    elif value == "shift":
        headers[field] = str(now - 1)
    else:
        assert isinstance(value, str)
        headers[field] = value
    with pytest.raises(SignatureInvalid):
        verify(SECRET, headers, body, now=now)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, headers)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_signature_invalid(missing: str) -> None:
    """A missing or empty required header raises SignatureInvalid naming it."""
    headers = _headers([SECRET])
    del headers[missing]
    with pytest.raises(SignatureInvalid, match=missing):
        verify(SECRET, headers, BODY)
    headers[missing] = ""
    with pytest.raises(SignatureInvalid, match=missing):
        verify(SECRET, headers, BODY)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("webhook-timestamp", "not-a-number"),
        ("webhook-timestamp", "1.7e9"),
        ("webhook-timestamp", "-5"),
        ("webhook-timestamp", "1_790_000_000"),
        ("webhook-timestamp", "9" * 40),
        ("webhook-signature", "garbage"),
        ("webhook-signature", "v1,"),
        ("webhook-signature", "v1,not base64!"),
        ("webhook-signature", ",,, v1 v1,,"),
        ("webhook-signature", "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
    ],
)
def test_garbage_headers_are_signature_invalid(name: str, value: str) -> None:
    """Malformed timestamps and signature lists raise SignatureInvalid, never another exception."""
    headers = _headers([SECRET])
    headers[name] = value
    with pytest.raises(SignatureInvalid):
        verify(SECRET, headers, BODY)


@pytest.mark.parametrize("offset", [-301, 301, -86400, 86400])
def test_timestamp_outside_tolerance_is_rejected(offset: int) -> None:
    """A timestamp more than the tolerance (300 s) in the past or future raises SignatureInvalid."""
    now = 1_790_000_000
    headers = _headers([SECRET], timestamp=now + offset)
    with pytest.raises(SignatureInvalid, match="300 s"):
        verify(SECRET, headers, BODY, now=now)


def test_tolerance_is_a_parameter() -> None:
    """A timestamp exactly at the tolerance edge passes, and a wider tolerance accepts older ones."""
    now = 1_790_000_000
    verify(SECRET, _headers([SECRET], timestamp=now - 300), BODY, now=now)
    verify(SECRET, _headers([SECRET], timestamp=now + 300), BODY, now=now)
    verify(SECRET, _headers([SECRET], timestamp=now - 3600), BODY, now=now, tolerance=3600)
    with pytest.raises(SignatureInvalid):
        verify(SECRET, _headers([SECRET], timestamp=now - 11), BODY, now=now, tolerance=10)


def test_malformed_secret_is_a_configuration_error() -> None:
    """Verifying with a malformed secret raises ValidationFailed, not SignatureInvalid."""
    with pytest.raises(ValidationFailed):
        verify("whsec_%%%", _headers([SECRET]), BODY)


@given(body=st.binary(max_size=2048), msg_id=st.text(min_size=1, max_size=40))
def test_roundtrip_random_bodies(body: bytes, msg_id: str) -> None:
    """Any body and id signed by us verifies with the same secret and fails with one flipped byte."""
    now = 1_790_000_000
    headers = delivery_headers(msg_id, body, [SECRET], timestamp=now, user_agent=UA)
    verify(SECRET, headers, body, now=now)
    if body:
        flipped = bytes([body[0] ^ 1]) + body[1:]
        with pytest.raises(SignatureInvalid):
            verify(SECRET, headers, flipped, now=now)
