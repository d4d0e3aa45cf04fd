"""openai_to_gemini: pure translation tests (exact dicts), then a few against GeminiFake to show the
fake rejects what Google rejects and that the translator and the fake agree on the wire format."""

from __future__ import annotations

import re
from typing import Any

import pytest

from shared.dialects.base import Usage
from shared.dialects.openai_to_gemini import OpenAIToGemini, gemini_usage
from shared.errors import InvalidRequest

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
