"""The contract every vendor adapter keeps, run over every adapter in the registry and its payload fixtures.

A new vendor module is picked up here without any edit: the registry finds the module, and its fixtures in
``receiver/fakes/payloads/<vendor>/`` are read by kind (``submit_*``/``response_*``, ``callback_*``,
``status_*``, ``error_*``). What only one vendor does is tested in its own ``test_vendor_<name>.py``.
"""

from __future__ import annotations

import json
import math
import pkgutil
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given, settings, strategies as st
from pydantic import BaseModel, ValidationError

import receiver.vendors
from dispatch.errors import PayloadError, UpstreamError
from dispatch.model import JobState, JobUpdate
from fixtures import payload, payload_names
from receiver.settings import Settings, load_settings, unknown_variables
from receiver.vendors import ADAPTERS, polled_vendors
from receiver.vendors._fields import web_url
from receiver.vendors.base import SubmitResult, VendorAdapter, check_job_id
from tests.properties import JSON_VALUES, check_parsers, check_submit_response

NAMES = list(ADAPTERS)
EVERY_ADAPTER = pytest.mark.parametrize("adapter", list(ADAPTERS.values()), ids=NAMES)
ASYNC = [a for a in ADAPTERS.values() if not a.synchronous]
EVERY_ASYNC_ADAPTER = pytest.mark.parametrize("adapter", ASYNC, ids=[a.name for a in ASYNC])
CALLBACK_URL = "https://relay.example.com/v1/callbacks/{vendor}/cbt_contract?x=1"
COST_UNITS = frozenset({"credits", "usd"})


def fixtures(prefixes: tuple[str, ...]) -> list[tuple[VendorAdapter, str]]:
    """``(adapter, fixture name)`` for every fixture of every vendor whose name starts with a prefix."""
    return [
        (adapter, name)
        for adapter in ADAPTERS.values()
        for name in payload_names(adapter.name)
        if name.startswith(prefixes)
    ]


def by_fixture(pairs: list[tuple[VendorAdapter, str]]) -> pytest.MarkDecorator:
    """Parametrize a test over ``(adapter, name)`` pairs, with ``vendor-name`` ids."""
    return pytest.mark.parametrize(
        ("adapter", "name"), pairs, ids=[f"{adapter.name}-{name}" for adapter, name in pairs]
    )


SUBMITS = fixtures(("submit_", "response_"))
MESSAGES = fixtures(("callback_", "status_"))
ERRORS = fixtures(("error_",))


def parse_fixture(adapter: VendorAdapter, name: str, raw: bytes | None = None) -> JobUpdate | None:
    """What the adapter makes of a fixture (or of ``raw`` in its place), by the fixture's kind."""
    raw = payload(adapter.name, name) if raw is None else raw
    if name.startswith("callback_"):
        return adapter.parse_callback(raw, {})
    if name.startswith("status_"):
        return adapter.parse_status(200, raw)
    return adapter.parse_submit_response(200, raw, {}).update


def at_path(data: Any, path: str) -> Any:
    """The value at a dotted path (``"data.costTime"``), ``None`` when any part is absent."""
    for part in path.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def with_path(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``data`` with the dotted ``path`` set to ``value``."""
    copy = json.loads(json.dumps(data))
    *parents, last = path.split(".")
    target = copy
    for part in parents:
        target = target[part]
    target[last] = value
    return dict(copy)


# --- the registry -------------------------------------------------------------------------------


def test_every_vendor_module_is_registered() -> None:
    """Each vendor module of the package is in the registry, under the name of its payload folder."""
    modules = sorted(
        info.name
        for info in pkgutil.iter_modules(receiver.vendors.__path__)
        if not info.name.startswith("_") and info.name != "base"
    )
    assert sorted(ADAPTERS) == modules
    for name, adapter in ADAPTERS.items():
        assert adapter.name == name
        assert payload_names(name), f"{name} has no payload fixtures"


NEW_VENDOR = """
from typing import Any, ClassVar
from pydantic import BaseModel
from receiver.vendors.base import AdapterBase


class Params(BaseModel):
    image: str


class Adapter(AdapterBase):
    name: ClassVar[str] = "zz_contract_probe"
    params_model: ClassVar[type[BaseModel]] = Params
    params_example: ClassVar[dict[str, Any]] = {"image": "https://example.com/a.png"}
    credential_setting: ClassVar[str] = "apixo_api_key"
    base_url_setting: ClassVar[str] = "apixo_base_url"


ADAPTER = Adapter()
"""


def _discover_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str) -> dict[str, VendorAdapter]:
    """The registry as a fresh start would build it with ``module`` dropped into the vendors package:
    the real discovery, asked to look in a temporary folder too."""
    (tmp_path / "zz_contract_probe.py").write_text(module)
    monkeypatch.delitem(sys.modules, "receiver.vendors.zz_contract_probe", raising=False)
    try:
        return receiver.vendors.discover([*receiver.vendors.__path__, str(tmp_path)])
    finally:
        sys.modules.pop("receiver.vendors.zz_contract_probe", None)


def test_a_new_vendor_module_is_registered_without_other_edits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dropping a module into the vendors package is all the registry needs to register its adapter."""
    found = _discover_with(tmp_path, monkeypatch, NEW_VENDOR)
    assert list(found) == sorted([*ADAPTERS, "zz_contract_probe"])
    assert found["zz_contract_probe"].poll_timing is None and not found["zz_contract_probe"].synchronous


OWN_SETTINGS_VENDOR = (
    NEW_VENDOR.replace('"apixo_api_key"', '"zz_contract_probe_api_key"')
    .replace('"apixo_base_url"', '"zz_contract_probe_base_url"')
    .replace(
        "ADAPTER = Adapter()",
        'Adapter.default_base_url = "https://api.probe.example/"\nADAPTER = Adapter()',
    )
)


def test_a_new_vendors_settings_are_read_without_a_settings_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A vendor module names its own credential and base URL settings: RELAY_<NAME>_API_KEY is read
    from the environment (and is not reported as an unknown variable), the base URL falls back to the
    adapter's default, and RELAY_<NAME>_BASE_URL overrides it; Settings itself is not edited."""
    found = _discover_with(tmp_path, monkeypatch, OWN_SETTINGS_VENDOR)
    # registered as the package's own discovery would at start (undone after the test)
    monkeypatch.setitem(receiver.vendors.ADAPTERS, "zz_contract_probe", found["zz_contract_probe"])
    monkeypatch.chdir(tmp_path)  # no .env of the project's
    monkeypatch.setenv("RELAY_ZZ_CONTRACT_PROBE_API_KEY", "probe-key-1")
    settings = load_settings()
    assert "zz_contract_probe_api_key" not in Settings.model_fields
    assert settings.vendor_credential("zz_contract_probe_api_key") == "probe-key-1"
    assert settings.vendor_base_url("zz_contract_probe_base_url") == "https://api.probe.example"
    assert unknown_variables(["RELAY_ZZ_CONTRACT_PROBE_API_KEY", "RELAY_ZZ_CONTRACT_PROBE_BASE_URL"]) == []
    assert (
        "did you mean RELAY_ZZ_CONTRACT_PROBE_API_KEY"
        in unknown_variables(["RELAY_ZZ_CONTRACT_PROBE_APIKEY"])[0]
    )
    monkeypatch.setenv("RELAY_ZZ_CONTRACT_PROBE_BASE_URL", "http://127.0.0.1:9/")
    assert load_settings().vendor_base_url("zz_contract_probe_base_url") == "http://127.0.0.1:9"
    monkeypatch.delenv("RELAY_ZZ_CONTRACT_PROBE_API_KEY")
    (tmp_path / ".env").write_text("RELAY_ZZ_CONTRACT_PROBE_API_KEY=from-dotenv\n")
    assert load_settings().vendor_credential("zz_contract_probe_api_key") == "from-dotenv"


def test_polled_vendors_are_the_adapters_with_a_poll_timing() -> None:
    """The polled vendors come from the adapters: those with a status endpoint declare a poll timing."""
    assert polled_vendors() == tuple(n for n, a in ADAPTERS.items() if a.poll_timing is not None)
    assert set(polled_vendors()) == {a.name for a in ASYNC}


def test_poll_settings_are_checked_against_the_registry() -> None:
    """``RELAY_POLL_AFTER`` accepts every polled vendor and refuses any other name, listing the polled ones."""
    assert Settings(poll_after={name: 5.0 for name in polled_vendors()}).poll_after.keys() == set(
        polled_vendors()
    )
    with pytest.raises(ValidationError, match="polled vendors: " + ", ".join(polled_vendors())):
        Settings(poll_after={"nosuchvendor": 5.0})


# --- attributes ---------------------------------------------------------------------------------


@EVERY_ADAPTER
def test_attributes_are_consistent(adapter: VendorAdapter) -> None:
    """Settings exist, a synchronous vendor has no callback fields nor polling, timings are positive."""
    assert adapter.credential_setting in Settings.model_fields
    assert adapter.base_url_setting in Settings.model_fields
    if adapter.synchronous:
        assert (adapter.reserved_fields, adapter.poll_timing) == (frozenset(), None)
    else:
        assert adapter.reserved_fields and adapter.poll_timing is not None
    if adapter.poll_timing is not None:
        assert adapter.poll_timing.first > 0 and adapter.poll_timing.every > 0
    assert adapter.cost_field is None or adapter.cost_field.strip(".") == adapter.cost_field


@EVERY_ADAPTER
def test_params_example_is_valid(adapter: VendorAdapter) -> None:
    """The adapter's documented ``params`` example validates against its own strict model."""
    adapter.params_model.model_validate(adapter.params_example)


@EVERY_ADAPTER
def test_reserved_fields_are_refused_by_name(adapter: VendorAdapter) -> None:
    """A client that sends a relay-owned callback field gets a validation error naming that field."""
    for field in adapter.reserved_fields:
        with pytest.raises(ValidationError) as caught:
            adapter.params_model.model_validate({**adapter.params_example, field: "https://evil.example.com"})
        assert [err["loc"] for err in caught.value.errors()] == [(field,)]


@EVERY_ADAPTER
def test_auth_headers_carry_the_credential(adapter: VendorAdapter) -> None:
    """The auth headers carry the credential, whole; the vendor requests themselves never do."""
    headers = adapter.auth_headers("secret-credential-1")
    assert headers and any("secret-credential-1" in value for value in headers.values())
    request = adapter.submit_request(params(adapter), callback_url=None, job_id="job_01")
    assert "secret-credential-1" not in json.dumps([request.headers, request.json, request.query])


@EVERY_ADAPTER
def test_unsigned_callbacks_verify_anything(adapter: VendorAdapter) -> None:
    """A vendor that does not sign its callbacks accepts any body and headers in ``verify_callback``."""
    if adapter.signs_callbacks:
        pytest.skip("signed callbacks are tested in the vendor's own module")
    adapter.verify_callback(b"\xff", {"x-signature": "nope"}, None)
    adapter.verify_callback(b"{}", {}, "credential")


# --- requests -----------------------------------------------------------------------------------


def params(adapter: VendorAdapter) -> BaseModel:
    return adapter.params_model.model_validate(adapter.params_example)


@EVERY_ADAPTER
def test_submit_request_carries_the_callback_field(adapter: VendorAdapter) -> None:
    """An async vendor's submit carries the callback URL in one of its reserved fields; a synchronous
    vendor's carries none of them."""
    url = CALLBACK_URL.format(vendor=adapter.name)
    request = adapter.submit_request(
        params(adapter), callback_url=None if adapter.synchronous else url, job_id="job_01"
    )
    assert request.method == "POST" and request.path.startswith("/")
    assert isinstance(request.json, dict)
    carrying = {key for key, value in request.json.items() if value == url}
    if adapter.synchronous:
        assert carrying == set() and not adapter.reserved_fields & request.json.keys()
    else:
        assert len(carrying) == 1 and carrying <= adapter.reserved_fields


@EVERY_ADAPTER
def test_submit_request_refuses_another_model(adapter: VendorAdapter) -> None:
    """Params of another model are a programming error, a ``TypeError`` naming the expected model."""

    class Other(BaseModel):
        image: str = "https://example.com/a.png"

    with pytest.raises(TypeError, match=f"expected {adapter.params_model.__name__}"):
        adapter.submit_request(Other(), callback_url=None, job_id="job_01")


UNUSABLE_JOB_IDS = ["", "x" * 513, "id\n", "a\x00b", "a\x7fb", "a\x85b"]
OPAQUE_JOB_IDS = [
    "3f2b9c1e-8d4a-4e6f-9b1c-2a3d4e5f6a7b",
    "8123456789",
    "job.2026.01",
    "a/../b",
    "x?y=1",
    "../../x?probe=1#frag",
    "%2e%2e",
    "..",
    "task 1",
    "tâche-画像",
    "x" * 512,
]


@EVERY_ADAPTER
@pytest.mark.parametrize("job_id", UNUSABLE_JOB_IDS, ids=["empty", "513", "newline", "nul", "del", "c1"])
def test_unusable_job_ids_are_refused(adapter: VendorAdapter, job_id: str) -> None:
    """An empty vendor job id, one over 512 characters or one with a control character is refused."""
    with pytest.raises(PayloadError, match=f"^{adapter.name} job id: "):
        check_job_id(adapter, job_id)


@EVERY_ADAPTER
@pytest.mark.parametrize("job_id", OPAQUE_JOB_IDS)
def test_any_other_job_id_is_accepted_and_stays_inside_the_status_url(
    adapter: VendorAdapter, job_id: str
) -> None:
    """Vendor job ids are opaque: any other id is accepted, and a status request carries it whole as one
    percent-encoded path segment or query value, so a poll never leaves the vendor's status path."""
    assert check_job_id(adapter, job_id) == job_id
    request = adapter.status_request(job_id)
    if request is None:
        return
    fixed = adapter.status_request("ID").path  # type: ignore[union-attr]
    if request.query:
        assert request.path == fixed and list(request.query.values()) == [job_id]
        return
    prefix, _, suffix = fixed.partition("ID")
    assert request.path.startswith(prefix) and request.path.endswith(suffix)
    segment = request.path[len(prefix) : len(request.path) - len(suffix)]
    assert not set(segment) & set("/?#") and segment.strip(".") and unquote(segment) == job_id


@by_fixture(SUBMITS + MESSAGES)
def test_fixture_job_ids_are_accepted(adapter: VendorAdapter, name: str) -> None:
    """Every vendor job id in the fixtures passes the check, and its status request is a path without
    dot segments, query or fragment injected by the id."""
    raw = payload(adapter.name, name)
    job_id = (
        adapter.parse_submit_response(200, raw, {}).vendor_job_id
        if name.startswith(("submit_", "response_"))
        else parse_fixture(adapter, name).vendor_job_id  # type: ignore[union-attr]
    )
    if job_id is None:
        return
    assert check_job_id(adapter, job_id) == job_id
    request = adapter.status_request(job_id)
    if request is not None:
        assert request.method == "GET"
        assert "/../" not in request.path and "#" not in request.path and "?" not in request.path


@by_fixture(SUBMITS)
def test_status_request_exists_exactly_when_polled(adapter: VendorAdapter, name: str) -> None:
    """A vendor has a status request if and only if the poller polls it."""
    job_id = adapter.parse_submit_response(200, payload(adapter.name, name), {}).vendor_job_id
    assert job_id is not None
    assert (adapter.status_request(job_id) is None) == (adapter.poll_timing is None)


# --- the documented states ----------------------------------------------------------------------


@by_fixture(SUBMITS)
def test_submit_fixtures_give_the_vendor_job_id(adapter: VendorAdapter, name: str) -> None:
    """A documented 2xx submit answer gives a vendor job id; a synchronous vendor's is the outcome."""
    result = adapter.parse_submit_response(200, payload(adapter.name, name), {})
    assert isinstance(result, SubmitResult) and result.vendor_job_id
    if adapter.synchronous:
        assert result.update is not None and result.update.state is JobState.SUCCEEDED


@by_fixture(MESSAGES)
def test_callback_and_status_fixtures_have_a_known_state(adapter: VendorAdapter, name: str) -> None:
    """Every documented callback and status body parses to a known state: a success has outputs with
    URLs, a failure an error code, and nothing else has either."""
    update = parse_fixture(adapter, name)
    assert update is not None and update.state is not None and update.raw_state
    if update.state is JobState.SUCCEEDED:
        assert all(web_url(o.url) for o in update.outputs) and update.error is None
        # only a documented success without its URL yet (LTX: completed and assetUrl out of sync)
        assert update.outputs or "no_asset" in name
    elif update.state is JobState.FAILED:
        assert update.error is not None and update.error.code and not update.outputs
    else:
        assert not update.outputs and update.error is None
    assert update.progress is None or 0 <= update.progress <= 100


@EVERY_ASYNC_ADAPTER
def test_fixtures_cover_both_outcomes(adapter: VendorAdapter) -> None:
    """An async vendor's fixtures include a succeeded and a failed body, plus a non-terminal one."""
    states = {parse_fixture(adapter, name).state for a, name in MESSAGES if a is adapter}  # type: ignore[union-attr]
    assert {JobState.SUCCEEDED, JobState.FAILED} <= states
    assert states & {JobState.QUEUED, JobState.RUNNING}


@by_fixture(ERRORS)
def test_error_fixtures_are_upstream_errors(adapter: VendorAdapter, name: str) -> None:
    """A documented error answer (at the status in its name, else 400) is an UpstreamError with a message;
    a refusal other than 429 is not retryable."""
    suffix = name.rsplit("_", 1)[-1]
    status = int(suffix) if suffix.isdigit() else 400
    with pytest.raises(UpstreamError) as caught:
        adapter.parse_submit_response(status, payload(adapter.name, name), {})
    error = caught.value
    assert error.message and error.code and error.http_status == status
    if 400 <= status < 500 and status != 429:
        assert not error.retryable


@EVERY_ADAPTER
@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_read_in_seconds_and_as_a_date(adapter: VendorAdapter, status: int) -> None:
    """A 429 or 503 submit answer carries the vendor's ``Retry-After``, in seconds or as an HTTP-date."""
    with pytest.raises(UpstreamError) as caught:
        adapter.parse_submit_response(status, b"{}", {"Retry-After": "12"})
    assert caught.value.retry_after == 12.0
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    with pytest.raises(UpstreamError) as caught:
        adapter.parse_submit_response(status, b"{}", {"retry-after": when})
    assert caught.value.retry_after is not None and 100 <= caught.value.retry_after <= 121
    with pytest.raises(UpstreamError) as caught:
        adapter.parse_submit_response(status, b"{}", {"Retry-After": "soon"})
    assert caught.value.retry_after is None


# --- cost ---------------------------------------------------------------------------------------


@by_fixture(SUBMITS + MESSAGES)
def test_cost_is_parsed_where_the_fixture_reports_it(adapter: VendorAdapter, name: str) -> None:
    """``cost`` is set, in a known unit and non-negative, exactly when the body holds the vendor's
    documented cost field, or is the vendor's fixed ``price`` (APIXO: every task is billed); otherwise
    it is ``None``."""
    update = parse_fixture(adapter, name)
    if update is None:
        return
    if adapter.price is not None:
        assert adapter.cost_field is None and update.cost == adapter.price
        return
    data = json.loads(payload(adapter.name, name))
    reported = adapter.cost_field is not None and at_path(data, adapter.cost_field) is not None
    if not reported:
        assert update.cost is None
        return
    assert update.cost is not None
    assert update.cost.unit in COST_UNITS
    assert math.isfinite(update.cost.amount) and update.cost.amount >= 0


COST_FIXTURES = [
    (adapter, name)
    for adapter, name in SUBMITS + MESSAGES
    if adapter.cost_field is not None
    and at_path(json.loads(payload(adapter.name, name)), adapter.cost_field) is not None
]


def test_every_cost_field_appears_in_a_fixture() -> None:
    """Each vendor that documents a cost field has a fixture reporting it (so the contract checks it)."""
    with_cost = {adapter.name for adapter, _ in COST_FIXTURES}
    assert with_cost == {a.name for a in ADAPTERS.values() if a.cost_field is not None}


@by_fixture(COST_FIXTURES)
@pytest.mark.parametrize("bad", ["ten", True, [1], {"amount": 1}])
def test_an_unreadable_cost_is_left_out_as_an_anomaly_naming_the_field(
    adapter: VendorAdapter, name: str, bad: Any
) -> None:
    """A cost that is not a number is never guessed: it is left out (``cost`` is ``None``) and recorded
    as an anomaly at the cost field, and the message still parses."""
    assert adapter.cost_field is not None
    data = with_path(json.loads(payload(adapter.name, name)), adapter.cost_field, bad)
    update = parse_fixture(adapter, name, json.dumps(data).encode())
    assert update is not None and update.cost is None
    assert [a.path for a in update.anomalies] == [adapter.cost_field]


@by_fixture(COST_FIXTURES)
@pytest.mark.parametrize("given", ["10", 10.0, 10.5])
def test_a_cost_is_read_from_a_float_or_numeric_string(adapter: VendorAdapter, name: str, given: Any) -> None:
    """A cost sent as a float or a numeric string (where the page gives an integer) is read as a number."""
    assert adapter.cost_field is not None
    data = with_path(json.loads(payload(adapter.name, name)), adapter.cost_field, given)
    update = parse_fixture(adapter, name, json.dumps(data).encode())
    assert update is not None and update.cost is not None and update.anomalies == ()
    assert update.cost.amount * (1000 if update.cost.unit == "compute_seconds" else 1) == float(given)


@by_fixture(COST_FIXTURES)
def test_a_null_cost_is_no_cost(adapter: VendorAdapter, name: str) -> None:
    """A cost field that is ``null`` means the vendor did not report one: ``cost`` is ``None``."""
    assert adapter.cost_field is not None
    data = with_path(json.loads(payload(adapter.name, name)), adapter.cost_field, None)
    update = parse_fixture(adapter, name, json.dumps(data).encode())
    assert update is not None and update.cost is None


# --- malformed, oversized and hostile bodies ----------------------------------------------------

HOSTILE: list[tuple[bytes, str]] = [
    (b"", "empty body"),
    (b"  \n\t", "empty body"),
    (b"\xff\xfe{}", "body is not UTF-8"),
    (b"\xc3\x28", "body is not UTF-8"),
    (b"{not json", "body is not JSON"),
    (b"\xef\xbb\xbf{}", "body is not JSON"),  # a UTF-8 byte order mark
    (b"[]", "body must be a JSON object, got list"),
    (b'"completed"', "body must be a JSON object, got str"),
    (b"null", "body must be a JSON object, got NoneType"),
    (b"[" * 100_000, "body is not JSON"),
    (b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, "body is not JSON: nested too deeply"),
    (b'{"progress": ' + b"9" * 5000 + b"}", "body is not JSON"),
]
OVERSIZED_OR_ODD: list[bytes] = [
    json.dumps({"status": "x" * 2_000_000, "data": {"state": "y" * 1_000_000}}).encode(),
    b'{"status": "\\ud800", "jobId": "\\udfff", "data": {"taskId": "\\ud800"}}',
    b'{"status": "\\u0000", "success": true, "image_url": "\\u0000"}',
    json.dumps({"status": "completed", "progress": 1e308, "createTime": -(2**63)}).encode(),
]


@EVERY_ADAPTER
@pytest.mark.parametrize(("raw", "message"), HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_bodies_are_payload_errors(adapter: VendorAdapter, raw: bytes, message: str) -> None:
    """Empty, non-UTF-8, non-JSON, non-object, too deep or too long bodies are a PayloadError saying so,
    as a callback, a status answer and a 2xx submit answer."""
    parsers: list[Callable[[], object]] = [lambda: adapter.parse_submit_response(200, raw, {})]
    if not adapter.synchronous:
        parsers += [lambda: adapter.parse_callback(raw, {}), lambda: adapter.parse_status(200, raw)]
    for parse in parsers:
        with pytest.raises(PayloadError) as caught:
            parse()
        assert message in caught.value.message


@EVERY_ADAPTER
@pytest.mark.parametrize("raw", OVERSIZED_OR_ODD, ids=range(len(OVERSIZED_OR_ODD)))
def test_oversized_or_odd_bodies_do_not_crash(adapter: VendorAdapter, raw: bytes) -> None:
    """Huge strings, lone surrogates, NUL characters and extreme numbers parse or raise PayloadError."""
    check_parsers(adapter, raw)
    check_submit_response(adapter, 200, raw)


STATUSES = st.integers(min_value=100, max_value=599)


@EVERY_ADAPTER
@settings(deadline=None, max_examples=300)
@given(raw=st.binary())
def test_arbitrary_bytes_raise_only_validation_errors(adapter: VendorAdapter, raw: bytes) -> None:
    """Whatever the bytes, the callback and status parsers return an update or raise PayloadError."""
    check_parsers(adapter, raw)


@EVERY_ADAPTER
@settings(deadline=None, max_examples=300)
@given(value=JSON_VALUES)
def test_arbitrary_json_raises_only_validation_errors(adapter: VendorAdapter, value: Any) -> None:
    """Whatever the JSON value, the callback and status parsers return an update or raise PayloadError."""
    check_parsers(adapter, json.dumps(value).encode())


@EVERY_ADAPTER
@settings(deadline=None, max_examples=300)
@given(status=STATUSES, raw=st.binary() | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_submit_answers_raise_only_validation_or_vendor_errors(
    adapter: VendorAdapter, status: int, raw: bytes
) -> None:
    """Whatever the status and body, a submit answer parses or raises PayloadError or UpstreamError."""
    check_submit_response(adapter, status, raw)


@by_fixture(SUBMITS + MESSAGES)
@settings(deadline=None, max_examples=50)
@given(value=JSON_VALUES)
def test_any_field_of_a_fixture_replaced_raises_only_validation_errors(
    adapter: VendorAdapter, name: str, value: Any
) -> None:
    """Replacing any one top-level field of a documented body by arbitrary JSON parses or raises only
    PayloadError (or, where a 2xx can carry one, UpstreamError)."""
    data = json.loads(payload(adapter.name, name))
    for key in data:
        raw = json.dumps({**data, key: value}).encode()
        check_parsers(adapter, raw)
        check_submit_response(adapter, 200, raw)
