"""openai_to_anthropic: pure translation tests (plain data in, plain data out), then a few
round trips through the fake Anthropic upstream to prove it rejects what Anthropic rejects."""

from __future__ import annotations

from typing import Any

import pytest

from shared.dialects.openai_to_anthropic import JSON_TOOL, OpenAIToAnthropic
from shared.errors import InvalidRequest

SONNET_4 = "claude-sonnet-4-20250514"  # manual thinking, sampling, forced-tool JSON
SONNET_45 = "claude-sonnet-4-5-20250929"  # manual thinking, native JSON, temperature xor top_p
OPUS_46 = "claude-opus-4-6"  # adaptive thinking, sampling
OPUS_47 = "claude-opus-4-7"  # adaptive thinking, no sampling parameters
CREATED = 1_700_000_000
HEADERS = {"x-api-key": "sk-test", "anthropic-version": "2023-06-01"}


def tr(native: str = SONNET_4, max_output: int | None = 64000) -> OpenAIToAnthropic:
    t = OpenAIToAnthropic(model_id="anthropic/claude", native_id=native, max_output_tokens=max_output)
    t.created = CREATED
    return t


def req(
    *messages: dict[str, Any], native: str = SONNET_4, stream: bool = False, **params: Any
) -> dict[str, Any]:
    return tr(native).request({"model": "anthropic/claude", "messages": list(messages), **params}, stream)


USER = {"role": "user", "content": "Hi"}


# --- request: messages ---------------------------------------------------------------------------
def test_path_is_messages() -> None:
    assert tr().path(False) == tr().path(True) == "/v1/messages"


def test_minimal_request_defaults_max_tokens_to_the_offer_ceiling() -> None:
    assert req(USER) == {
        "model": SONNET_4,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 64000,
    }
    no_ceiling = tr(max_output=None).request({"messages": [USER]}, False)
    assert no_ceiling["max_tokens"] == 4096
    assert req(USER, max_tokens=100, max_completion_tokens=50)["max_tokens"] == 50
    assert req(USER, stream=True)["stream"] is True


def test_system_and_developer_messages_become_top_level_system() -> None:
    out = req(
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
        USER,
    )
    assert out["system"] == "Be brief.\n\nUse French."
    assert out["messages"] == [{"role": "user", "content": "Hi"}]


def test_system_keeps_cache_control_as_blocks() -> None:
    cached = {"type": "text", "text": "Long manual", "cache_control": {"type": "ephemeral"}}
    out = req({"role": "system", "content": [cached]}, {"role": "system", "content": "Short"}, USER)
    assert out["system"] == [
        {"type": "text", "text": "Long manual", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Short"},
    ]


def test_consecutive_user_turns_merge_and_keep_cache_control() -> None:
    part = {"type": "text", "text": "doc", "cache_control": {"type": "ephemeral"}}
    out = req({"role": "user", "content": [part]}, {"role": "user", "content": "question"})
    assert out["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "doc", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "question"},
            ],
        }
    ]


def test_images_data_url_and_http_url() -> None:
    content = [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
    ]
    assert req({"role": "user", "content": content})["messages"][0]["content"] == [
        {"type": "text", "text": "Compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_pdf_file_part_becomes_a_document_block() -> None:
    file = {
        "type": "file",
        "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"},
    }
    assert req({"role": "user", "content": [file]})["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
            "title": "a.pdf",
        }
    ]


def test_unsupported_parts_are_caller_errors() -> None:
    with pytest.raises(InvalidRequest) as exc:
        req(
            {
                "role": "user",
                "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}],
            }
        )
    assert exc.value.param == "messages[0].content[0]"
    with pytest.raises(InvalidRequest):
        req({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]})


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {"type": "function", "function": {"name": "get_time"}},
]
ANTHROPIC_TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
    {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
]


def tool_conversation() -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Weather in Paris and the time?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "functions.get_time:1",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": ""},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
        {
            "role": "tool",
            "tool_call_id": "functions.get_time:1",
            "content": [{"type": "text", "text": "12:00"}],
        },
        {"role": "user", "content": "Thanks!"},
    ]


def test_tool_round_trip_uses_tool_use_and_tool_result_blocks() -> None:
    out = req(*tool_conversation(), tools=TOOLS)
    assert out["tools"] == ANTHROPIC_TOOLS
    assert "tool_choice" not in out
    assert out["messages"] == [
        {"role": "user", "content": "Weather in Paris and the time?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "functions_get_time_1", "name": "get_time", "input": {}},
            ],
        },
        {
            # Both results share one user turn, first, and are never plain user text.
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C, sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "functions_get_time_1",
                    "content": [{"type": "text", "text": "12:00"}],
                },
                {"type": "text", "text": "Thanks!"},
            ],
        },
    ]


def test_malformed_tool_arguments_are_a_caller_error_with_param() -> None:
    bad = {
        "role": "assistant",
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}],
    }
    with pytest.raises(InvalidRequest) as exc:
        req(USER, bad, tools=TOOLS)
    assert exc.value.param == "messages[1].tool_calls[0].function.arguments"


def test_reasoning_details_become_thinking_blocks_before_text_and_tools() -> None:
    assistant = {
        "role": "assistant",
        "content": "Answer",
        "reasoning_details": [
            {"type": "reasoning.text", "text": "Let me think", "signature": "sig1"},
            {"type": "reasoning.encrypted", "data": "opaque"},
            {"type": "reasoning.summary", "summary": "ignored"},
        ],
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}],
    }
    out = req(USER, assistant, {"role": "tool", "tool_call_id": "c1", "content": "12:00"}, tools=TOOLS)
    assert out["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "Let me think", "signature": "sig1"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Answer"},
        {"type": "tool_use", "id": "c1", "name": "get_time", "input": {}},
    ]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        ({"type": "function", "function": {"name": "get_time"}}, None, {"type": "tool", "name": "get_time"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    ],
)
def test_tool_choice(choice: Any, parallel: Any, expected: dict[str, Any]) -> None:
    params: dict[str, Any] = {"tools": TOOLS, "tool_choice": choice}
    if parallel is not None:
        params["parallel_tool_calls"] = parallel
    assert req(USER, **params)["tool_choice"] == expected


def test_strict_tools_only_where_structured_outputs_exist() -> None:
    strict = [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": True}}
    ]
    assert req(USER, native=SONNET_45, tools=strict)["tools"][0]["strict"] is True
    t = tr(SONNET_4)
    assert "strict" not in t.request({"messages": [USER], "tools": strict}, False)["tools"][0]
    assert t.dropped == ["strict"]


# --- request: parameters -------------------------------------------------------------------------
def test_stop_sampling_and_user() -> None:
    out = req(USER, stop="END", temperature=0.2, top_p=0.9, top_k=40, user="u-42")
    assert out["stop_sequences"] == ["END"]
    assert (out["temperature"], out["top_p"], out["top_k"]) == (0.2, 0.9, 40)
    assert out["metadata"] == {"user_id": "u-42"}
    assert req(USER, stop=["a", "b"])["stop_sequences"] == ["a", "b"]
    assert req(USER, safety_identifier="hash")["metadata"] == {"user_id": "hash"}


def test_newer_models_take_temperature_or_top_p_and_47_takes_neither() -> None:
    t = tr(SONNET_45)
    out = t.request({"messages": [USER], "temperature": 0.5, "top_p": 0.9}, False)
    assert out["temperature"] == 0.5 and "top_p" not in out
    assert t.dropped == ["top_p"]
    t = tr(OPUS_47)
    out = t.request({"messages": [USER], "temperature": 0.5, "top_k": 5}, False)
    assert "temperature" not in out and "top_k" not in out
    assert t.dropped == ["temperature", "top_k"]


def test_parameters_anthropic_cannot_take_are_dropped_and_named() -> None:
    t = tr()
    body = {
        "model": "m",
        "messages": [USER],
        "logit_bias": {"1": 2},
        "logprobs": True,
        "top_logprobs": 2,
        "seed": 7,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.1,
        "service_tier": "flex",
        "metadata": {"k": "v"},
        "modalities": ["text"],
        "audio": {"voice": "x"},
        "prediction": {"type": "content", "content": "x"},
        "store": True,
        "verbosity": "low",
        "web_search_options": {},
        "mystery_field": 1,
        # No-ops: what Anthropic does anyway, so nothing changes and nothing is reported.
        "n": 1,
        "stream_options": {"include_usage": True},
    }
    out = t.request(body, True)
    assert t.dropped == [
        "logit_bias", "logprobs", "top_logprobs", "seed", "presence_penalty", "frequency_penalty",
        "service_tier", "metadata", "modalities", "audio", "prediction", "store", "verbosity",
        "web_search_options", "mystery_field",
    ]  # fmt: skip
    assert set(out) == {"model", "messages", "max_tokens", "stream"}


def test_reasoning_effort_on_manual_thinking_models() -> None:
    t = tr(SONNET_4)
    out = t.request(
        {
            "messages": [USER],
            "reasoning_effort": "high",
            "max_tokens": 1000,
            "temperature": 0.3,
            "top_p": 0.97,
            "top_k": 5,
        },
        False,
    )
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 16384}
    assert out["max_tokens"] == 17384  # the budget plus the caller's room for the answer
    assert out["top_p"] == 0.97  # 0.95..1 is allowed with thinking
    assert "temperature" not in out and "top_k" not in out
    assert t.dropped == ["temperature", "top_k"]
    assert t.adjusted == ["max_tokens"]
    roomy = req(USER, reasoning_effort="low", max_tokens=30000)
    assert (roomy["thinking"], roomy["max_tokens"]) == ({"type": "enabled", "budget_tokens": 2048}, 30000)
    assert req(USER, reasoning_effort="minimal")["thinking"]["budget_tokens"] == 1024
    assert "thinking" not in req(USER, reasoning_effort="none")
    assert req(USER, reasoning_effort="low", temperature=1)["temperature"] == 1  # the default is allowed


def test_thinking_filters_samplers_before_the_one_sampler_rule() -> None:
    t = tr(SONNET_45)
    out = t.request({"messages": [USER], "reasoning_effort": "low", "temperature": 0.3, "top_p": 0.97}, False)
    assert out["top_p"] == 0.97 and "temperature" not in out
    assert t.dropped == ["temperature"]


def test_reasoning_budget_respects_the_offer_ceiling() -> None:
    t = OpenAIToAnthropic(model_id="m", native_id=SONNET_4, max_output_tokens=8000)
    out = t.request({"messages": [USER], "reasoning_effort": "high", "max_tokens": 8000}, False)
    assert out["max_tokens"] == 8000
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 4000}


def test_reasoning_effort_on_adaptive_models() -> None:
    out = req(USER, native=OPUS_46, reasoning_effort="medium", temperature=0.5)
    assert out["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert out["output_config"] == {"effort": "medium"}
    assert "temperature" not in out
    assert req(USER, native=OPUS_47, reasoning_effort="xhigh")["output_config"] == {"effort": "max"}


def test_forced_tool_use_wins_over_thinking() -> None:
    t = tr()
    out = t.request(
        {"messages": [USER], "tools": TOOLS, "tool_choice": "required", "reasoning_effort": "high"}, False
    )
    assert "thinking" not in out and out["tool_choice"] == {"type": "any"}
    assert t.dropped == ["reasoning_effort"]


SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "place", "strict": True, "schema": SCHEMA}}


def test_json_schema_uses_native_structured_outputs_from_45() -> None:
    out = req(USER, native=SONNET_45, response_format=JSON_SCHEMA, reasoning_effort="low")
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 2048}  # compatible with thinking
    assert "tools" not in out


def test_json_schema_on_older_models_uses_a_forced_tool() -> None:
    out = req(USER, response_format=JSON_SCHEMA)
    assert out["tools"] == [
        {"name": JSON_TOOL, "description": out["tools"][0]["description"], "input_schema": SCHEMA}
    ]
    assert out["tool_choice"] == {"type": "tool", "name": JSON_TOOL}


def test_json_object_uses_a_forced_tool_on_every_model() -> None:
    out = req(USER, native=OPUS_47, response_format={"type": "json_object"})
    assert out["tools"][0]["input_schema"] == {"type": "object"}
    assert out["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    with_tools = req(USER, response_format={"type": "json_object"}, tools=TOOLS)
    assert [t["name"] for t in with_tools["tools"]] == ["get_weather", "get_time", JSON_TOOL]
    assert with_tools["tool_choice"] == {"type": "any"}  # a real tool call, or the JSON answer
    assert "tools" not in req(USER, response_format={"type": "text"})


# --- response ------------------------------------------------------------------------------------
def message(content: list[dict[str, Any]], stop: str = "end_turn", **usage: int) -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": SONNET_4,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 11, "output_tokens": 7, **usage},
    }


def test_response_text_with_cache_usage_counted_once() -> None:
    t = tr()
    out = t.response(
        message(
            [{"type": "text", "text": "Hello"}, {"type": "text", "text": " world"}],
            cache_read_input_tokens=100,
            cache_creation_input_tokens=50,
        )
    )
    assert out == {
        "id": "msg_01",
        "object": "chat.completion",
        "created": CREATED,
        "model": "anthropic/claude",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello world", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 161,
            "completion_tokens": 7,
            "total_tokens": 168,
            "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 50},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
    assert t.usage is not None
    assert (
        t.usage.input_tokens,
        t.usage.cache_read_tokens,
        t.usage.cache_write_tokens,
        t.usage.output_tokens,
    ) == (11, 100, 50, 7)


def test_response_tool_use_and_thinking() -> None:
    t = tr()
    out = t.response(
        message(
            [
                {"type": "thinking", "thinking": "Need weather.", "signature": "sigA"},
                {"type": "redacted_thinking", "data": "enc"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
            stop="tool_use",
            output_tokens=40,
            output_tokens_details={"thinking_tokens": 25},  # type: ignore[arg-type]
        )
    )
    assert out["choices"][0] == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
            "reasoning_content": "Need weather.",
            "reasoning_details": [
                {"type": "reasoning.text", "text": "Need weather.", "signature": "sigA"},
                {"type": "reasoning.encrypted", "data": "enc"},
            ],
        },
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 25}


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
    ],
)
def test_finish_reasons(stop: str, finish: str) -> None:
    assert (
        tr().response(message([{"type": "text", "text": "x"}], stop))["choices"][0]["finish_reason"] == finish
    )


def test_refusal_is_reported_as_refusal() -> None:
    msg = tr().response(message([{"type": "text", "text": "I can't help with that."}], "refusal"))["choices"][
        0
    ]["message"]
    assert (msg["content"], msg["refusal"]) == (None, "I can't help with that.")


def test_json_tool_answer_is_delivered_as_content() -> None:
    t = tr()
    t.request({"messages": [USER], "response_format": JSON_SCHEMA}, False)
    out = t.response(
        message(
            [{"type": "tool_use", "id": "toolu_9", "name": JSON_TOOL, "input": {"city": "Paris"}}], "tool_use"
        )
    )
    choice = out["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": '{"city":"Paris"}', "refusal": None}
    assert choice["finish_reason"] == "stop"
