"""Every Mangum handler is observed with Powertools (issue 16): one invocation with a test event
prints one JSON log line (correlation id = the gateway's request id, cold start flag) and an EMF
metrics blob; an inference request adds its tokens and cost by model and provider; no secret is
printed."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest

from shared.config import process_settings
from tests.conftest import ADMIN_KEY, provision, upstream_env
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply
from tests.test_mangum import catalog, chat, invoke, lambda_env, load_event

__all__ = ["lambda_env"]  # the fixture, shared with tests/test_mangum.py


def printed(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def one(value: Any) -> float:
    """An EMF metric value: Powertools writes a list of the values added."""
    assert isinstance(value, list) and len(value) == 1, value
    return float(value[0])


def emf(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if "_aws" in line]


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Any:
    # A service name of its own: Powertools binds its stdout handler when a logger is first set up.
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", f"gatewayz-test-{request.node.name}")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "GatewayzTest")
    handlers = [catalog.handler, chat.handler]
    for handler in handlers:
        handler.forget()
    yield
    for handler in handlers:
        handler.forget()


def test_an_invocation_logs_one_json_line_and_emf_metrics(
    lambda_env: asyncio.AbstractEventLoop, fresh: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    first = invoke(catalog, load_event("apigw-v2-get-models"))
    second = invoke(catalog, load_event("apigw-v2-get-providers"))
    assert first.status == second.status == 200
    lines = printed(capsys.readouterr().out)
    logs = [line for line in lines if line.get("message") == "request"]
    assert len(logs) == 2
    assert logs[0]["correlation_id"] == first.headers["x-request-id"]
    assert logs[1]["correlation_id"] == second.headers["x-request-id"]
    assert [log["cold_start"] for log in logs] == [True, False]
    assert logs[0]["status"] == 200 and logs[0]["method"] == "GET"
    assert logs[0]["service"] == "gatewayz-test-test_an_invocation_logs_one_json_line_and_emf_metrics"
    blobs = emf(lines)
    assert len(blobs) == 2
    directive = blobs[0]["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "GatewayzTest"
    assert ["function"] in [list(d) for d in directive["Dimensions"]] or directive["Dimensions"][0][
        0
    ] == "function"
    assert blobs[0]["function"] == "catalog"
    assert one(blobs[0]["Requests"]) == 1 and one(blobs[0]["Errors"]) == 0
    assert one(blobs[0]["ColdStart"]) == 1 and "ColdStart" not in blobs[1]


def test_inference_metrics_by_model_and_provider_and_no_secret_printed(
    lambda_env: asyncio.AbstractEventLoop,
    fresh: Any,
    fakes: dict[str, Any],
    openai_fake: OpenAIFake,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in upstream_env(fakes).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GATEWAYZ_KEY_SECRET", "lambda-key-secret-0123456789abcdef0123")
    process_settings.cache_clear()
    account = provision(process_settings(), "lambda@example.com", Decimal(10))
    openai_fake.script("gpt-4o", Reply(status=503))
    openai_fake.script("openai/gpt-4o", Reply(text="from the second"))
    event = load_event("apigw-v2-post-chat-completions-no-auth")
    event["headers"]["authorization"] = f"Bearer {account.key}"
    answer = invoke(chat, event)
    assert answer.status == 200, answer.body
    usage = answer.json()["usage"]
    out = capsys.readouterr().out
    blobs = emf(printed(out))
    inference = [b for b in blobs if "InputTokens" in b]
    assert len(inference) == 1
    blob = inference[0]
    assert (blob["function"], blob["model"], blob["provider"]) == ("chat", "openai/gpt-4o", "openrouter")
    assert one(blob["InputTokens"]) == usage["prompt_tokens"]
    assert one(blob["OutputTokens"]) == usage["completion_tokens"]
    assert one(blob["CostUsd"]) == pytest.approx(float(answer.headers["x-gatewayz-cost"]))
    assert one(blob["Failovers"]) == 1
    for secret in (account.key, ADMIN_KEY, "sk-test-openai", "sk-test-openrouter", "lambda-key-secret"):
        assert secret not in out


def test_the_streaming_functions_log_and_measure_the_same_way(
    client: Any, openai_fake: OpenAIFake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under the Web Adapter there is no Mangum handler: the seam's events give the same output."""
    from shared import observe
    from shared.observe.lambda_handler import observe_web_adapter

    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "gatewayz-test-web-adapter")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "gatewayz-ChatFunction")
    sink = observe_web_adapter("chat")
    try:
        stream = client.chat.completions.with_raw_response.create(
            model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        request_id = stream.headers["x-request-id"]
        assert "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
    finally:
        observe.uninstall(sink)
    lines = printed(capsys.readouterr().out)
    logs = [line for line in lines if line.get("message") == "request"]
    assert len(logs) == 1
    assert logs[0]["correlation_id"] == request_id and logs[0]["cold_start"] is True
    assert (logs[0]["route"], logs[0]["status"]) == ("/v1/chat/completions", 200)
    blobs = emf(lines)
    assert [b["function"] for b in blobs] == ["chat", "chat"]
    assert one(next(b for b in blobs if "Requests" in b)["Requests"]) == 1
    assert one(next(b for b in blobs if "OutputTokens" in b)["OutputTokens"]) > 0


def test_a_streaming_function_app_built_on_lambda_installs_the_web_adapter_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shared import observe
    from shared.app import function_app
    from shared.observe.lambda_handler import WebAdapterSink

    monkeypatch.setenv("AWS_LWA_PORT", "8000")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "gatewayz-MessagesFunction")
    monkeypatch.setenv("GATEWAYZ_ASGI_APP", "functions.messages:app")
    before = list(observe.SINKS)
    assert function_app([], title="a streaming function").built is not None  # as uvicorn's first request
    added = [s for s in observe.SINKS if s not in before]
    try:
        assert len(added) == 1 and isinstance(added[0], WebAdapterSink)
        assert added[0].function == "messages"
    finally:
        for sink in added:
            observe.uninstall(sink)
