"""Hostile chat input is a 400 in the OpenAI envelope, never a 500 (issue 10, defect 10): JSON
nested deeper than the gateway can write back out, model ids with control characters, and
content parts of the right type with fields of the wrong one — to a model of each dialect. Nothing
reaches an upstream and nothing is charged."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Account
from tests.fakes.server import FakeServer
from tests.harness import GatewayServer

MODELS = {  # one model per dialect, each served by its dialect's fake first
    "openai": "openai/gpt-4o",
    "anthropic": "anthropic/claude-sonnet-4.5",
    "gemini": "google/gemini-2.5-flash",
}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def http(gateway: GatewayServer, account: Account) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=gateway.url, headers={"authorization": f"Bearer {account.key}"}, timeout=20
    ) as client:
        yield client


def balance(http: httpx.Client) -> Decimal:
    return Decimal(str(http.get("/v1/me").json()["balance"]))


def refused(r: httpx.Response) -> dict[str, Any]:
    """A 400 in the OpenAI envelope, with the request id and no trace."""
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["request_id"]
    assert "Traceback" not in r.text and "pydantic" not in r.text.lower()
    return dict(error)


def deep(depth: int) -> bytes:
    """JSON nested `depth` levels (orjson writes at most 255: the test writes it itself)."""
    return b'{"k":[' * (depth // 2) + b'"leaf"' + b"]}" * (depth // 2)


@pytest.mark.parametrize("depth", [200, 300, 1000])
@pytest.mark.parametrize("where", ["metadata", "tool_parameters", "json_schema"])
def test_json_nested_too_deep_is_a_400(
    http: httpx.Client, fakes: dict[str, FakeServer], where: str, depth: int
) -> None:
    body: dict[str, Any] = {"model": MODELS["openai"], "messages": HI}
    if where == "metadata":
        body["metadata"] = {"deep": "DEEP"}
    elif where == "tool_parameters":
        params = {"type": "object", "properties": {"x": "DEEP"}}
        body["tools"] = [{"type": "function", "function": {"name": "f", "parameters": params}}]
    else:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "s", "schema": {"x": "DEEP"}},
        }
    before = balance(http)
    raw = orjson.dumps(body).replace(b'"DEEP"', deep(depth))
    r = http.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    error = refused(r)
    assert "nested deeper" in error["message"]
    assert all(not f.requests for f in fakes.values())
    assert balance(http) == before


@pytest.mark.parametrize("dialect", list(MODELS))
def test_json_nested_up_to_the_limit_goes_through_every_translator(http: httpx.Client, dialect: str) -> None:
    """120 levels in a tool's schema: accepted, and still writable once a translator wrapped it."""
    params = {"type": "object", "properties": {"x": "DEEP"}}
    tools = [{"type": "function", "function": {"name": "f", "parameters": params}}]
    body = {"model": MODELS[dialect], "messages": HI, "tools": tools}
    raw = orjson.dumps(body).replace(b'"DEEP"', deep(120))
    r = http.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "model",
    [
        "local:model\r\nx-injected: 1",
        "local:a\nb",
        "local:tab\there",
        "local:nul\x00",
        "openai/gpt-4o\r\n",
        "local:" + "x" * 300,
        "gpt-4o\u2028",
        "local:modèle",  # response headers are Latin-1 at most; ids stay ASCII
        "local:模型",
    ],
)
def test_model_ids_with_control_characters_are_a_400(
    http: httpx.Client, fakes: dict[str, FakeServer], model: str
) -> None:
    r = http.post("/v1/chat/completions", json={"model": model, "messages": HI})
    assert refused(r)["param"] == "model"
    r = http.post("/v1/chat/completions", json={"model": MODELS["openai"], "models": [model], "messages": HI})
    assert r.status_code == 400 and r.json()["error"]["param"] == "models"
    assert all(not f.requests for f in fakes.values())


@pytest.mark.parametrize(
    "native", ["my model", "Qwen/Qwen2.5-7B-Instruct", "llama3.1:8b-q4_K_M", "@cf/meta/llama"]
)
def test_a_local_model_may_have_any_printable_name(http: httpx.Client, openai_fake: Any, native: str) -> None:
    r = http.post("/v1/chat/completions", json={"model": f"local:{native}", "messages": HI})
    assert r.status_code == 200, r.text
    assert r.headers["x-gatewayz-model"] == f"local:{native}"
    assert openai_fake.requests[-1].body["model"] == native  # sent as the caller wrote it


# Content parts of a known type whose fields have the wrong type (OpenAI's schema:
# https://platform.openai.com/docs/api-reference/chat/create#chat-create-messages).
BAD_PARTS: list[Any] = [
    {"type": "file", "file": 5},
    {"type": "file", "file": "abc"},
    {"type": "file", "file": {"file_data": 5}},
    {"type": "file", "file": {"file_data": "data:application/pdf;base64,AAAA", "filename": ["x"]}},
    {"type": "file"},
    {"type": "text", "text": 5},
    {"type": "text", "text": {"a": 1}},
    {"type": "text"},
    {"type": "refusal", "refusal": []},
    {"type": "image_url", "image_url": 5},
    {"type": "image_url", "image_url": {"url": 5}},
    {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": 3}},
    {"type": "image_url"},
    {"type": "input_audio", "input_audio": "abc"},
    {"type": "input_audio", "input_audio": {"data": 5, "format": "wav"}},
    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": ["wav"]}},
]


@pytest.mark.parametrize("dialect", list(MODELS))
@pytest.mark.parametrize("part", BAD_PARTS, ids=lambda p: orjson.dumps(p).decode())
def test_content_parts_with_wrong_field_types_are_a_400_for_every_dialect(
    http: httpx.Client, fakes: dict[str, FakeServer], dialect: str, part: Any
) -> None:
    for role in ("user", "system", "assistant", "tool"):
        message: dict[str, Any] = {"role": role, "content": [part]}
        if role == "tool":
            message["tool_call_id"] = "call_1"
        r = http.post("/v1/chat/completions", json={"model": MODELS[dialect], "messages": [*HI, message]})
        assert refused(r)["param"].startswith("messages[1].content[0]"), (role, r.text)
    assert all(not f.requests for f in fakes.values())


@pytest.mark.parametrize("dialect", list(MODELS))
@pytest.mark.parametrize(
    "message",
    [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": 5}}],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c",
                    "type": "function",
                    "function": {"name": "f", "arguments": "{}"},
                    "extra_content": "x",
                }
            ],
        },
        {"role": "assistant", "content": "x", "reasoning_details": "not a list"},
        {"role": "user", "content": "x", "name": 5},
    ],
    ids=["arguments-int", "extra_content-str", "reasoning_details-str", "name-int"],
)
def test_other_message_fields_with_wrong_types_never_crash(
    http: httpx.Client, dialect: str, message: dict[str, Any]
) -> None:
    r = http.post("/v1/chat/completions", json={"model": MODELS[dialect], "messages": [*HI, message]})
    assert r.status_code < 500, r.text


# The same for Anthropic callers (/v1/messages): blocks of a known type with fields of the wrong
# type (https://platform.claude.com/docs/en/api/messages), to a model of each dialect.
BAD_BLOCKS: list[Any] = [
    {"type": "text", "text": 5},
    {"type": "text"},
    {"type": "image", "source": 5},
    {"type": "image", "source": {"type": "base64", "media_type": 5, "data": "AAAA"}},
    {"type": "image", "source": {"type": "url", "url": 5}},
    {"type": "document", "source": "x"},
    {"type": "document", "source": {"type": "text", "data": ["x"]}},
    {"type": "tool_use", "id": 5, "name": "f", "input": {}},
    {"type": "tool_use", "id": "t", "name": "f", "input": 5},
    {"type": "tool_result", "tool_use_id": 5, "content": "x"},
    {"type": "tool_result", "tool_use_id": "t", "content": 5},
    {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": 5}]},
    {"type": "thinking", "thinking": 5, "signature": "s"},
    {"type": "redacted_thinking", "data": None},
]


@pytest.mark.parametrize("dialect", list(MODELS))
@pytest.mark.parametrize("block", BAD_BLOCKS, ids=lambda b: orjson.dumps(b).decode())
def test_message_blocks_with_wrong_field_types_are_a_400_for_every_dialect(
    gateway: GatewayServer, account: Account, fakes: dict[str, FakeServer], dialect: str, block: Any
) -> None:
    with httpx.Client(base_url=gateway.url, headers={"x-api-key": account.key}, timeout=20) as http:
        for role in ("user", "assistant"):
            messages = [{"role": "user", "content": "hi"}, {"role": role, "content": [block]}]
            r = http.post(
                "/v1/messages", json={"model": MODELS[dialect], "max_tokens": 10, "messages": messages}
            )
            assert r.status_code == 400, (role, r.text)
            body = r.json()
            assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
            assert "messages.1.content.0" in body["error"]["message"]
    assert all(not f.requests for f in fakes.values())


def test_the_depth_limit_counts_levels_exactly() -> None:
    from shared.app import MAX_JSON_DEPTH, too_deep

    def levels(n: int) -> Any:
        value: Any = "leaf"
        for i in range(n):
            value = [value, 1] if i % 2 else {"k": value, "sibling": 2}
        return value

    assert not too_deep(levels(MAX_JSON_DEPTH)) and too_deep(levels(MAX_JSON_DEPTH + 1))
    assert not too_deep("scalar") and not too_deep([])
