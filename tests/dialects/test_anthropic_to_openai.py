"""anthropic_to_openai, without I/O: Messages requests into the pivot, and the pivot's answers and
streams back into Messages."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.dialects.anthropic_to_openai import ChatToMessagesStream, chat_to_message, messages_to_chat
from shared.dialects.base import Usage

BASE: dict[str, Any] = {"model": "openai/gpt-4o", "max_tokens": 100}


def convert(**body: Any) -> Any:
    return messages_to_chat({**BASE, **body})


def test_system_string_blocks_and_turns() -> None:
    out = convert(
        system=[
            {"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "B"},
        ],
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "From now on, be brief."},
        ],
    ).body
    assert out["messages"] == [
        {
            "role": "system",
            "content": [
                {"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "B"},
            ],
        },
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "From now on, be brief."},
    ]
    assert out["max_tokens"] == 100


def test_tool_results_become_tool_messages_before_the_user_text() -> None:
    out = convert(
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"city": "Oslo"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "w", "input": {"city": "Rome"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "rain"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": [{"type": "text", "text": "sun"}],
                    },
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ]
    ).body
    assistant, tool1, tool2, user = out["messages"][1:]
    assert assistant == {
        "role": "assistant",
        "content": "Checking.",  # thinking is signed for Anthropic only: other vendors get none
        "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "w", "arguments": '{"city":"Oslo"}'}},
            {"id": "toolu_2", "type": "function", "function": {"name": "w", "arguments": '{"city":"Rome"}'}},
        ],
    }
    assert tool1 == {"role": "tool", "tool_call_id": "toolu_1", "content": "rain"}
    assert tool2 == {"role": "tool", "tool_call_id": "toolu_2", "content": "sun"}
    assert user == {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]}


def test_tool_errors_and_images_in_tool_results() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    out = convert(
        messages=[
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "shot", "input": {}}]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t", "is_error": True, "content": [image]}
                ],
            },
        ]
    ).body
    assert out["messages"][-2] == {"role": "tool", "tool_call_id": "t", "content": "Error"}
    # A tool message carries text only: the image follows as a user part.
    assert out["messages"][-1]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    ]


def test_documents() -> None:
    pdf = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
        "title": "a.pdf",
    }
    text = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "body"},
        "title": "T",
    }
    parts = convert(messages=[{"role": "user", "content": [pdf, text]}]).body["messages"][0]["content"]
    assert parts == [
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"}},
        {"type": "text", "text": "T\n\nbody"},
    ]


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        (
            {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}},
            "document source type 'url'",
        ),
        ({"type": "search_result", "source": "s", "title": "t", "content": []}, "'search_result' blocks"),
    ],
)
def test_what_only_anthropic_serves_makes_the_request_native_only(block: dict[str, Any], reason: str) -> None:
    converted = convert(messages=[{"role": "user", "content": [block, {"type": "text", "text": "?"}]}])
    assert converted.native_only == reason


def test_tools_choice_and_server_tools() -> None:
    tool = {"name": "w", "description": "weather", "input_schema": {"type": "object"}}
    converted = convert(
        messages=[{"role": "user", "content": "hi"}],
        tools=[tool, {"type": "web_search_20250305", "name": "web_search"}],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    )
    out = converted.body
    assert out["tools"] == [
        {
            "type": "function",
            "function": {"name": "w", "parameters": {"type": "object"}, "description": "weather"},
        }
    ]
    assert out["tool_choice"] == "required" and out["parallel_tool_calls"] is False
    assert converted.dropped == ["tools.web_search"]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "w"}, {"type": "function", "function": {"name": "w"}}),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    tool = {"name": "w", "input_schema": {"type": "object"}}
    out = convert(messages=[{"role": "user", "content": "hi"}], tools=[tool], tool_choice=choice).body
    assert out["tool_choice"] == expected


@pytest.mark.parametrize(
    ("fields", "effort"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "low"),
        ({"thinking": {"type": "enabled", "budget_tokens": 8000}}, "medium"),
        ({"thinking": {"type": "enabled", "budget_tokens": 30000}}, "high"),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}}, "xhigh"),
        ({"thinking": {"type": "adaptive"}}, "medium"),
        ({"output_config": {"effort": "low"}}, "low"),
        ({"thinking": {"type": "disabled"}}, None),
        ({}, None),
    ],
)
def test_thinking_becomes_reasoning_effort(fields: dict[str, Any], effort: str | None) -> None:
    out = convert(messages=[{"role": "user", "content": "hi"}], **fields).body
    assert out.get("reasoning_effort") == effort


def test_sampling_stops_user_format_and_dropped_fields() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    converted = convert(
        messages=[{"role": "user", "content": "hi"}],
        temperature=0.3,
        top_p=0.9,
        top_k=4,
        stop_sequences=["X"],
        metadata={"user_id": "u"},
        output_config={"format": {"type": "json_schema", "schema": schema}},
        context_management={"edits": []},
        service_tier="auto",
        stream=True,
        provider={"order": ["openai"]},
    )
    out = converted.body
    assert out["temperature"] == 0.3 and out["top_p"] == 0.9 and out["top_k"] == 4
    assert out["stop"] == ["X"] and out["user"] == "u" and out["stream"] is True
    assert out["provider"] == {"order": ["openai"]}  # consumed by the gateway's router
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }
    assert converted.dropped == ["context_management", "service_tier"]


# --- answers ----------------------------------------------------------------------------------------
def test_chat_answer_to_message() -> None:
    chat = {
        "choices": [
            {
                "finish_reason": "tool_calls",
                "message": {
                    "content": "Let me look.",
                    "reasoning_content": "thinking...",
                    "reasoning_details": [
                        {"type": "reasoning.text", "text": "thinking...", "signature": "s1"}
                    ],
                    "tool_calls": [{"id": "call_1", "function": {"name": "w", "arguments": '{"q":1}'}}],
                },
            }
        ]
    }
    usage = Usage(input_tokens=10, cache_read_tokens=5, cache_write_tokens=2, output_tokens=7)
    out = chat_to_message(chat, usage, "openai/gpt-4o", "msg_1")
    assert out["content"] == [
        {"type": "thinking", "thinking": "thinking...", "signature": "s1"},
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "call_1", "name": "w", "input": {"q": 1}},
    ]
    assert out["stop_reason"] == "tool_use"
    assert out["usage"] == {
        "input_tokens": 10,
        "cache_creation_input_tokens": 2,
        "cache_read_input_tokens": 5,
        "output_tokens": 7,
    }


@pytest.mark.parametrize(
    ("finish", "reason"), [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal")]
)
def test_stop_reasons(finish: str, reason: str) -> None:
    chat = {"choices": [{"finish_reason": finish, "message": {"content": "x"}}]}
    assert chat_to_message(chat, Usage(), "m", "msg_1")["stop_reason"] == reason


def events(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for block in raw.decode().strip().split("\n\n"):
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        obj = json.loads(data[6:])
        assert obj["type"] == name[7:]
        out.append(obj)
    return out


def chunk(**delta: Any) -> dict[str, Any]:
    finish = delta.pop("finish", None)
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_stream_sequence_with_thinking_text_and_tools() -> None:
    s = ChatToMessagesStream("openai/o4-mini", "msg_x", input_estimate=40)
    raw = s.feed([chunk(role="assistant", reasoning_content="Hm")])
    raw += s.feed([chunk(reasoning_details=[{"type": "reasoning.text", "text": "", "signature": "sg"}])])
    raw += s.feed([chunk(content="Hi "), chunk(content="there")])
    raw += s.feed([chunk(tool_calls=[{"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}])])
    raw += s.feed([chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"a":'}}])])
    raw += s.feed([chunk(tool_calls=[{"index": 0, "function": {"arguments": "1}"}}], finish="tool_calls")])
    raw += s.end(Usage(input_tokens=33, output_tokens=12))
    ev = events(raw)
    kinds = [(e["type"], (e.get("content_block") or e.get("delta") or {}).get("type")) for e in ev]
    assert kinds == [
        ("message_start", None),
        ("ping", None),
        ("content_block_start", "thinking"),
        ("content_block_delta", "thinking_delta"),
        ("content_block_delta", "signature_delta"),
        ("content_block_stop", None),
        ("content_block_start", "text"),
        ("content_block_delta", "text_delta"),
        ("content_block_delta", "text_delta"),
        ("content_block_stop", None),
        ("content_block_start", "tool_use"),
        ("content_block_delta", "input_json_delta"),
        ("content_block_delta", "input_json_delta"),
        ("content_block_stop", None),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert ev[0]["message"]["usage"]["input_tokens"] == 40  # the estimate, until the real count
    assert [e["index"] for e in ev if e["type"] == "content_block_start"] == [0, 1, 2]
    assert ev[-2]["delta"]["stop_reason"] == "tool_use"
    assert ev[-2]["usage"]["input_tokens"] == 33 and ev[-2]["usage"]["output_tokens"] == 12
