"""The API schema (issue 11): ``/openapi.json`` covers every route and is valid OpenAPI 3.1, ``/docs``
renders it from local assets, and the event contract's JSON Schema is published, served and met by
what the relay really delivers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi
from pydantic import SecretStr
from starlette.applications import Starlette

from dispatch.event_schema import EVENT_SCHEMA_FILE, event_schema_text
from fixtures.harness import serve_in_thread, wait_until
from receiver.api.openapi import documented_routes
from receiver.app import create_app
from receiver.fakes import source_image
from receiver.fakes.subscriber import create_subscriber
from receiver.settings import Settings
from tests.relay_env import API_TOKEN, RelayEnv, relay_env

ROOT = Path(__file__).resolve().parent.parent
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
ENVELOPED = {"401", "404", "409", "413", "422", "429"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Starlette:
    """A relay app without its worker: the schema routes need nothing else."""
    db = tmp_path_factory.mktemp("openapi") / "relay.db"
    return create_app(
        Settings(database_url=f"sqlite:///{db}", api_token=SecretStr(API_TOKEN)), run_worker=False
    )


@pytest.fixture(scope="module")
def client(app: Starlette) -> Iterator[httpx.Client]:
    with serve_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def document(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    doc: dict[str, Any] = response.json()
    return doc


def validator_for(document: dict[str, Any], component: str) -> jsonschema.Draft202012Validator:
    """A validator of ``#/components/schemas/<component>`` (OpenAPI 3.1 schemas are JSON Schema 2020-12)."""
    schema = {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def test_openapi_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    validate_openapi(document)


def test_every_route_of_the_app_is_in_the_schema(app: Starlette, document: dict[str, Any]) -> None:
    served = documented_routes(app.routes)
    assert len(served) >= 27
    missing = [
        f"{method} {path}" for method, path in served if method.lower() not in document["paths"].get(path, {})
    ]
    assert not missing, f"routes without an OpenAPI operation: {missing}"
    described = {(m.upper(), p) for p, item in document["paths"].items() for m in item}
    assert described == set(served), "the schema describes routes the app does not serve"
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_operations_describe_parameters_bodies_and_errors(document: dict[str, Any]) -> None:
    paths = document["paths"]
    create = paths["/v1/jobs"]["post"]
    assert set(create["responses"]) >= {"200", "202", "401", "404", "413", "422", "503"}
    variants = document["components"]["schemas"]["JobCreate"]["oneOf"]
    assert {v["properties"]["vendor"]["const"] for v in variants} == {
        "ltxstudio",
        "dreamina",
        "apiframe",
        "apixo",
        "artnex",
    }
    assert [p["name"] for p in create["parameters"]] == ["Idempotency-Key"]
    listing = {p["name"]: p for p in paths["/v1/events"]["get"]["parameters"]}
    assert set(listing) == {"limit", "cursor", "job_id", "vendor", "type", "since", "until"}
    assert listing["since"]["schema"] == {"type": "string", "format": "date-time"}
    assert listing["limit"]["schema"]["maximum"] == 500
    callback = paths["/v1/callbacks/{vendor}/{token}"]["post"]
    assert [p["name"] for p in callback["parameters"]] == ["vendor", "token"]
    assert set(callback["responses"]) == {"200", "401", "404", "413", "422", "429", "503"}
    for path, item in paths.items():
        for method, op in item.items():
            for status, answer in op["responses"].items():
                if status in ENVELOPED:
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
            if path.startswith("/v1/") and "{id}" in path:
                assert "404" in op["responses"], (method, path)
    envelope = document["components"]["schemas"]["ErrorDetail"]
    assert set(envelope["required"]) == {"code", "message", "details"}


def test_bearer_security_everywhere_under_v1_but_callbacks(document: dict[str, Any]) -> None:
    """... and on /metrics (as configured by default: RELAY_METRICS_PUBLIC=false)."""
    assert document["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    assert document["paths"]["/metrics"]["get"]["responses"]["200"]["content"] == {
        "text/plain": {"schema": {"type": "string"}}
    }
    for path, item in document["paths"].items():
        for method, op in item.items():
            needs = (path.startswith("/v1/") and not path.startswith("/v1/callbacks/")) or path == "/metrics"
            assert op["security"] == ([{"bearerAuth": []}] if needs else []), (method, path)
            assert ("401" in op["responses"]) == (needs or path.startswith("/v1/callbacks/")), (method, path)


def test_schema_and_docs_are_public_the_event_schema_is_not(client: httpx.Client) -> None:
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200
    refused = client.get("/v1/schemas/event.json")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    served = client.get("/v1/schemas/event.json", headers=AUTH)
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("application/schema+json")


def test_docs_page_uses_only_local_assets(client: httpx.Client) -> None:
    page = client.get("/docs")
    assert page.headers["content-type"].startswith("text/html")
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(r'url: "([^"]+)"', page.text)
    assert "/docs/assets/swagger-ui-bundle.js" in refs and "/openapi.json" in refs
    assert not [ref for ref in refs if "//" in ref], "an asset from elsewhere"
    for ref in refs:
        asset = client.get(ref)
        assert asset.status_code == 200 and asset.content, ref
    assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text


def test_published_event_schema_is_current(client: httpx.Client) -> None:
    """``schemas/event.schema.json`` is what the model generates (else: ``python -m dispatch.event_schema``)."""
    published = (ROOT / EVENT_SCHEMA_FILE).read_text(encoding="utf-8")
    assert published == event_schema_text(), "stale: run `python -m dispatch.event_schema`"
    assert client.get("/v1/schemas/event.json", headers=AUTH).json() == json.loads(published)
    jsonschema.Draft202012Validator.check_schema(json.loads(published))


def event_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((ROOT / EVENT_SCHEMA_FILE).read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def test_event_schema_refuses_bodies_off_the_contract() -> None:
    validator = event_validator()
    data: dict[str, Any] = {
        "job_id": "job_1",
        "vendor": "apixo",
        "vendor_job_id": None,
        "status": "succeeded",
        "progress": 100,
        "sequence": 1,
        "outputs": [],
        "error": None,
        "reference": None,
        "submitted_at": None,
        "completed_at": "2026-11-22T10:00:32.000Z",
    }
    good: dict[str, Any] = {
        "id": "evt_" + "a" * 26,
        "type": "job.succeeded",
        "timestamp": "2026-11-22T10:00:32.123Z",
        "data": data,
    }
    validator.validate(good)
    for broken in (
        {**good, "type": "job.done"},
        {**good, "extra": 1},
        {**good, "timestamp": "yesterday"},
        {**good, "data": {k: v for k, v in data.items() if k != "sequence"}},
        {**good, "data": {**data, "progress": 101}},
    ):
        assert not validator.is_valid(broken), broken


@pytest.fixture
def env(tmp_path: Path) -> Iterator[RelayEnv]:
    with relay_env(tmp_path) as running:
        yield running


def test_real_delivery_and_api_answers_match_their_schemas(env: RelayEnv) -> None:
    """A delivered event validates against ``/v1/schemas/event.json``; the job, event and delivery the
    API shows for it validate against ``/openapi.json``."""
    env.subscribe(event_types=["job.queued", "job.running", "job.progress", "job.succeeded", "job.failed"])
    job = env.submit("apixo", {"input": {"image_urls": [source_image("schema")]}}, reference="order-7")
    env.wait_status(job["id"], "succeeded")
    wait_until(
        lambda: any(d.json.get("type") == "job.succeeded" for d in env.sub_log.deliveries()),
        message="job.succeeded not delivered",
    )
    served = env.ok(env.client.get("/v1/schemas/event.json"), 200)
    checker = jsonschema.Draft202012Validator(
        served, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    for delivery in env.sub_log.deliveries():
        checker.validate(delivery.json)
    document = httpx.get(f"{env.relay.url}/openapi.json").json()
    validator_for(document, "JobDetail").validate(env.job(job["id"]))
    events = env.ok(env.client.get("/v1/events", params={"job_id": job["id"]}), 200)
    validator_for(document, "EventList").validate(events)
    deliveries = env.ok(env.client.get("/v1/deliveries", params={"status": "succeeded"}), 200)
    validator_for(document, "DeliveryList").validate(deliveries)
    one = env.ok(env.client.get(f"/v1/deliveries/{deliveries['data'][0]['id']}"), 200)
    assert one["attempt_log"]
    validator_for(document, "Delivery").validate(one)


def test_subscriber_fails_the_test_on_a_delivery_off_the_contract() -> None:
    """The test subscriber checks what the relay delivers (``User-Agent: upscale-relay/...``) against
    the event schema: reading its log then raises, so the test that received the body fails."""
    app, log = create_subscriber()
    with serve_in_thread(app) as server, httpx.Client(base_url=server.url) as http:
        http.post("/hooks/a", json={"id": "evt_1"}, headers={"User-Agent": "curl/8"})
        assert log.count() == 1 and log.deliveries()[0].contract_error is None
        http.post(
            "/hooks/a", json={"id": "evt_1", "type": "job.done"}, headers={"User-Agent": "upscale-relay/0"}
        )
        with pytest.raises(AssertionError, match="break the event contract"):
            log.deliveries()
        assert log.recorded()[1].contract_error is not None
