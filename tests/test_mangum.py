"""The Lambda entry points, invoked the way Lambda invokes them: `handler(event, context)`.

Events are API Gateway HTTP API (payload 2.0), Function URL (same format) and REST API (v1 proxy)
samples under tests/events/. Each test builds the function's runtime from the environment on its
first request, as a cold start does; a second invocation must reuse it, as a warm one does.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from shared.config import process_settings
from shared.runtime import Runtime


def current_event_loop() -> asyncio.AbstractEventLoop | None:
    """The main thread's current event loop, without making one (asyncio.get_event_loop would)."""
    return getattr(getattr(asyncio.get_event_loop_policy(), "_local", None), "_loop", None)


@contextmanager
def event_loop_of_the_invocation() -> Iterator[asyncio.AbstractEventLoop]:
    """A new current loop for the block (Mangum runs the app on the current loop, as on Lambda);
    then the previous state is restored and the loop closed, so that no test leaks a loop."""
    previous = current_event_loop()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        asyncio.set_event_loop(previous)
        loop.close()


def import_function(name: str) -> ModuleType:
    # `Mangum(app)` makes a new loop current at import when there is none; give it one to adopt.
    with event_loop_of_the_invocation():
        return importlib.import_module(f"functions.{name}")


chat = import_function("chat")
catalog = import_function("catalog")
health = import_function("health")

EVENTS = Path(__file__).parent / "events"
ADMIN_KEY = "gw_admin_mangum_test_key_0123"
FUNCTIONS: dict[str, ModuleType] = {"chat": chat, "catalog": catalog, "health": health}
VERSIONS = ("apigw-v2", "apigw-v1")


@dataclass
class FakeLambdaContext:
    """The attributes of the Python runtime's context object that a handler may read."""

    function_name: str = "gatewayz-test"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:gatewayz-test"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "8f5a3a32-6a5c-4f1e-9c0e-3d1d2f6c9b1a"
    log_group_name: str = "/aws/lambda/gatewayz-test"
    log_stream_name: str = "2026/01/01/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


@dataclass
class Invocation:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def invoke(module: ModuleType, event: dict[str, Any]) -> Invocation:
    result = module.handler(event, FakeLambdaContext())
    headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():  # REST (v1) responses
        headers.setdefault(name.lower(), ", ".join(values))
    body = result.get("body") or ""
    if result.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return Invocation(result["statusCode"], headers, body)


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[asyncio.AbstractEventLoop]:
    """A fresh execution environment: settings from the environment, no runtime built yet.

    Provider keys and base URLs of the host are removed, so that no request can reach a real
    upstream. Every invocation of the test runs on the same event loop, as on a warm Lambda.
    """
    for name in list(os.environ):
        if name.startswith(("GATEWAYZ_", "UPSTASH_", "SUPABASE_", "STRIPE_")) or name.endswith(
            ("_API_KEY", "_BASE_URL")
        ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GATEWAYZ_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("GATEWAYZ_DATABASE_URL", f"sqlite:///{tmp_path / 'gatewayz.db'}")
    process_settings.cache_clear()
    for module in FUNCTIONS.values():
        module.app.state.runtime = None
    with event_loop_of_the_invocation() as loop:
        try:
            yield loop
        finally:
            for module in FUNCTIONS.values():
                rt: Runtime | None = module.app.state.runtime
                if rt is not None:
                    loop.run_until_complete(rt.close())
                module.app.state.runtime = None
            process_settings.cache_clear()


def assert_json(inv: Invocation, status: int) -> Any:
    assert inv.status == status, inv.body
    assert inv.headers["content-type"].startswith("application/json")
    assert inv.headers["x-request-id"].startswith("req_")
    return inv.json()


@pytest.mark.parametrize("version", VERSIONS)
def test_health(lambda_env: asyncio.AbstractEventLoop, version: str) -> None:
    body = assert_json(invoke(health, load_event(f"{version}-get-health")), 200)
    assert body == {"status": "ok"}


@pytest.mark.parametrize("version", VERSIONS)
def test_models_list_in_openai_shape(lambda_env: asyncio.AbstractEventLoop, version: str) -> None:
    body = assert_json(invoke(catalog, load_event(f"{version}-get-models")), 200)
    assert body["object"] == "list"
    assert isinstance(body["data"], list) and body["data"]
    for model in body["data"]:
        assert model["object"] == "model"
        assert isinstance(model["id"], str) and "/" in model["id"]
        assert isinstance(model["created"], int)
        assert isinstance(model["owned_by"], str)
        assert set(model["pricing"]) >= {"prompt", "completion"}
    assert "openai/gpt-4o" in {m["id"] for m in body["data"]}


@pytest.mark.parametrize("version", VERSIONS)
def test_one_model_with_a_slash_in_its_id(lambda_env: asyncio.AbstractEventLoop, version: str) -> None:
    body = assert_json(invoke(catalog, load_event(f"{version}-get-model-openai-gpt-4o")), 200)
    assert body["id"] == "openai/gpt-4o"
    assert body["object"] == "model"


@pytest.mark.parametrize("version", VERSIONS)
def test_providers(lambda_env: asyncio.AbstractEventLoop, version: str) -> None:
    body = assert_json(invoke(catalog, load_event(f"{version}-get-providers")), 200)
    assert body["object"] == "list"
    ids = {p["id"] for p in body["data"]}
    assert {"openai", "anthropic", "openrouter"} <= ids


@pytest.mark.parametrize("version", VERSIONS)
def test_gateways(lambda_env: asyncio.AbstractEventLoop, version: str) -> None:
    body = assert_json(invoke(catalog, load_event(f"{version}-get-gateways")), 200)
    assert body["data"]
    for gateway in body["data"]:
        assert {"slug", "name", "color", "priority", "site_url"} <= set(gateway)


@pytest.mark.parametrize(
    "event_name",
    [*(f"{v}-post-chat-completions-no-auth" for v in VERSIONS), "lambda-url-post-chat-completions-no-auth"],
)
def test_chat_without_a_key_is_a_401_in_the_openai_envelope(
    lambda_env: asyncio.AbstractEventLoop, event_name: str
) -> None:
    event = load_event(event_name)
    assert json.loads(event["body"])["model"] == "openai/gpt-4o"
    inv = invoke(chat, event)
    body = assert_json(inv, 401)
    error = body["error"]
    assert error["type"] == "authentication_error"
    assert error["code"] == "missing_api_key"
    assert "Authorization" in error["message"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["request_id"] == inv.headers["x-request-id"]


def test_chat_reads_the_admin_key_from_the_environment(lambda_env: asyncio.AbstractEventLoop) -> None:
    """The runtime is built on the first request from the environment: the chat function knows the
    bootstrap admin key, which opens admin routes only (it has no user to bill)."""
    event = load_event("apigw-v2-post-chat-completions-no-auth")
    event["headers"]["authorization"] = f"Bearer {ADMIN_KEY}"
    body = assert_json(invoke(chat, event), 403)
    assert body["error"]["type"] == "permission_error"
    rt = chat.app.state.runtime
    assert rt is not None and rt.settings.admin_key == ADMIN_KEY


def test_the_caller_request_id_is_echoed(lambda_env: asyncio.AbstractEventLoop) -> None:
    event = load_event("apigw-v1-get-health")
    event["headers"]["X-Request-Id"] = "caller-req-42"
    event["multiValueHeaders"]["X-Request-Id"] = ["caller-req-42"]
    inv = invoke(health, event)
    assert inv.status == 200 and inv.headers["x-request-id"] == "caller-req-42"


@pytest.mark.parametrize("version", VERSIONS)
def test_unknown_route_is_a_404_in_the_openai_envelope(
    lambda_env: asyncio.AbstractEventLoop, version: str
) -> None:
    event = load_event(f"{version}-get-gateways")
    if version == "apigw-v2":
        event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/nope"
    else:
        event["path"] = "/v1/nope"
    body = assert_json(invoke(catalog, event), 404)
    assert body["error"]["code"] == "not_found"
    assert body["error"]["message"] == "No route for GET /v1/nope"


def test_warm_invocations_reuse_the_runtime(
    lambda_env: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[Runtime] = []
    original = Runtime.build.__func__  # type: ignore[attr-defined]

    def counting_build(cls: type[Runtime], settings: Any) -> Runtime:
        rt = original(cls, settings)
        builds.append(rt)
        return rt

    monkeypatch.setattr(Runtime, "build", classmethod(counting_build))
    assert catalog.app.state.runtime is None  # nothing is built at import

    first = invoke(catalog, load_event("apigw-v2-get-models"))
    runtime = catalog.app.state.runtime
    assert first.status == 200 and runtime is not None
    assert runtime.settings.admin_key == ADMIN_KEY  # read from the environment on first use

    second = invoke(catalog, load_event("apigw-v1-get-model-openai-gpt-4o"))
    third = invoke(catalog, load_event("apigw-v2-get-models"))
    assert second.status == 200 and third.status == 200
    assert catalog.app.state.runtime is runtime
    assert builds == [runtime]
    assert third.json() == first.json()
    assert first.headers["x-request-id"] != third.headers["x-request-id"]


def test_readiness_path_of_the_streaming_function_counts_as_ready(
    lambda_env: asyncio.AbstractEventLoop,
) -> None:
    """The Lambda Web Adapter polls AWS_LWA_READINESS_CHECK_PATH (/health) on the chat app until
    it answers below 500; the chat app has no such route, and its 404 must stay a cheap answer."""
    event = load_event("apigw-v2-get-health")
    inv = invoke(chat, event)
    assert inv.status < 500
    assert chat.app.state.runtime is None  # the probe builds nothing
