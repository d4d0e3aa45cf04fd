"""openai_to_gemini: pure translation tests (exact dicts), then a few against GeminiFake to show the
fake rejects what Google rejects and that the translator and the fake agree on the wire format."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from shared.dialects.base import UpstreamError, Usage
from shared.dialects.gemini import OpenAIToGemini, gemini_usage
from shared.errors import InvalidRequest
from shared.sse import SSEParser
from tests.fakes.gemini_fake import FAKE_SIGNATURE, RESPONSE_ID, GeminiFake
from tests.fakes.server import Reply, ToolCall

CALL_ID = re.compile(r"^call_[0-9a-f]{24}$")


def tr(native: str = "gemini-2.5-flash") -> OpenAIToGemini:
    return OpenAIToGemini(model_id="google/gemini-2.5-flash", native_id=native)


def scrub(obj: Any) -> Any:
    """Generated tool-call ids become "call_X" (after checking their form)."""
    if isinstance(obj, dict):
        out = {k: scrub(v) for k, v in obj.items()}
        if isinstance(out.get("id"), str) and out["id"].startswith("call_"):
            assert CALL_ID.match(out["id"]), out["id"]
            out["id"] = "call_X"
        return out
    if isinstance(obj, list):
        return [scrub(v) for v in obj]
    return obj


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


# --- request ------------------------------------------------------------------------------------
def test_path_for_both_methods() -> None:
    t = tr("gemini-2.5-pro")
    assert t.path(False) == "/models/gemini-2.5-pro:generateContent"
    assert t.path(True) == "/models/gemini-2.5-pro:streamGenerateContent?alt=sse"


def test_system_and_developer_become_system_instruction() -> None:
    t = tr()
    body = {
        "model": "google/gemini-2.5-flash",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            user("Hi"),
            {"role": "assistant", "content": "Salut"},
            user("Again"),
        ],
        "stream": True,
    }
    assert t.request(body, stream=True) == {
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Salut"}]},
            {"role": "user", "parts": [{"text": "Again"}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]},
    }
    assert t.dropped == []


def test_system_message_with_an_image_is_refused() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}
    with pytest.raises(InvalidRequest) as err:
        tr().request({"messages": [{"role": "system", "content": [image]}, user("x")]}, stream=False)
    assert err.value.param == "messages[0].content"


def test_generation_config_fields() -> None:
    t = tr()
    body = {
        "messages": [user("x")],
        "n": 2,
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 40,
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "max_tokens": 100,
        "max_completion_tokens": 50,
        "stop": "END",
        "logprobs": True,
        "top_logprobs": 3,
    }
    assert t.request(body, stream=False)["generationConfig"] == {
        "candidateCount": 2,
        "temperature": 0.3,
        "topP": 0.9,
        "topK": 40,
        "seed": 7,
        "presencePenalty": 0.5,
        "frequencyPenalty": -0.5,
        "maxOutputTokens": 50,
        "stopSequences": ["END"],
        "responseLogprobs": True,
        "logprobs": 3,
    }
    assert t.dropped == []


def test_max_tokens_and_stop_list() -> None:
    t = tr()
    out = t.request({"messages": [user("x")], "max_tokens": 9, "stop": ["a", "b"], "top_logprobs": 2}, False)
    assert out["generationConfig"] == {"maxOutputTokens": 9, "stopSequences": ["a", "b"]}
    assert t.dropped == ["top_logprobs"]


def test_tool_round_trip() -> None:
    t = tr()
    body = {
        "messages": [
            user("Weather in Paris and Rome?"),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        "extra_content": {"google": {"thought_signature": "c2lnLTE="}},
                    },
                    {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 21}'},
            {"role": "tool", "tool_call_id": "call_b", "content": "noon"},
            user("Thanks"),
        ],
        "tools": [WEATHER_TOOL, {"type": "function", "function": {"name": "get_time"}}],
        "tool_choice": "auto",
    }
    assert t.request(body, stream=False) == {
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
            {
                "role": "model",
                "parts": [
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": "c2lnLTE=",
                    },
                    {"functionCall": {"name": "get_time", "args": {}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                    {"functionResponse": {"name": "get_time", "response": {"output": "noon"}}},
                    {"text": "Thanks"},
                ],
            },
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Weather for a city",
                        "parametersJsonSchema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
                    },
                    {"name": "get_time"},
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
    }


@pytest.mark.parametrize(
    ("content", "response"),
    [
        ("[1, 2]", {"output": [1, 2]}),
        ('"done"', {"output": "done"}),
        ("not json", {"output": "not json"}),
        ([{"type": "text", "text": '{"ok": '}, {"type": "text", "text": "true}"}], {"ok": True}),
    ],
)
def test_tool_results_are_always_objects(content: Any, response: dict[str, Any]) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        user("x"),
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": content},
    ]
    out = tr().request({"messages": messages}, stream=False)
    assert out["contents"][2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "f", "response": response}}],
    }


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tool_choice(choice: Any, config: dict[str, Any]) -> None:
    out = tr().request(
        {"messages": [user("x")], "tools": [WEATHER_TOOL], "tool_choice": choice}, stream=False
    )
    assert out["toolConfig"] == {"functionCallingConfig": config}


def test_malformed_tool_arguments_name_the_parameter() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
    with pytest.raises(InvalidRequest) as err:
        tr().request({"messages": [user("x"), {"role": "assistant", "tool_calls": [call]}]}, stream=False)
    assert err.value.param == "messages[1].tool_calls[0].function.arguments"


def test_tool_result_without_a_matching_call_is_refused() -> None:
    with pytest.raises(InvalidRequest) as err:
        tr().request(
            {"messages": [user("x"), {"role": "tool", "tool_call_id": "nope", "content": "1"}]}, False
        )
    assert err.value.param == "messages[1].tool_call_id"


def test_gemini3_history_without_signature_gets_the_documented_placeholder() -> None:
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]
    messages = [user("x"), {"role": "assistant", "content": "Checking.", "tool_calls": calls}]
    out = tr("gemini-3-pro-preview").request({"messages": messages}, stream=False)
    assert out["contents"][1]["parts"] == [
        {"text": "Checking."},
        {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "skip_thought_signature_validator"},
        {"functionCall": {"name": "g", "args": {}}},
    ]
    assert (
        "thoughtSignature"
        not in tr().request({"messages": messages}, stream=False)["contents"][1]["parts"][1]
    )


def test_images_audio_and_files() -> None:
    t = tr()
    content = [
        {"type": "text", "text": "Look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.WEBP?size=2", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "gs://bucket/photo"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "input_audio", "input_audio": {"data": "SUQz", "format": "mp3"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
        {"type": "file", "file": {"file_data": "JVBERi0=", "filename": "b.pdf"}},
    ]
    assert t.request({"messages": [{"role": "user", "content": content}]}, stream=False)["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "Look"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.WEBP?size=2"}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://bucket/photo"}},
                {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
                {"inlineData": {"mimeType": "audio/mp3", "data": "SUQz"}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
            ],
        }
    ]
    assert t.dropped == ["detail"]


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "flac"}},
        {"type": "file", "file": {"file_id": "file-123"}},
    ],
)
def test_unusable_media_is_refused(part: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest) as err:
        tr().request({"messages": [{"role": "user", "content": [part]}]}, stream=False)
    assert err.value.param is not None and err.value.param.startswith("messages[0].content[0]")


def test_consecutive_turns_merge_and_empty_text_is_left_out() -> None:
    messages = [
        user("a"),
        user(""),
        {"role": "user", "content": [{"type": "text", "text": "b"}]},
        {"role": "assistant", "content": ""},
    ]
    assert tr().request({"messages": messages}, stream=False)["contents"] == [
        {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]}
    ]


def test_response_formats() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    json_schema = {"type": "json_schema", "json_schema": {"name": "r", "strict": True, "schema": schema}}
    out = tr().request({"messages": [user("x")], "response_format": json_schema}, stream=False)
    assert out["generationConfig"] == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    out = tr().request({"messages": [user("x")], "response_format": {"type": "json_object"}}, stream=False)
    assert out["generationConfig"] == {"responseMimeType": "application/json"}
    assert "generationConfig" not in tr().request(
        {"messages": [user("x")], "response_format": {"type": "text"}}, False
    )


@pytest.mark.parametrize(
    ("native", "effort", "config"),
    [
        ("gemini-2.5-flash", "low", {"thinkingBudget": 1024, "includeThoughts": True}),
        ("gemini-2.5-flash", "minimal", {"thinkingBudget": 1024, "includeThoughts": True}),
        ("gemini-2.5-flash", "medium", {"thinkingBudget": 8192, "includeThoughts": True}),
        ("gemini-2.5-pro", "high", {"thinkingBudget": 24576, "includeThoughts": True}),
        ("gemini-2.5-flash-lite", "none", {"thinkingBudget": 0, "includeThoughts": False}),
        ("gemini-2.5-pro", "none", {"thinkingBudget": 128, "includeThoughts": False}),
        ("gemini-3-pro-preview", "medium", {"thinkingLevel": "HIGH", "includeThoughts": True}),
        ("gemini-3-pro-preview", "minimal", {"thinkingLevel": "LOW", "includeThoughts": True}),
        ("gemini-3.1-pro-preview", "medium", {"thinkingLevel": "MEDIUM", "includeThoughts": True}),
        ("gemini-3-flash-preview", "minimal", {"thinkingLevel": "MINIMAL", "includeThoughts": True}),
        ("gemini-3-flash-preview", "xhigh", {"thinkingLevel": "HIGH", "includeThoughts": True}),
    ],
)
def test_reasoning_effort(native: str, effort: str, config: dict[str, Any]) -> None:
    t = tr(native)
    out = t.request({"messages": [user("x")], "reasoning_effort": effort}, stream=False)
    assert out["generationConfig"] == {"thinkingConfig": config}
    assert t.dropped == []


def test_reasoning_effort_on_a_model_that_cannot_think_is_dropped() -> None:
    t = tr("gemini-2.0-flash")
    assert "generationConfig" not in t.request(
        {"messages": [user("x")], "reasoning_effort": "high"}, stream=False
    )
    assert t.dropped == ["reasoning_effort"]


def test_parameters_gemini_cannot_take_are_dropped_and_named() -> None:
    t = tr()
    body = {
        "model": "m",
        "messages": [user("x")],
        "logit_bias": {"1": 2},
        "service_tier": "auto",
        "user": "u",
        "metadata": {"a": "b"},
        "parallel_tool_calls": False,
        "stream_options": {"include_usage": True},
        "store": True,
        "modalities": ["text"],
        "prediction": {"type": "content", "content": "x"},
        "verbosity": "low",
        "made_up": 1,
        "tools": [{"type": "function", "function": {"name": "f", "strict": True, "parameters": {}}}],
    }
    out = t.request(body, stream=True)
    assert out == {
        "contents": [{"role": "user", "parts": [{"text": "x"}]}],
        "tools": [{"functionDeclarations": [{"name": "f"}]}],
    }
    assert sorted(t.dropped) == sorted(
        ["logit_bias", "service_tier", "user", "metadata", "parallel_tool_calls", "stream_options", "store",
         "modalities", "prediction", "verbosity", "made_up", "strict"]
    )  # fmt: skip


# --- response -----------------------------------------------------------------------------------
USAGE = {
    "promptTokenCount": 120,
    "cachedContentTokenCount": 100,
    "candidatesTokenCount": 7,
    "thoughtsTokenCount": 30,
    "totalTokenCount": 157,
}


def test_response_text_and_usage_counted_once() -> None:
    t = tr()
    data = {
        "candidates": [
            {
                "content": {"parts": [{"text": "Hello "}, {"text": "there"}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": USAGE,
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-1",
    }
    assert t.response(data) == {
        "id": "resp-1",
        "object": "chat.completion",
        "created": t.created,
        "model": "google/gemini-2.5-flash",
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 120,
            "completion_tokens": 37,
            "total_tokens": 157,
            "prompt_tokens_details": {"cached_tokens": 100},
            "completion_tokens_details": {"reasoning_tokens": 30},
        },
    }
    assert t.usage == Usage(input_tokens=20, cache_read_tokens=100, output_tokens=37, reasoning_tokens=30)


def test_usage_without_cache_or_thoughts() -> None:
    assert gemini_usage({"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8}) == Usage(
        input_tokens=5, output_tokens=3
    )
    assert gemini_usage(None) == Usage()


def test_response_function_calls_and_thoughts() -> None:
    t = tr()
    data = {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"text": "I should look it up.", "thought": True},
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                            "thoughtSignature": "c2ln",
                        },
                        {"functionCall": {"id": "fc-7", "name": "get_time", "args": {}}},
                    ],
                    "role": "model",
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "responseId": "r2",
    }
    assert scrub(t.response(data)["choices"]) == [
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
                        "extra_content": {"google": {"thought_signature": "c2ln"}},
                    },
                    {"id": "fc-7", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
                ],
                "reasoning_content": "I should look it up.",
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ]
    assert t.usage == Usage()


def test_response_multiple_candidates_and_logprobs() -> None:
    logprobs = {
        "topCandidates": [
            {
                "candidates": [
                    {"token": "Hi", "logProbability": -0.1},
                    {"token": "Hey", "logProbability": -2.5},
                ]
            }
        ],
        "chosenCandidates": [{"token": "Hi", "logProbability": -0.1}],
    }
    data = {
        "candidates": [
            {
                "content": {"parts": [{"text": "Hi"}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
                "logprobsResult": logprobs,
            },
            {
                "content": {"parts": [{"text": "Hello"}], "role": "model"},
                "finishReason": "MAX_TOKENS",
                "index": 1,
            },
        ]
    }
    out = tr().response(data)
    assert out["id"].startswith("chatcmpl-")
    assert out["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi", "refusal": None},
            "logprobs": {
                "content": [
                    {
                        "token": "Hi",
                        "logprob": -0.1,
                        "bytes": [72, 105],
                        "top_logprobs": [
                            {"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
                            {"token": "Hey", "logprob": -2.5, "bytes": [72, 101, 121]},
                        ],
                    }
                ],
                "refusal": None,
            },
            "finish_reason": "stop",
        },
        {
            "index": 1,
            "message": {"role": "assistant", "content": "Hello", "refusal": None},
            "logprobs": None,
            "finish_reason": "length",
        },
    ]


def test_blocked_prompt() -> None:
    data = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
    }
    t = tr()
    out = t.response(data)
    assert out["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": None, "refusal": None},
            "logprobs": None,
            "finish_reason": "content_filter",
        }
    ]
    assert t.usage == Usage(input_tokens=9)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("OTHER", "stop"),
        ("LANGUAGE", "stop"),
    ],
)
def test_finish_reasons(reason: str, expected: str) -> None:
    data = {"candidates": [{"content": {"parts": [{"text": "x"}], "role": "model"}, "finishReason": reason}]}
    assert tr().response(data)["choices"][0]["finish_reason"] == expected


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
