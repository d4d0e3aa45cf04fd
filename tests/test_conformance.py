"""One conformance suite over the provider table (STYLE §10).

Every provider row runs the same cases through its dialect's fake upstream, with the official
`openai` SDK as the client: plain, stream, tools, JSON schema, error mapping, usage. A capability a
row's offers lack is declared — the gateway must refuse it with a 503 naming the reason — never
skipped silently. The bedrock row has no dialect yet and must say so.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import openai
import pytest

from shared.catalog import ResolvedOffer, build_catalog
from shared.config import Settings
from shared.providers import load_providers
from tests.fakes.server import FakeServer, Reply, ToolCall

CATALOG = build_catalog()
PROVIDERS = sorted(load_providers())
MARKUP = Settings().markup
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
SCHEMA = {
    "type": "object",
    "properties": {"conformance_marker": {"type": "string"}},
    "required": ["conformance_marker"],
    "additionalProperties": False,
}


def offer_for(pid: str) -> ResolvedOffer:
    """The offer this row is tested through: one with the most capabilities."""
    offers = [o for model_offers in CATALOG.offers.values() for o in model_offers if o.provider_id == pid]
    assert offers, f"no catalog model is offered by {pid}: every provider row needs at least one offer"
    return max(offers, key=lambda o: (len(o.capabilities), o.model.id))


def target(pid: str) -> tuple[str, str, ResolvedOffer | None]:
    """(model to request, native id the fake sees, offer) for a provider row."""
    if pid == "local":
        return "local:conformance-model", "conformance-model", None
    offer = offer_for(pid)
    return f"{pid}:{offer.model.id}", offer.offer.native_id, offer


def dialect_of(pid: str) -> str:
    return load_providers()[pid].dialect


def last_body(fake: FakeServer) -> dict[str, Any]:
    body = fake.requests[-1].body
    assert isinstance(body, dict)
    return body


def served_rows() -> list[str]:
    return list(PROVIDERS)


@pytest.mark.parametrize("pid", served_rows())
def test_plain(pid: str, client: Any, fakes: dict[str, FakeServer]) -> None:
    model, native, _ = target(pid)
    fake = fakes[dialect_of(pid)]
    fake.script(native, Reply(text=f"hello from {pid}"))
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == f"hello from {pid}"
    assert completion.choices[0].finish_reason == "stop"
    assert raw.headers["x-gatewayz-provider"] == pid
    assert len(fake.requests) == 1


@pytest.mark.parametrize("pid", served_rows())
def test_usage_and_cost(pid: str, client: Any, fakes: dict[str, FakeServer]) -> None:
    model, native, offer = target(pid)
    dialect = dialect_of(pid)
    reply = Reply(
        input=1000,
        cached=400,
        cache_write=100 if dialect in ("anthropic", "anthropic-vertex", "bedrock") else 0,
        output=50,
        reasoning_tokens=0,
    )
    fakes[dialect].script(native, reply)
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}]
    )
    usage = raw.parse().usage
    assert usage.prompt_tokens == reply.input + reply.cached + reply.cache_write
    assert usage.prompt_tokens_details.cached_tokens == reply.cached
    assert usage.completion_tokens == reply.output
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if offer is not None:
        p = offer.pricing
        cache_read = p.cache_read if p.cache_read is not None else p.prompt
        cache_write = p.cache_write if p.cache_write is not None else p.prompt
        per_million = (
            reply.input * p.prompt
            + reply.cached * cache_read
            + reply.cache_write * cache_write
            + reply.output * p.completion
        )
        expected = ((per_million / Decimal(1_000_000) + p.request) * MARKUP).quantize(Decimal("1e-12"))
        assert Decimal(raw.headers["x-gatewayz-cost"]) == expected
        assert Decimal(str(json.loads(raw.http_response.content)["usage"]["cost"])) == expected


@pytest.mark.parametrize("pid", served_rows())
def test_stream(pid: str, client: Any, fakes: dict[str, FakeServer]) -> None:
    model, native, _ = target(pid)
    fakes[dialect_of(pid)].script(native, Reply(text="streaming works fine", chunks=4, input=9, output=4))
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "streaming works fine"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert chunks[-1].usage.prompt_tokens == 9


def _tools_sent(dialect: str, body: dict[str, Any]) -> list[str]:
    if dialect == "gemini":
        return [f["name"] for t in body.get("tools", []) for f in t.get("functionDeclarations", [])]
    if dialect in ("anthropic", "anthropic-vertex"):
        return [t["name"] for t in body.get("tools", [])]
    if dialect == "bedrock":
        return [t["toolSpec"]["name"] for t in body.get("toolConfig", {}).get("tools", [])]
    return [t["function"]["name"] for t in body.get("tools", [])]


def _tool_result_sent(dialect: str, body: dict[str, Any], call_id: str) -> bool:
    if dialect == "gemini":
        parts = body["contents"][-1]["parts"]
        return (
            body["contents"][-1]["role"] == "user" and parts[0]["functionResponse"]["name"] == "get_weather"
        )
    if dialect in ("anthropic", "anthropic-vertex"):
        block = body["messages"][-1]["content"][0]
        return (
            body["messages"][-1]["role"] == "user"
            and block["type"] == "tool_result"
            and block["tool_use_id"] == call_id
        )
    if dialect == "bedrock":
        last = body["messages"][-1]
        return last["role"] == "user" and last["content"][0]["toolResult"] == {
            "toolUseId": call_id,
            "content": [{"text": "sunny"}],
        }
    return body["messages"][-1] == {"role": "tool", "tool_call_id": call_id, "content": "sunny"}


@pytest.mark.parametrize("pid", served_rows())
def test_tools(pid: str, client: Any, fakes: dict[str, FakeServer]) -> None:
    model, native, offer = target(pid)
    dialect = dialect_of(pid)
    fake = fakes[dialect]
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    if offer is not None and "tools" not in offer.capabilities:
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model=model, messages=ask, tools=TOOLS)
        assert info.value.status_code == 503 and "lacks tools" in info.value.message
        return
    fake.script(native, Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})]))
    first = client.chat.completions.create(model=model, messages=ask, tools=TOOLS)
    assert _tools_sent(dialect, last_body(fake)) == ["get_weather"]
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    fake.script(native, Reply(text="It is sunny."))
    second = client.chat.completions.create(
        model=model,
        tools=TOOLS,
        messages=[
            *ask,
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
    )
    assert second.choices[0].message.content == "It is sunny."
    assert _tool_result_sent(dialect, last_body(fake), call.id)


@pytest.mark.parametrize("pid", served_rows())
def test_json_schema(pid: str, client: Any, fakes: dict[str, FakeServer]) -> None:
    model, native, offer = target(pid)
    fake = fakes[dialect_of(pid)]
    fmt = {"type": "json_schema", "json_schema": {"name": "marker", "schema": SCHEMA, "strict": True}}
    ask = [{"role": "user", "content": "Answer in JSON"}]
    if offer is not None and "json_schema" not in offer.capabilities:
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model=model, messages=ask, response_format=fmt)
        assert info.value.status_code == 503 and "lacks json_schema" in info.value.message
        return
    fake.script(native, Reply(text='{"conformance_marker": "ok"}'))
    completion = client.chat.completions.create(model=model, messages=ask, response_format=fmt)
    assert json.loads(completion.choices[0].message.content) == {"conformance_marker": "ok"}
    assert "conformance_marker" in json.dumps(last_body(fake))  # the schema reached the upstream


@pytest.mark.parametrize("pid", served_rows())
def test_error_mapping(pid: str, client: Any, fakes: dict[str, FakeServer]) -> None:
    model, native, _ = target(pid)
    fake = fakes[dialect_of(pid)]
    ask = [{"role": "user", "content": "hi"}]
    fake.script(native, Reply(status=400, error_message="bad field xyz"))
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=model, messages=ask)
    assert "bad field xyz" in bad.value.message
    fake.script(native, Reply(status=503))
    with pytest.raises(openai.APIStatusError) as down:
        client.chat.completions.create(model=model, messages=ask)
    assert down.value.status_code == 502
    assert down.value.response.headers["x-gatewayz-attempts"].startswith(f"{pid}:503:")
    fake.script(native, Reply(status=429, retry_after=60))
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model=model, messages=ask)
    assert limited.value.response.headers["retry-after"] == "60"
    fake.script(native, Reply(status=401))
    with pytest.raises(openai.APIStatusError) as unauth:
        client.chat.completions.create(model=model, messages=ask)
    assert unauth.value.status_code == 502  # the provider's key problem, never the caller's 401
