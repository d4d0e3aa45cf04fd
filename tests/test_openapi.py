"""The OpenAPI document (`/openapi.json`, `/docs`) shows every route with its schemas (issue 11):
every route registered on any function's app, and on the combined server app, is in the document
with a request body (when it reads one), a 200 schema and its errors in the gateway's envelope —
the plain fast inference routes included, which must stay plain (called straight from the
middleware, without FastAPI's validation)."""

from __future__ import annotations

import importlib
import json
import pkgutil
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import functions
from shared.app import create_app, direct_routes
from shared.openapi import doc_of, fast_route
from shared.openapi.document import documented_routes
from shared.server import create_server_app
from tests.harness import GatewayServer

FUNCTION_MODULES = sorted(m.name for m in pkgutil.iter_modules(functions.__path__))
BODY_METHODS = {"POST", "PUT", "PATCH"}


def function_app(name: str) -> Any:
    return importlib.import_module(f"functions.{name}").app.built


def apps() -> list[tuple[str, Any]]:
    return [*((name, function_app(name)) for name in FUNCTION_MODULES), ("server", create_server_app())]


def refs(value: Any) -> list[str]:
    """Every `$ref` in a JSON value."""
    if isinstance(value, dict):
        own = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return own + [r for v in value.values() for r in refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in refs(v)]
    return []


def test_every_function_module_is_checked() -> None:
    assert {
        "chat",
        "messages",
        "account",
        "admin",
        "auth",
        "catalog",
        "health",
        "jobs",
        "provider_keys",
    } <= set(FUNCTION_MODULES)


@pytest.mark.parametrize(("name", "app"), apps(), ids=[name for name, _ in apps()])
def test_every_registered_route_is_in_the_document_with_its_schemas(name: str, app: Any) -> None:
    document = app.openapi()
    schemas = document["components"]["schemas"]
    routes = documented_routes(app)
    assert routes, f"{name}: no routes found"
    for path, route, method in routes:
        operation = document["paths"].get(path, {}).get(method.lower())
        assert operation is not None, f"{name}: {method} {path} is missing from /openapi.json"
        doc = doc_of(route)
        assert doc is not None, f"{name}: {method} {path} has no Doc (use documented(...) or fast_route(...))"
        assert operation["summary"]
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok.get("$ref", "").startswith("#/components/schemas/"), (method, path, ok)
        if method in BODY_METHODS and doc.request is not None:
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert body["$ref"].startswith("#/components/schemas/")
        for status, answer in operation["responses"].items():
            assert status != "422", f"{method} {path}: the gateway answers 400, never FastAPI's 422"
            if status != "200":  # the route's own envelope: OpenAI's, or Anthropic's on /v1/messages
                envelope = "AnthropicErrorEnvelope" if path.startswith("/v1/messages") else "ErrorEnvelope"
                assert answer["content"]["application/json"]["schema"]["$ref"].endswith(f"/{envelope}")
    for ref in refs(document):
        assert ref.removeprefix("#/components/schemas/") in schemas, f"{name}: dangling {ref}"


def test_the_inference_routes_are_documented_and_stay_plain() -> None:
    from functions import chat

    direct = direct_routes([chat.router])
    for path in ("/v1/chat/completions", "/v1/completions"):
        assert type(direct[path]) is Route  # called from the middleware: no FastAPI layer per request
    document = create_server_app().openapi()
    chat_op = document["paths"]["/v1/chat/completions"]["post"]
    assert chat_op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ChatCompletionRequest"
    )
    assert chat_op["responses"]["200"]["content"]["text/event-stream"]["schema"]["$ref"].endswith(
        "/ChatCompletionChunk"
    )
    assert {"x-gatewayz-cost", "x-gatewayz-model", "x-ratelimit-remaining-requests"} <= set(
        chat_op["responses"]["200"]["headers"]
    )
    assert {"402", "429", "503"} <= set(chat_op["responses"])
    fields = document["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert {
        "model",
        "messages",
        "tools",
        "tool_choice",
        "response_format",
        "stream",
        "stream_options",
        "max_tokens",
        "n",
        "models",
        "provider",
        "reasoning_effort",
    } <= set(fields)
    completions = document["paths"]["/v1/completions"]["post"]
    assert completions["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/CompletionRequest"
    )


def test_a_new_plain_route_is_one_helper_call() -> None:
    """What a later front end (e.g. `/v1/messages`) does: one `fast_route`, and the route is both
    called directly and documented."""
    router = APIRouter()

    @fast_route(
        router,
        "/v1/echo",
        methods=["POST"],
        summary="Echo",
        request="inference.CompletionRequest",
        response="base.ErrorEnvelope",
        errors=(400,),
    )
    async def echo(request: Request) -> Response:
        return JSONResponse({})

    app = create_app([router], title="probe")
    assert type(direct_routes([router])["/v1/echo"]) is Route
    operation = app.openapi()["paths"]["/v1/echo"]["post"]
    assert operation["summary"] == "Echo" and "400" in operation["responses"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/CompletionRequest"
    )


def test_openapi_json_and_docs_are_served(gateway: GatewayServer) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        served = http.get("/openapi.json")
        assert served.status_code == 200
        document = json.loads(served.content)
        assert "/v1/chat/completions" in document["paths"] and "/v1/keys" in document["paths"]
        page = http.get("/docs")
        assert page.status_code == 200 and "swagger-ui" in page.text.lower()
