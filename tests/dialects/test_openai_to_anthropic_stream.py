"""openai_to_anthropic: stream translation, error classification, and the fake upstream's
faithfulness (split from test_openai_to_anthropic.py, whose helpers it shares)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from shared.dialects.openai_to_anthropic import JSON_TOOL, claude_profile, claude_version
from shared.transport.errors import UpstreamError
from shared.transport.sse import SSEParser
from tests.dialects.test_openai_to_anthropic import (
    CREATED,
    HEADERS,
    JSON_SCHEMA,
    OPUS_47,
    SONNET_4,
    TOOLS,
    USER,
    tool_conversation,
    tr,
)
from tests.fakes.anthropic_fake import AnthropicFake
from tests.fakes.server import Reply, ToolCall


# --- stream --------------------------------------------------------------------------------------
def ev(obj: dict[str, Any]) -> tuple[str, bytes]:
    return obj["type"], orjson.dumps(obj)


# The documented event sequence of a thinking + text + tool_use answer, with cache usage.
STREAM = [
    ev({"type": "message_start", "message": {"id": "msg_s1", "type": "message", "role": "assistant", "model": SONNET_4, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 20, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 300, "output_tokens": 1}}}),
    ev({"type": "ping"}),
    ev({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
    ev({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm."}}),
    ev({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sigZ"}}),
    ev({"type": "content_block_stop", "index": 0}),
    ev({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
    ev({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Checking"}}),
    ev({"type": "content_block_stop", "index": 1}),
    ev({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}}),
    ev({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}}),
    ev({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"city": '}}),
    ev({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}}),
    ev({"type": "content_block_stop", "index": 2}),
    ev({"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}}}),
    ev({"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
    ev({"type": "content_block_stop", "index": 3}),
    ev({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 89}}),
    ev({"type": "message_stop"}),
]  # fmt: skip


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "msg_s1",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "anthropic/claude",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def test_stream_event_sequence_to_chunks() -> None:
    t = tr()
    chunks: list[dict[str, Any]] = []
    for event, data in STREAM:
        assert not t.stream_done
        chunks += t.stream_event(event, data)
    assert t.stream_done
    assert chunks == [
        chunk({"role": "assistant", "reasoning_content": "Hmm."}),
        chunk({"reasoning_details": [{"type": "reasoning.text", "text": "", "signature": "sigZ"}]}),
        chunk({"content": "Checking"}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "toolu_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "toolu_b",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
    ]
    assert t.usage is not None
    assert t.usage.openai() == {
        "prompt_tokens": 325,
        "completion_tokens": 89,
        "total_tokens": 414,
        "prompt_tokens_details": {"cached_tokens": 300, "cache_write_tokens": 5},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def test_no_chunk_before_content_so_an_early_error_can_fail_over() -> None:
    t = tr()
    assert t.stream_event("message_start", STREAM[0][1]) == []
    assert t.stream_event("ping", b'{"type": "ping"}') == []
    with pytest.raises(UpstreamError) as exc:
        t.stream_event("error", error_body("overloaded_error", "Overloaded"))
    assert exc.value.failover


def test_stream_usage_from_message_delta_updates_input_counts() -> None:
    t = tr()
    t.stream_event("message_start", STREAM[0][1])
    t.stream_event(
        *ev(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"input_tokens": 25, "output_tokens": 3},
            }
        )
    )
    assert t.usage is not None
    assert (t.usage.input_tokens, t.usage.cache_read_tokens, t.usage.output_tokens) == (25, 300, 3)


def test_stream_json_tool_becomes_content() -> None:
    t = tr()
    t.request({"messages": [USER], "response_format": {"type": "json_object"}}, True)
    chunks: list[dict[str, Any]] = []
    for obj in (
        STREAM[0][1],
        orjson.dumps(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "t", "name": JSON_TOOL, "input": {}},
            }
        ),
        orjson.dumps(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": '{"a":'},
            }
        ),
        orjson.dumps(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": "1}"},
            }
        ),
        orjson.dumps(
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}}
        ),
    ):
        chunks += t.stream_event(None, obj)
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": '{"a":'},
        {"content": "1}"},
        {},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("etype", "status"),
    [
        ("overloaded_error", 529),
        ("rate_limit_error", 429),
        ("api_error", 500),
        ("invalid_request_error", 400),
        ("mystery", 502),
    ],
)
def test_stream_error_event_raises(etype: str, status: int) -> None:
    t = tr()
    with pytest.raises(UpstreamError) as exc:
        t.stream_event(
            "error", orjson.dumps({"type": "error", "error": {"type": etype, "message": "Overloaded"}})
        )
    assert (exc.value.status, exc.value.kind, exc.value.vendor_type, exc.value.message) == (
        status,
        "stream",
        etype,
        "Overloaded",
    )
    assert exc.value.failover is (status != 400)


def test_malformed_stream_event_is_a_protocol_error() -> None:
    with pytest.raises(UpstreamError) as exc:
        tr().stream_event("message_start", b"{not json")
    assert exc.value.kind == "protocol"


# --- errors --------------------------------------------------------------------------------------
def error_body(etype: str, message: str) -> bytes:
    return orjson.dumps(
        {"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_1"}
    )


def test_error_classification() -> None:
    err = tr().error(529, {}, error_body("overloaded_error", "Overloaded"))
    assert (err.status, err.message, err.vendor_type, err.failover) == (
        529,
        "Overloaded",
        "overloaded_error",
        True,
    )
    err = tr().error(429, {"retry-after": "7"}, error_body("rate_limit_error", "Slow down"))
    assert (err.status, err.retry_after, err.vendor_type, err.failover) == (
        429,
        7.0,
        "rate_limit_error",
        True,
    )
    err = tr().error(400, {}, error_body("invalid_request_error", "max_tokens: Field required"))
    assert (err.message, err.failover) == ("max_tokens: Field required", False)
    err = tr().error(502, {}, b"<html>bad gateway</html>")
    assert (err.message, err.vendor_type) == ("upstream returned HTTP 502", None)


@pytest.mark.parametrize(
    ("native", "version"),
    [
        ("claude-sonnet-4-20250514", (4, 0)),
        ("claude-opus-4-1-20250805", (4, 1)),
        ("claude-haiku-4-5-20251001", (4, 5)),
        ("claude-opus-4-6", (4, 6)),
        ("claude-3-7-sonnet-20250219", (3, 7)),
        ("claude-3-opus-20240229", (3, 0)),
        ("claude-fable-5-1", (5, 1)),
        ("claude-sonnet-5", (5, 0)),
        ("claude-mythos-preview", None),
    ],
)
def test_claude_version(native: str, version: tuple[int, int] | None) -> None:
    assert claude_version(native) == version


def test_unversioned_ids_are_taken_as_new_models() -> None:
    profile = claude_profile("claude-mythos-preview")
    assert profile.adaptive_thinking and profile.native_json and not profile.sampling


# --- against the fake upstream -------------------------------------------------------------------
async def post(
    fake: AnthropicFake, body: Any, headers: dict[str, str] | None = None, path: str = "/v1/messages"
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=fake.url, timeout=10) as client:
        return await client.post(path, json=body, headers=HEADERS if headers is None else headers)


def error_of(resp: httpx.Response) -> tuple[int, str, str]:
    body = resp.json()
    assert body["type"] == "error"
    return resp.status_code, body["error"]["type"], body["error"]["message"]


BASE = {"model": SONNET_4, "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]}


async def test_fake_rejects_what_anthropic_rejects(anthropic_fake: AnthropicFake) -> None:
    status, etype, msg = error_of(await post(anthropic_fake, {**BASE, "frequency_penalty": 0.1}))
    assert (status, etype) == (400, "invalid_request_error") and "frequency_penalty" in msg
    assert error_of(await post(anthropic_fake, BASE, {"x-api-key": "k"}))[:2] == (
        400,
        "invalid_request_error",
    )
    assert error_of(await post(anthropic_fake, BASE, {"anthropic-version": "2023-06-01"}))[:2] == (
        401,
        "authentication_error",
    )
    bearer = {"authorization": "Bearer k", "anthropic-version": "2023-06-01"}
    assert (await post(anthropic_fake, BASE, bearer)).status_code == 200
    orphan = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "42"}]},
    ]
    status, _, msg = error_of(await post(anthropic_fake, {**BASE, "messages": orphan}))
    assert status == 400 and "tool_use_id" in msg
    for bad in (
        {k: v for k, v in BASE.items() if k != "max_tokens"},
        {**BASE, "messages": []},
        {**BASE, "messages": [{"role": "system", "content": "x"}, *BASE["messages"]]},
        {**BASE, "messages": [{"role": "tool", "content": "x"}]},
        {**BASE, "temperature": 1.5},
        {**BASE, "thinking": {"type": "enabled", "budget_tokens": 512}},
        {**BASE, "max_tokens": 2000, "thinking": {"type": "enabled", "budget_tokens": 2000}},
        {**BASE, "messages": [{"role": "user", "content": [{"type": "input_audio", "data": "x"}]}]},
        {**BASE, "model": OPUS_47, "temperature": 0.5},
    ):
        assert error_of(await post(anthropic_fake, bad))[:2] == (400, "invalid_request_error"), bad


async def test_translated_requests_are_accepted_by_the_fake(anthropic_fake: AnthropicFake) -> None:
    anthropic_fake.script(SONNET_4, Reply(text='{"city":"Paris"}'), Reply(text="Done"))
    anthropic_fake.script(OPUS_47, Reply(text="Bonjour", reasoning="Think"))
    t = tr(SONNET_4)
    body = t.request({"messages": [USER], "response_format": JSON_SCHEMA, "temperature": 0.2}, False)
    out = t.response((await post(anthropic_fake, body)).json())
    assert out["choices"][0]["message"]["content"] == '{"city":"Paris"}'
    t = tr(SONNET_4)
    body = t.request({"messages": tool_conversation(), "tools": TOOLS, "reasoning_effort": "low"}, False)
    assert t.response((await post(anthropic_fake, body)).json())["choices"][0]["message"]["content"] == "Done"
    t = tr(OPUS_47)
    body = t.request({"messages": [USER], "reasoning_effort": "high", "temperature": 0.3}, False)
    out = t.response((await post(anthropic_fake, body)).json())
    assert out["choices"][0]["message"]["reasoning_content"] == "Think"
    assert t.dropped == ["temperature"]


async def read_stream(fake: AnthropicFake, body: dict[str, Any]) -> list[tuple[str | None, bytes]]:
    parser = SSEParser()
    events: list[tuple[str | None, bytes]] = []
    async with (
        httpx.AsyncClient(base_url=fake.url, timeout=10) as client,
        client.stream("POST", "/v1/messages", json=body, headers=HEADERS) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        async for raw in resp.aiter_bytes():
            events += parser.feed(raw)
    return events + parser.close()


async def test_fake_stream_sequence_through_the_translator(anthropic_fake: AnthropicFake) -> None:
    anthropic_fake.script(
        SONNET_4,
        Reply(
            text="ignored",
            reasoning="Plan it",
            tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="toolu_w")],
            input=30,
            cached=200,
            cache_write=10,
            output=50,
        ),
    )
    t = tr(SONNET_4)
    events = await read_stream(anthropic_fake, t.request({"messages": [USER], "tools": TOOLS}, True))
    names = [name for name, _ in events]
    assert names == [
        "message_start", "ping",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_delta", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    chunks = [c for name, data in events for c in t.stream_event(name, data)]
    assert t.stream_done
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "Plan it"
    args = "".join(tc["function"]["arguments"] for d in deltas for tc in d.get("tool_calls", ()))
    assert orjson.loads(args) == {"city": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert t.usage is not None
    assert (
        t.usage.input_tokens,
        t.usage.cache_read_tokens,
        t.usage.cache_write_tokens,
        t.usage.output_tokens,
    ) == (30, 200, 10, 50)


async def test_fake_in_stream_error_and_http_errors(anthropic_fake: AnthropicFake) -> None:
    anthropic_fake.script(
        SONNET_4, Reply(stream_error_after=3), Reply(status=529), Reply(status=429, retry_after=3)
    )
    t = tr()
    events = await read_stream(anthropic_fake, {**BASE, "stream": True})
    assert events[-1][0] == "error"
    with pytest.raises(UpstreamError) as exc:
        for name, data in events:
            t.stream_event(name, data)
    assert (exc.value.status, exc.value.vendor_type) == (529, "overloaded_error")
    resp = await post(anthropic_fake, BASE)
    err = tr().error(resp.status_code, resp.headers, resp.content)
    assert (err.status, err.vendor_type, err.failover) == (529, "overloaded_error", True)
    resp = await post(anthropic_fake, BASE)
    err = tr().error(resp.status_code, resp.headers, resp.content)
    assert (err.status, err.vendor_type, err.retry_after) == (429, "rate_limit_error", 3.0)


async def test_fake_count_tokens(anthropic_fake: AnthropicFake) -> None:
    body = {"model": SONNET_4, "messages": [{"role": "user", "content": "Hello there"}]}
    resp = await post(anthropic_fake, body, path="/v1/messages/count_tokens")
    assert resp.status_code == 200 and resp.json()["input_tokens"] > 0
    assert (
        await post(anthropic_fake, {**body, "max_tokens": 5}, path="/v1/messages/count_tokens")
    ).status_code == 400
