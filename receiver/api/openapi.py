"""``GET /openapi.json`` (OpenAPI 3.1), ``GET /docs`` (Swagger UI from the ``swagger-ui-bundle-v2``
package's files, no CDN) and ``GET /v1/schemas/event.json`` (the delivered event's JSON Schema).

The document is generated: every route of the app is looked up in :data:`OPERATIONS` (by its handler)
and described with the pydantic models the handler reads (request bodies, the vendors' params models)
and those of :mod:`receiver.api.schemas` (answers, query strings); pydantic writes the JSON Schemas.
A route missing from :data:`OPERATIONS` is left out (``tests/test_openapi.py`` fails on it). Whether
an operation needs the bearer token follows :mod:`receiver.auth`'s rule.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from dispatch.event_schema import event_json_schema
from receiver.api import events, jobs, schemas as s, sources, subscribers
from receiver.auth import needs_token
from receiver.vendors import ADAPTERS

OPENAPI_VERSION = "3.1.0"
REF_TEMPLATE = "#/components/schemas/{model}"
SECURITY_SCHEME = "bearerAuth"

ERROR_DESCRIPTIONS = {
    401: "Missing or wrong bearer token (`unauthorized`)",
    404: "Unknown id, vendor or callback URL (`not_found`)",
    409: "Contradicts stored state (`conflict`)",
    413: "Body over the size limit (`payload_too_large`)",
    422: "Malformed input, naming the field (`validation_failed`)",
    429: "A per-job or per-source cap is reached (`too_many_requests`); nothing was stored",
    503: "The database could not be reached or written in time (`store_unavailable`), or a needed"
    " setting is missing (`not_configured`)",
}

Success = type[BaseModel] | Literal["empty", "binary", "json", "html", "prometheus"]


@dataclass(frozen=True)
class Operation:
    """How one handler is described: ``answers`` maps success codes to a model (or ``"empty"``,
    ``"binary"``, ``"json"``, ``"html"``); ``errors`` the codes answered with the error envelope;
    ``body`` the request model, ``query`` the query-string model."""

    summary: str
    tag: str
    answers: dict[int, Success]
    errors: tuple[int, ...] = ()
    body: type[BaseModel] | Literal["any"] | None = None
    query: type[BaseModel] | None = None
    headers: type[BaseModel] | None = None
    answer_descriptions: dict[int, str] = field(default_factory=dict)
    answer_headers: dict[int, dict[str, str]] = field(default_factory=dict)


ADMIN = (401, 503)


async def openapi_json(request: Request) -> Response:
    """This document (OpenAPI 3.1), generated from the app's routes and pydantic models."""
    app = request.app
    if app not in _DOCUMENTS:
        _DOCUMENTS[app] = json.dumps(openapi_document(app.routes), ensure_ascii=False).encode()
    return Response(_DOCUMENTS[app], media_type="application/json")


async def docs(request: Request) -> HTMLResponse:
    """Swagger UI over ``/openapi.json``; its scripts and styles are served from ``/docs/assets``."""
    root = request.scope.get("root_path", "").rstrip("/")
    return HTMLResponse(DOCS_PAGE.format(root=root))


async def event_schema(request: Request) -> JSONResponse:
    """The JSON Schema (draft 2020-12) of every event body delivered to subscribers; the same as the
    repository's ``schemas/event.schema.json``."""
    return JSONResponse(event_json_schema(), media_type="application/schema+json")


DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>upscale-relay API</title>
<link rel="stylesheet" href="{root}/docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="{root}/docs/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{root}/docs/assets/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "{root}/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
}});
</script>
</body>
</html>
"""

OPERATIONS: dict[tuple[str, str], Operation] = {
    # probes (receiver.app)
    ("GET", "/healthz"): Operation("Liveness: the process answers", "health", {200: s.Health}),
    ("GET", "/readyz"): Operation(
        "Readiness: the database answers",
        "health",
        {200: s.Readiness, 503: s.Readiness},
        answer_descriptions={200: "Ready (`ok`)", 503: "The database does not answer (`unavailable`)"},
    ),
    # jobs
    ("POST", "/v1/jobs"): Operation(
        "Submit an upscale job",
        "jobs",
        {202: s.Job, 200: s.Job},
        (*ADMIN, 404, 413, 422),
        body=jobs.JobCreate,
        headers=s.JobCreateHeaders,
        answer_descriptions={
            202: "The job after its first submit attempt (or still `queued`)",
            200: "The job an earlier request with the same `Idempotency-Key` created (nothing submitted)",
        },
        answer_headers={200: {"Idempotent-Replayed": "`true`: this answer replays an earlier request"}},
    ),
    ("GET", "/v1/jobs"): Operation("List jobs", "jobs", {200: s.JobList}, (*ADMIN, 422), query=s.JobQuery),
    ("GET", "/v1/jobs/{id}"): Operation(
        "One job with its inbound messages and events", "jobs", {200: s.JobDetail}, (*ADMIN, 404)
    ),
    # receiver.api.outputs (mirroring)
    ("POST", "/v1/jobs/{id}/mirror"): Operation(
        "Copy a succeeded job's outputs to the mirror again",
        "jobs",
        {200: s.Job},
        (*ADMIN, 404, 409),
        answer_descriptions={200: "The job, each output with `mirror` or `mirror_error`"},
    ),
    ("GET", "/v1/outputs/{job_id}/{index}"): Operation(
        "A mirrored output's bytes (bearer token, or the signed `expires` and `sig` of its mirror URL)",
        "jobs",
        {200: "binary"},
        (*ADMIN, 404),
    ),
    # callbacks
    ("POST", "/v1/callbacks/{vendor}/{token}"): Operation(
        "A vendor's callback (the URL is the credential)",
        "callbacks",
        {200: s.CallbackAccepted},
        (401, 404, 413, 422, 429, 503),
        body="any",
    ),
    # events
    ("GET", "/v1/events"): Operation(
        "List events", "events", {200: s.EventList}, (*ADMIN, 422), query=s.EventQuery
    ),
    ("GET", "/v1/events/{id}"): Operation("One event", "events", {200: s.Event}, (*ADMIN, 404)),
    ("POST", "/v1/events/{id}/replay"): Operation(
        "Deliver an event again",
        "events",
        {202: s.DeliveryBatch},
        (*ADMIN, 404, 413, 422),
        body=events.ReplayRequest,
        answer_descriptions={202: "The new deliveries"},
    ),
    # inbound
    ("GET", "/v1/inbound"): Operation(
        "List stored vendor messages", "inbound", {200: s.InboundList}, (*ADMIN, 422), query=s.InboundQuery
    ),
    ("GET", "/v1/inbound/{id}"): Operation(
        "One stored vendor message", "inbound", {200: s.Inbound}, (*ADMIN, 404)
    ),
    ("GET", "/v1/inbound/{id}/body"): Operation(
        "The whole stored body of a vendor message", "inbound", {200: "binary"}, (*ADMIN, 404)
    ),
    ("POST", "/v1/inbound/{id}/reprocess"): Operation(
        "Run a stored callback through the current adapter again",
        "inbound",
        {200: s.Inbound},
        (*ADMIN, 404, 422),
        answer_descriptions={200: "The new stored message (kind `reprocess`)"},
    ),
    # subscribers
    ("POST", "/v1/subscribers"): Operation(
        "Create a subscriber",
        "subscribers",
        {201: s.SubscriberWithSecret},
        (*ADMIN, 413, 422),
        body=subscribers.SubscriberCreate,
    ),
    ("GET", "/v1/subscribers"): Operation(
        "List subscribers (oldest first)",
        "subscribers",
        {200: s.SubscriberList},
        (*ADMIN, 422),
        query=s.PageQuery,
    ),
    ("GET", "/v1/subscribers/{id}"): Operation(
        "One subscriber", "subscribers", {200: s.Subscriber}, (*ADMIN, 404)
    ),
    ("PATCH", "/v1/subscribers/{id}"): Operation(
        "Change a subscriber",
        "subscribers",
        {200: s.Subscriber},
        (*ADMIN, 404, 413, 422),
        body=subscribers.SubscriberPatch,
    ),
    ("DELETE", "/v1/subscribers/{id}"): Operation(
        "Delete a subscriber", "subscribers", {204: "empty"}, (*ADMIN, 404)
    ),
    ("POST", "/v1/subscribers/{id}/rotate-secret"): Operation(
        "Rotate a subscriber's signing secret", "subscribers", {200: s.SubscriberWithSecret}, (*ADMIN, 404)
    ),
    ("POST", "/v1/subscribers/{id}/recover"): Operation(
        "Re-send a subscriber's failed and dead deliveries",
        "subscribers",
        {202: s.RecoverResult},
        (*ADMIN, 404, 413, 422),
        body=subscribers.RecoverRequest,
    ),
    # sources
    ("POST", "/v1/sources"): Operation(
        "Create a callback URL for jobs submitted elsewhere",
        "sources",
        {201: s.SourceCreated},
        (*ADMIN, 404, 413, 422),
        body=sources.SourceCreate,
    ),
    ("GET", "/v1/sources"): Operation(
        "List sources", "sources", {200: s.SourceList}, (*ADMIN, 422), query=s.PageQuery
    ),
    ("GET", "/v1/sources/{id}"): Operation("One source", "sources", {200: s.Source}, (*ADMIN, 404)),
    # deliveries
    ("GET", "/v1/deliveries"): Operation(
        "List deliveries", "deliveries", {200: s.DeliveryList}, (*ADMIN, 422), query=s.DeliveryQuery
    ),
    ("GET", "/v1/deliveries/{id}"): Operation(
        "One delivery with its attempts", "deliveries", {200: s.Delivery}, (*ADMIN, 404)
    ),
    ("POST", "/v1/deliveries/{id}/retry"): Operation(
        "Make a dead or retrying delivery due now", "deliveries", {202: s.Delivery}, (*ADMIN, 404, 409)
    ),
    # stats
    ("GET", "/v1/stats"): Operation(
        "Vendors compared by numbers", "stats", {200: s.StatsReport}, (*ADMIN, 422), query=s.StatsQuery
    ),
    # this module
    ("GET", "/v1/schemas/event.json"): Operation(
        "JSON Schema of the delivered event", "meta", {200: "json"}, ADMIN
    ),
    ("GET", "/openapi.json"): Operation("This OpenAPI document", "meta", {200: "json"}),
    ("GET", "/docs"): Operation("Swagger UI", "meta", {200: "html"}),
    # receiver.metrics
    ("GET", "/metrics"): Operation(
        "Prometheus metrics (bearer token unless RELAY_METRICS_PUBLIC=true)",
        "meta",
        {200: "prometheus"},
        ADMIN,
    ),
}


def openapi_document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` (an app's ``app.routes``): every method and path in
    :data:`OPERATIONS`, e.g. ``{"openapi": "3.1.0", "paths": {"/v1/jobs": {"post": {...}}}, ...}``."""
    found = [
        (route, method, OPERATIONS[(method, route.path)])
        for route in routes
        if isinstance(route, Route)
        for method in sorted((route.methods or set()) - {"HEAD"})
        if (method, route.path) in OPERATIONS
    ]
    components = _component_schemas(op for _, _, op in found)
    paths: dict[str, dict[str, Any]] = {}
    for route, method, op in found:
        paths.setdefault(route.path, {})[method.lower()] = _operation(route, op, components)
    for name in [n for n in components if n.endswith(PARAMETER_MODELS)]:
        del components[name]
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "upscale-relay",
            "version": _version(),
            "description": "Webhook receiver and signed event fan-out for AI image-upscale vendors. Everything"
            " under `/v1` except `/v1/callbacks/*` needs `Authorization: Bearer <RELAY_API_TOKEN>`; errors are"
            ' `{"error": {"code", "message", "details"}}`. Delivered events follow `GET /v1/schemas/event.json`:'
            " a job's states only move forward, with one exception: a job the relay failed itself (`timeout`,"
            " `vendor_timeout`, `outcome_unknown`, `no_output`) moves to `succeeded` when the vendor's success"
            " arrives later, and `job.succeeded` is delivered once with `data.after_relay_timeout: true` (the"
            " vendor finished and billed the result); a vendor's own failure stays final.",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {SECURITY_SCHEME: {"type": "http", "scheme": "bearer"}},
        },
    }


_DOCUMENTS: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()
"""Each app's document as JSON bytes, built on its first ``GET /openapi.json``."""


PARAMETER_MODELS = ("Query", "Headers")
"""Suffixes of the models that become parameters, not components."""


def _models(ops: Iterable[Operation]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(s.ErrorBody, "serialization"): None}
    for op in ops:
        for answer in op.answers.values():
            if isinstance(answer, type):
                wanted[(answer, "serialization")] = None
        if isinstance(op.body, type):
            wanted[(op.body, "validation")] = None
        for params in (op.query, op.headers):
            if params is not None:
                wanted[(params, "validation")] = None
        if op.body is jobs.JobCreate:
            for adapter in ADAPTERS.values():
                wanted[(adapter.params_model, "validation")] = None
    return list(wanted)


def _component_schemas(ops: Iterable[Operation]) -> dict[str, Any]:
    ops = list(ops)
    _, top = models_json_schema(_models(ops), ref_template=REF_TEMPLATE)
    defs: dict[str, Any] = top.get("$defs", {})
    if jobs.JobCreate.__name__ in defs:
        _vendor_variants(defs)
    return defs


def _vendor_variants(defs: dict[str, Any]) -> None:
    """``JobCreate`` as one variant per vendor: ``vendor`` fixed, ``params`` that vendor's own model."""
    base = defs.pop(jobs.JobCreate.__name__)
    variants = []
    for name, adapter in ADAPTERS.items():
        variant = copy.deepcopy(base)
        variant["title"] = f"JobCreate ({name})"
        variant["properties"]["vendor"] = {"const": name, "type": "string"}
        variant["properties"]["params"] = {"$ref": REF_TEMPLATE.format(model=adapter.params_model.__name__)}
        variants.append(variant)
    defs[jobs.JobCreate.__name__] = {
        "title": "JobCreate",
        "description": base.get("description", ""),
        "oneOf": variants,
    }


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


PATH_PARAM = re.compile(r"{(\w+)(?::\w+)?}")
PATH_PARAM_DESCRIPTIONS = {
    "id": "The resource's id",
    "vendor": "The vendor the callback URL was made for",
    "token": "The callback token (a capability: keep it secret)",
}


def _operation(route: Route, op: Operation, components: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": route.name,
        "summary": op.summary,
        "tags": [op.tag],
    }
    doc = inspect.getdoc(route.endpoint)
    if doc:
        out["description"] = doc
    out["security"] = [{SECURITY_SCHEME: []}] if _needs_token(route.path) else []
    params = [_path_param(name) for name in PATH_PARAM.findall(route.path)]
    if op.query is not None:
        params.extend(_parameters(components[op.query.__name__], "query"))
    if op.headers is not None:
        params.extend(_parameters(components[op.headers.__name__], "header"))
    if params:
        out["parameters"] = params
    if op.body == "any":
        out["requestBody"] = {
            "description": "The vendor's message as it sends it (usually JSON)",
            "required": False,
            "content": {"application/json": {"schema": {}}},
        }
    elif op.body is not None:
        out["requestBody"] = {"required": True, "content": _json(_ref(op.body))}
    responses: dict[str, Any] = {}
    for status, answer in op.answers.items():
        description = op.answer_descriptions.get(status) or _answer_description(answer)
        responses[str(status)] = {"description": description, **_content(answer)}
        if status in op.answer_headers:
            responses[str(status)]["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in op.answer_headers[status].items()
            }
    for status in sorted(op.errors):
        error: dict[str, Any] = {
            "description": ERROR_DESCRIPTIONS[status],
            "content": _json(_ref(s.ErrorBody)),
        }
        if status == 401 and _needs_token(route.path):
            error["headers"] = {"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}}
        if status == 401 and not _needs_token(route.path):
            error["description"] = "The vendor's signature is missing or wrong (`invalid_signature`)"
        responses[str(status)] = error
    out["responses"] = responses
    return out


def _needs_token(path: str) -> bool:
    """The rule of :class:`receiver.auth.AdminAuthMiddleware`: ``/v1`` except the public prefixes, and
    ``/metrics`` (as configured by default: ``RELAY_METRICS_PUBLIC=true`` serves it without one)."""
    return needs_token(path)


def _path_param(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if name == "vendor":
        schema["enum"] = s.CALLBACK_VENDORS
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": PATH_PARAM_DESCRIPTIONS.get(name, name),
        "schema": schema,
    }


def _parameters(model_schema: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """One optional parameter (``where``: ``query``, ``header``) per property of a parameters model
    (``X | None`` shown as ``X``)."""
    out = []
    for name, prop in model_schema.get("properties", {}).items():
        schema = dict(prop)
        description = schema.pop("description", None)
        schema.pop("title", None)
        choices = schema.pop("anyOf", None)
        if choices is not None:
            kept = [c for c in choices if c.get("type") != "null"]
            schema.update(kept[0] if len(kept) == 1 else {"anyOf": kept})
        if schema.get("default", 0) is None:
            del schema["default"]
        param: dict[str, Any] = {"name": name, "in": where, "required": False, "schema": schema}
        if description:
            param["description"] = description
        out.append(param)
    return out


def _answer_description(answer: Success) -> str:
    if isinstance(answer, type):
        return (answer.__doc__ or answer.__name__).strip().splitlines()[0]
    return {
        "empty": "Done; no body",
        "binary": "The bytes",
        "json": "A JSON document",
        "html": "An HTML page",
        "prometheus": "Metrics in the Prometheus text exposition format",
    }[answer]


def _content(answer: Success) -> dict[str, Any]:
    if isinstance(answer, type):
        return {"content": _json(_ref(answer))}
    if answer == "binary":
        return {"content": {"application/octet-stream": {}}}
    if answer == "json":
        return {"content": {"application/json": {"schema": {"type": "object"}}}}
    if answer == "html":
        return {"content": {"text/html": {"schema": {"type": "string"}}}}
    if answer == "prometheus":
        return {"content": {"text/plain": {"schema": {"type": "string"}}}}
    return {}


def _version() -> str:
    try:
        return metadata.version("upscale-relay")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def documented_routes(routes: Sequence[BaseRoute]) -> list[tuple[str, str]]:
    """``(METHOD, path)`` of every route an app serves (HEAD and static files aside), for checks that
    each is in the document."""
    return [
        (method, route.path)
        for route in routes
        if isinstance(route, Route)
        for method in sorted((route.methods or set()) - {"HEAD"})
    ]


routes: list[BaseRoute] = [
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Route("/docs", docs, methods=["GET"]),
    Mount("/docs/assets", app=StaticFiles(directory=str(swagger_ui_path)), name="docs-assets"),
    Route("/v1/schemas/event.json", event_schema, methods=["GET"]),
]
