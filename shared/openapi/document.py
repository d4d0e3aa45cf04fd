"""Build an app's OpenAPI document: FastAPI's own, completed with every route's `Doc`
(shared.openapi). Imported with the first `/openapi.json`, never on start-up."""

from __future__ import annotations

import importlib
import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import Route

from shared.openapi import Doc, Schema, doc_of

REF = "#/components/schemas/{model}"
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"},
    "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key"},
}
ERRORS = {
    400: "Invalid request (the message names the field in `param`); nothing was changed.",
    401: "Missing, invalid, revoked or expired API key.",
    402: "Insufficient credits: the message says what is available and the max_tokens that fits.",
    403: "The key lacks the scope, or its IP, origin, model or spend restrictions refuse the call.",
    404: "No such object (or model).",
    409: "Conflicts with the current state (an email already taken, a key already rotated, …).",
    413: "The request body is too large.",
    429: "Rate limited (see `retry-after` and the x-ratelimit-* headers).",
    502: "The upstream provider failed.",
    503: "No provider can serve the request now, or a dependency is unavailable (`retry-after`).",
    500: "The event could not be applied now (nothing was written): Stripe delivers it again.",
    504: "The upstream provider timed out.",
}
HEADERS = {
    "x-request-id": "The request id (the caller's if it sent a sane one).",
    "x-gatewayz-provider": "The provider that served the answer.",
    "x-gatewayz-model": "The model that served, as an id that can be sent again.",
    "x-gatewayz-cost": "USD charged (non-streamed answers), an exact decimal.",
    "x-gatewayz-attempts": "Every upstream attempt: `provider:status:ms, …`.",
    "x-gatewayz-overhead-ms": "Time the gateway itself spent.",
    "x-gatewayz-session-id": (
        "With chat history on (`x-gatewayz-history: on`, a key's `store_history`): the session "
        "this turn is recorded in; send it back as `x-gatewayz-session-id` to continue it."
    ),
    "x-gatewayz-dropped-params": "Parameters the upstream cannot take, dropped.",
    "x-gatewayz-adjusted-params": "Parameters changed to fit the upstream (clamped, mapped).",
    "x-ratelimit-limit-requests": "Requests allowed per minute (and -tokens: tokens).",
    "x-ratelimit-remaining-requests": "Requests left in the window (and -tokens).",
    "x-ratelimit-reset-requests": "Until the window refills, like `1s` or `6m0s` (and -tokens).",
    "x-gatewayz-estimated": "`true` when the count is the gateway's estimate, not the provider's.",
}


def model_of(schema: Schema) -> type[BaseModel]:
    if not isinstance(schema, str):
        return schema
    module, _, name = schema.rpartition(".")
    model = getattr(importlib.import_module(f"shared.openapi.{module}"), name)
    assert isinstance(model, type) and issubclass(model, BaseModel), schema
    return model


def documented_routes(app: FastAPI) -> list[tuple[str, Route, str]]:
    """(path, route, method) of every route the document must show, through the routers FastAPI
    includes (HEAD goes with GET)."""
    out: list[tuple[str, Route, str]] = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, Route) and route.include_in_schema:
            path = context.path_format or route.path_format
            out.extend((path, route, method) for method in sorted((route.methods or set()) - {"HEAD"}))
    return out


def document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document of the app, completed with every route's `Doc` (built once)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
    paths: dict[str, Any] = doc.setdefault("paths", {})
    planned = [
        (path, route, method, d) for path, route, method in documented_routes(app) if (d := doc_of(route))
    ]
    pairs = {(m, mode) for *_, d in planned for m, mode in _models(d)}
    refs, defs = models_json_schema(sorted(pairs, key=lambda p: (p[0].__name__, p[1])), ref_template=REF)
    for path, route, method, d in planned:
        operation = paths.setdefault(path, {}).setdefault(method.lower(), {})
        operation.setdefault("operationId", f"{route.name}_{method.lower()}")
        _describe(operation, d, refs)
    components = doc.setdefault("components", {})
    components["securitySchemes"] = SECURITY_SCHEMES
    schemas = components.setdefault("schemas", {})
    schemas.update(defs.get("$defs", {}))
    for unused in ("HTTPValidationError", "ValidationError"):  # our 400s replace FastAPI's 422s
        if unused in schemas and f'"{REF.format(model=unused)}"' not in json.dumps(paths):
            del schemas[unused]
    app.openapi_schema = doc
    return doc


def _models(d: Doc) -> list[tuple[type[BaseModel], Any]]:
    """Answers are documented as serialized, request bodies as validated."""
    out = [(model_of(d.response), "serialization"), (model_of(d.error), "serialization")]
    if d.stream is not None:
        out.append((model_of(d.stream), "serialization"))
    if d.request is not None:
        out.append((model_of(d.request), "validation"))
    return out


def _describe(operation: dict[str, Any], d: Doc, found: dict[Any, Any]) -> None:
    def refs(schema: Schema, mode: str) -> Any:
        return found[(model_of(schema), mode)]

    operation["summary"] = d.summary
    if 401 in d.errors:  # the routes that take a key (or the cron secret) say how to send it
        operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
    if d.tag:
        operation["tags"] = [d.tag]
    if d.request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs(d.request, "validation")}},
        }
    ok: dict[str, Any] = {
        "description": "OK",
        "content": {"application/json": {"schema": refs(d.response, "serialization")}},
    }
    if d.stream is not None:
        ok["description"] = (
            "The answer; with `stream: true`, server-sent events: `data: <event>` frames, then `data: [DONE]`."
        )
        ok["content"]["text/event-stream"] = {"schema": refs(d.stream, "serialization")}
    if d.headers:
        ok["headers"] = {
            name: {"description": HEADERS[name], "schema": {"type": "string"}} for name in d.headers
        }
    responses = {"200": ok}
    error = {"content": {"application/json": {"schema": refs(d.error, "serialization")}}}
    for status in sorted(d.errors):
        responses[str(status)] = {"description": ERRORS[status], **error}
    operation["responses"] = responses
