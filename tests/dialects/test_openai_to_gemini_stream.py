"""openai_to_gemini: stream translation, error classification, and the fake upstream's
faithfulness (split from test_openai_to_gemini.py, whose helpers it shares)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from shared.dialects.base import Usage
from shared.dialects.openai_to_gemini import OpenAIToGemini
from shared.transport.errors import UpstreamError
from shared.transport.sse import SSEParser
from tests.dialects.test_openai_to_gemini import (
    WEATHER_TOOL,
    scrub,
    tr,
    user,
)
from tests.fakes.gemini_fake import FAKE_SIGNATURE, RESPONSE_ID, GeminiFake
from tests.fakes.server import Reply, ToolCall


# --- stream -------------------------------------------------------------------------------------
def feed(t: OpenAIToGemini, raw: bytes) -> Iterator[dict[str, Any]]:
    parser = SSEParser()
    for event, data in [*parser.feed(raw), *parser.close()]:
        yield from t.stream_event(event, data)


def sse(*objs: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(o) + b"\r\n\r\n" for o in objs)


def test_stream_text_with_thoughts_and_usage() -> None:
    t = tr()
    raw = sse(
        {"candidates": [{"content": {"parts": [{"text": "Let me think", "thought": True}], "role": "model"}, "index": 0}],
         "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4}, "responseId": "sr1"},
        {"candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"}, "index": 0}],
         "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4}, "responseId": "sr1"},
        {"candidates": [{"content": {"parts": [{"text": "lo"}], "role": "model"}, "finishReason": "STOP", "index": 0}],
         "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2, "thoughtsTokenCount": 5, "totalTokenCount": 11},
         "responseId": "sr1"},
    )  # fmt: skip

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {
            "id": "sr1",
            "object": "chat.completion.chunk",
            "created": t.created,
            "model": "google/gemini-2.5-flash",
            "choices": [choice],
        }

    assert list(feed(t, raw)) == [
        chunk({"role": "assistant", "reasoning_content": "Let me think"}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, "stop"),
    ]
    assert t.stream_done
    assert t.usage == Usage(input_tokens=4, output_tokens=7, reasoning_tokens=5)


def test_stream_tool_calls() -> None:
    t = tr()
    raw = sse(
        {"candidates": [{"content": {"parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
            {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
        ], "role": "model"}, "finishReason": "STOP", "index": 0}], "responseId": "sr2"},
    )  # fmt: skip
    chunks = scrub([c["choices"][0] for c in feed(t, raw)])
    assert chunks == [
        {
            "index": 0,
            "delta": {
                "role": "assistant",
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_X",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        "extra_content": {"google": {"thought_signature": "c2ln"}},
                    }
                ],
            },
            "finish_reason": None,
        },
        {
            "index": 0,
            "delta": {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_X",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    }
                ]
            },
            "finish_reason": None,
        },
        {"index": 0, "delta": {}, "finish_reason": "tool_calls"},
    ]
    assert t.stream_done


def test_stream_is_done_only_when_every_candidate_finished() -> None:
    t = tr()
    t.request({"messages": [user("x")], "n": 2}, stream=True)
    first = sse(
        {
            "candidates": [
                {"content": {"parts": [{"text": "a"}], "role": "model"}, "finishReason": "STOP", "index": 0}
            ]
        }
    )
    second = sse(
        {
            "candidates": [
                {
                    "content": {"parts": [{"text": "b"}], "role": "model"},
                    "finishReason": "MAX_TOKENS",
                    "index": 1,
                }
            ]
        }
    )
    assert [
        (c["choices"][0]["index"], c["choices"][0]["delta"], c["choices"][0]["finish_reason"])
        for c in feed(t, first)
    ] == [
        (0, {"role": "assistant", "content": "a"}, None),
        (0, {}, "stop"),
    ]
    assert not t.stream_done
    assert [(c["choices"][0]["index"], c["choices"][0]["finish_reason"]) for c in feed(t, second)] == [
        (1, None),
        (1, "length"),
    ]
    assert t.stream_done


def test_stream_blocked_prompt() -> None:
    t = tr()
    chunks = list(
        feed(t, sse({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}))
    )
    assert [c["choices"][0] for c in chunks] == [
        {"index": 0, "delta": {"role": "assistant"}, "finish_reason": "content_filter"}
    ]
    assert t.stream_done


def test_stream_error_event() -> None:
    t = tr()
    raw = sse({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})
    with pytest.raises(UpstreamError) as err:
        list(feed(t, raw))
    assert (err.value.status, err.value.kind, err.value.vendor_type, err.value.message) == (
        503,
        "stream",
        "UNAVAILABLE",
        "The model is overloaded.",
    )
    assert err.value.failover


def test_stream_malformed_event() -> None:
    with pytest.raises(UpstreamError) as err:
        tr().stream_event(None, b"{not json")
    assert (err.value.status, err.value.kind) == (None, "protocol")


# --- errors -------------------------------------------------------------------------------------
def envelope(code: int, status: str, message: str, *details: dict[str, Any]) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        err["details"] = list(details)
    return orjson.dumps({"error": err})


def test_error_429_takes_the_retry_delay_from_retry_info() -> None:
    body = envelope(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota.",
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "x"}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "38s"},
    )
    err = tr().error(429, {}, body)
    assert (err.status, err.message, err.vendor_type, err.retry_after, err.failover) == (
        429,
        "You exceeded your current quota.",
        "RESOURCE_EXHAUSTED",
        38.0,
        True,
    )
    assert tr().error(429, {"retry-after": "2"}, body).retry_after == 2.0


def test_error_invalid_argument_is_the_callers() -> None:
    err = tr().error(400, {}, envelope(400, "INVALID_ARGUMENT", "Please use a valid role: user, model."))
    assert (err.status, err.vendor_type, err.failover) == (400, "INVALID_ARGUMENT", False)


def test_error_invalid_key_and_unavailable_region_fail_over() -> None:
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
    }
    err = tr().error(
        400, {}, envelope(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", info)
    )
    assert (err.status, err.failover) == (401, True)
    err = tr().error(
        400, {}, envelope(400, "FAILED_PRECONDITION", "User location is not supported for the API use.")
    )
    assert (err.status, err.vendor_type, err.failover) == (403, "FAILED_PRECONDITION", True)


def test_error_shapes_vertex_array_and_non_json() -> None:
    err = tr().error(
        500, {}, b'[{"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}}]'
    )
    assert (err.status, err.message, err.vendor_type) == (500, "Internal error encountered.", "INTERNAL")
    err = tr().error(502, {}, b"<html>Bad Gateway</html>")
    assert (err.status, err.message, err.vendor_type) == (502, "upstream returned HTTP 502", None)


# --- against the fake ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fake() -> Iterator[GeminiFake]:
    server = GeminiFake().start()
    yield server  # type: ignore[misc]
    server.stop()


@pytest.fixture
def gemini(fake: GeminiFake) -> GeminiFake:
    fake.reset()
    return fake


KEY = {"x-goog-api-key": "test-key"}
VERTEX_AUTH = {"authorization": "Bearer ya29.test"}
MINIMAL = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


async def post(url: str, body: Any, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=orjson.dumps(body), headers=headers) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


async def test_fake_auth(gemini: GeminiFake) -> None:
    url = gemini.base_for("google") + "/models/gemini-2.5-flash:generateContent"
    status, _, body = await post(url, MINIMAL, {})
    assert (status, orjson.loads(body)["error"]["status"]) == (403, "PERMISSION_DENIED")
    status, _, body = await post(url, MINIMAL, {"x-goog-api-key": "invalid-key"})
    assert (status, orjson.loads(body)["error"]["details"][0]["reason"]) == (400, "API_KEY_INVALID")
    assert tr().error(status, {}, body).status == 401
    status, _, _ = await post(url + "?key=abc", MINIMAL, {})
    assert status == 200
    vertex = gemini.base_for("google-vertex") + "/models/gemini-2.5-flash:generateContent"
    status, _, body = await post(vertex, MINIMAL, KEY)
    assert (status, orjson.loads(body)["error"]["status"]) == (401, "UNAUTHENTICATED")
    status, _, _ = await post(vertex, MINIMAL, VERTEX_AUTH)
    assert status == 200


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({**MINIMAL, "model": "gemini"}, 'Unknown name "model"'),
        ({**MINIMAL, "generationConfig": {"max_tokens": 5}}, "at 'generation_config'"),
        (
            {"contents": [{"role": "user", "parts": [{"text": "a", "type": "text"}]}]},
            "at 'contents[0].parts[0]'",
        ),
        ({"contents": [{"role": "assistant", "parts": [{"text": "a"}]}]}, "valid role: user, model"),
        ({"contents": []}, "contents is not specified"),
        ({"contents": [{"role": "user", "parts": []}]}, "parts must not be empty"),
        (
            {
                "contents": [
                    {
                        "role": "user",
                        "parts": [{"text": "a", "inlineData": {"mimeType": "image/png", "data": "AA=="}}],
                    }
                ]
            },
            "Oneof field 'data'",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"functionResponse": {"response": {}}}]}]},
            "Name cannot be empty",
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": "sunny"}}]}
                ]
            },
            "google.protobuf.Struct",
        ),
        (
            {
                "contents": [
                    {
                        "role": "user",
                        "parts": [{"inlineData": {"mimeType": "image/png", "data": "not base64!"}}],
                    }
                ]
            },
            "Base64 decoding failed",
        ),
        (
            {
                **MINIMAL,
                "generationConfig": {"thinkingConfig": {"thinkingBudget": 10, "thinkingLevel": "LOW"}},
            },
            "thinking budget and thinking level",
        ),
        ({**MINIMAL, "generationConfig": {"responseJsonSchema": {"type": "object"}}}, "response_mime_type"),
        (
            {
                **MINIMAL,
                "tools": [
                    {"functionDeclarations": [{"name": "f", "parameters": {}, "parametersJsonSchema": {}}]}
                ],
            },
            "mutually exclusive",
        ),
        ({**MINIMAL, "toolConfig": {"functionCallingConfig": {"mode": "sometimes"}}}, "TYPE_ENUM"),
    ],
)
async def test_fake_rejects_what_google_rejects(gemini: GeminiFake, body: dict[str, Any], words: str) -> None:
    status, _, raw = await post(gemini.base_for("google") + "/models/m:generateContent", body, KEY)
    err = orjson.loads(raw)["error"]
    assert (status, err["code"], err["status"]) == (400, 400, "INVALID_ARGUMENT")
    assert words in err["message"]


async def test_fake_accepts_snake_case_like_proto_json(gemini: GeminiFake) -> None:
    body = {
        **MINIMAL,
        "system_instruction": {"parts": [{"text": "x"}]},
        "generation_config": {"max_output_tokens": 5},
    }
    status, _, _ = await post(gemini.base_for("google") + "/models/m:generateContent", body, KEY)
    assert status == 200


async def test_round_trip_through_the_fake(gemini: GeminiFake) -> None:
    """The translator's request passes the fake's checks; the fake's answer translates back."""
    gemini.script(
        "gemini-3-flash-preview",
        Reply(
            tool_calls=[ToolCall("get_weather", {"city": "Paris"})],
            reasoning="Hmm.",
            output=20,
            reasoning_tokens=8,
            cached=4,
        ),
    )
    t = tr("gemini-3-flash-preview")
    body = {
        "messages": [{"role": "system", "content": "Be brief."}, user("Weather?")],
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "reasoning_effort": "low",
        "max_completion_tokens": 64,
    }
    vendor = t.request(body, stream=False)
    for base, headers in ((gemini.base_for("google"), KEY), (gemini.base_for("google-vertex"), VERTEX_AUTH)):
        status, _, raw = await post(base + t.path(False), vendor, headers)
        assert status == 200, raw
        out = scrub(t.response(orjson.loads(raw)))
        assert out["choices"] == [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "call_X",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                            "extra_content": {"google": {"thought_signature": FAKE_SIGNATURE}},
                        }
                    ],
                    "reasoning_content": "Hmm.",
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ]
        assert t.usage == Usage(input_tokens=11, cache_read_tokens=4, output_tokens=20, reasoning_tokens=8)
        gemini.script(
            "gemini-3-flash-preview",
            Reply(
                tool_calls=[ToolCall("get_weather", {"city": "Paris"})],
                reasoning="Hmm.",
                output=20,
                reasoning_tokens=8,
                cached=4,
            ),
        )
    assert gemini.vendor_bodies("gemini-3-flash-preview") == [vendor, vendor]
    # The next turn echoes the signature and the result; the fake accepts it too.
    follow = t.request(
        {
            **body,
            "messages": [
                *body["messages"],
                out["choices"][0]["message"],
                {
                    "role": "tool",
                    "tool_call_id": out["choices"][0]["message"]["tool_calls"][0]["id"],
                    "content": "21C",
                },
            ],
        },
        False,
    )
    assert follow["contents"][1]["parts"][0]["thoughtSignature"] == FAKE_SIGNATURE
    status, _, raw = await post(gemini.base_for("google") + t.path(False), follow, KEY)
    assert status == 200, raw


async def test_stream_through_the_fake(gemini: GeminiFake) -> None:
    gemini.script(
        "gemini-2.5-flash",
        Reply(text="Hello there friend", chunks=3, reasoning="Think.", output=9, reasoning_tokens=4),
    )
    t = tr()
    vendor = t.request({"messages": [user("Hi")], "reasoning_effort": "low", "logprobs": True}, stream=True)
    status, headers, raw = await post(gemini.base_for("google") + t.path(True), vendor, KEY)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert raw.count(b"\r\n\r\n") == 5 and raw.endswith(b"\r\n\r\n")  # Google frames SSE with CRLF
    chunks = list(feed(t, raw))
    deltas = [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks]
    assert deltas == [
        ({"role": "assistant", "reasoning_content": "Thi"}, None),
        ({"reasoning_content": "nk."}, None),
        ({"content": "Hello "}, None),
        ({"content": "there "}, None),
        ({"content": "friend"}, None),
        ({}, "stop"),
    ]
    assert chunks[2]["choices"][0]["logprobs"]["content"][0]["token"] == "Hello"
    assert {c["id"] for c in chunks} == {RESPONSE_ID}
    assert t.stream_done and t.usage == Usage(input_tokens=11, output_tokens=9, reasoning_tokens=4)


async def test_stream_errors_from_the_fake(gemini: GeminiFake) -> None:
    gemini.script("m", Reply(stream_error_after=1), Reply(fail_after=1), Reply(status=429, retry_after=7))
    url = gemini.base_for("google") + "/models/m:streamGenerateContent?alt=sse"
    _, _, raw = await post(url, MINIMAL, KEY)
    t = tr()
    with pytest.raises(UpstreamError) as err:
        list(feed(t, raw))
    assert (err.value.status, err.value.kind, err.value.vendor_type) == (500, "stream", "INTERNAL")
    with pytest.raises(aiohttp.ClientPayloadError):
        await post(url, MINIMAL, KEY)  # the connection is dropped mid-stream
    status, headers, raw = await post(url, MINIMAL, KEY)
    err_429 = tr().error(status, headers, raw)
    assert (err_429.status, err_429.vendor_type, err_429.retry_after) == (429, "RESOURCE_EXHAUSTED", 7.0)
    status, _, raw = await post(url.replace("?alt=sse", ""), MINIMAL, KEY)
    assert status == 400


async def test_fake_renders_candidates_and_logprobs(gemini: GeminiFake) -> None:
    t = tr()
    vendor = t.request({"messages": [user("Hi")], "n": 2, "logprobs": True, "top_logprobs": 2}, stream=False)
    status, _, raw = await post(gemini.base_for("google-vertex") + t.path(False), vendor, VERTEX_AUTH)
    data = orjson.loads(raw)
    assert status == 200 and data["createTime"] and data["responseId"] == RESPONSE_ID
    out = t.response(data)
    assert [c["message"]["content"] for c in out["choices"]] == [
        "Hello from the fake upstream. [0]",
        "Hello from the fake upstream. [1]",
    ]
    assert out["choices"][1]["logprobs"]["content"][0]["top_logprobs"][1] == {
        "token": "Hi",
        "logprob": -4.6,
        "bytes": [72, 105],
    }
    assert out["usage"]["prompt_tokens"] == 11 and out["usage"]["completion_tokens"] == 7
