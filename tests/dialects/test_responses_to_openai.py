"""responses_to_openai, without I/O: Responses requests into the pivot, and the pivot's answers and
streams back into Responses — the streams also read back through the `openai` SDK's own stream
accumulator, which must accept them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai._models import construct_type
from openai._types import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent

from shared.dialects.base import Usage
from shared.dialects.responses_to_openai import (
    ChatToResponsesStream,
    Echo,
    chat_to_output,
    input_items,
    responses_to_chat,
    responses_usage,
)

BASE: dict[str, Any] = {"model": "anthropic/claude-opus-5.5"}
PNG = "data:image/png;base64,iVBORw0KGgo="


def convert(history: list[dict[str, Any]] | None = None, **body: Any) -> Any:
    return responses_to_chat({**BASE, **body}, history or [])


def test_a_string_input_and_instructions() -> None:
    out = convert(input="hi", instructions="Be brief.", max_output_tokens=64, temperature=0.5).body
    assert out == {
        "model": "anthropic/claude-opus-5.5",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "temperature": 0.5,
        "max_tokens": 64,
    }


def test_message_items_and_their_parts() -> None:
    out = convert(
        input=[
            {"role": "developer", "content": "Answer in French."},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": PNG, "detail": "low"},
                    {
                        "type": "input_file",
                        "filename": "a.pdf",
                        "file_data": "data:application/pdf;base64,JVBE",
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Une image.", "annotations": []}],
            },
        ]
    )
    assert out.native_only is None and out.dropped == []
    assert out.body["messages"] == [
        {"role": "developer", "content": "Answer in French."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
                {
                    "type": "file",
                    "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"},
                },
            ],
        },
        {"role": "assistant", "content": "Une image."},
    ]


def test_function_calls_join_one_assistant_turn_and_outputs_are_tool_messages() -> None:
    out = convert(
        input=[
            {"role": "user", "content": "Weather in Oslo and Rome?"},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "two calls"}]},
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": '{"city":"Oslo"}'},
            {"type": "function_call", "call_id": "c2", "name": "w", "arguments": '{"city":"Rome"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "cold"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "warm"}, {"type": "input_image", "image_url": PNG}],
            },
        ]
    ).body
    assert out["messages"] == [
        {"role": "user", "content": "Weather in Oslo and Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "w", "arguments": '{"city":"Oslo"}'}},
                {"id": "c2", "type": "function", "function": {"name": "w", "arguments": '{"city":"Rome"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "cold"},
        {"role": "tool", "tool_call_id": "c2", "content": "warm"},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": PNG}}],
        },  # after: tools carry text
    ]


def test_history_comes_before_the_new_input() -> None:
    history = [
        {"type": "message", "role": "user", "content": "My name is Ada."},
        {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Hello Ada.", "annotations": []}]},
    ]  # fmt: skip
    out = convert(history, input="Name?", instructions="Be kind.").body
    assert [(m["role"], m["content"]) for m in out["messages"]] == [
        ("system", "Be kind."),
        ("user", "My name is Ada."),
        ("assistant", "Hello Ada."),
        ("user", "Name?"),
    ]


def test_function_tools_choices_and_formats() -> None:
    tool = {"type": "function", "name": "w", "description": "weather", "parameters": {"type": "object"},
            "strict": True}  # fmt: skip
    other = {"type": "function", "name": "x", "parameters": None, "strict": None}
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    out = convert(
        input="hi",
        tools=[tool, other],
        tool_choice={"type": "function", "name": "w"},
        text={"format": {"type": "json_schema", "name": "a", "schema": schema, "strict": True}},
        reasoning={"effort": "max", "summary": "auto"},
        parallel_tool_calls=False,
    )
    body = out.body
    assert body["tools"] == [
        {"type": "function", "function": {"name": "w", "parameters": {"type": "object"}, "description": "weather",
                                          "strict": True}},
        {"type": "function", "function": {"name": "x", "parameters": {"type": "object", "properties": {}}}},
    ]  # fmt: skip
    assert body["tool_choice"] == {"type": "function", "function": {"name": "w"}}
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "a", "schema": schema, "strict": True},
    }
    assert body["reasoning_effort"] == "xhigh"  # chat's highest
    assert body["parallel_tool_calls"] is False
    assert out.dropped == ["reasoning.summary"]
    allowed = convert(
        input="hi",
        tools=[tool, other],
        tool_choice={
            "type": "allowed_tools",
            "mode": "required",
            "tools": [{"type": "function", "name": "x"}],
        },
    ).body
    assert [t["function"]["name"] for t in allowed["tools"]] == ["x"] and allowed["tool_choice"] == "required"
    assert convert(input="hi", text={"format": {"type": "json_object"}}).body["response_format"] == {
        "type": "json_object"
    }
    assert "tool_choice" not in convert(input="hi", tool_choice="auto").body  # no tools: no choice


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"tools": [{"type": "web_search"}, {"type": "code_interpreter", "container": {"type": "auto"}}]},
         "the built-in tool(s) web_search, code_interpreter"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1", "detail": "auto"}]}]},
         "input_image with a file_id"),
        ({"input": [{"type": "web_search_call", "id": "ws_1", "status": "completed"}]}, "'web_search_call' items"),
        ({"prompt": {"id": "pmpt_1"}}, "a stored prompt"),
        ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice 'web_search_preview'"),
    ],
)  # fmt: skip
def test_what_only_openai_can_serve_is_native_only(body: dict[str, Any], why: str) -> None:
    out = convert(**{"input": "hi", **body})
    assert out.native_only == why


def test_fields_without_pivot_meaning_are_dropped_and_named() -> None:
    out = convert(
        input="hi",
        text={"verbosity": "low"},
        truncation="auto",
        include=["reasoning.encrypted_content"],
        top_logprobs=3,
        prompt_cache_key="k",
        metadata={"a": "b"},
        store=True,
        previous_response_id="resp_1",
    )
    assert sorted(out.dropped) == [
        "include",
        "prompt_cache_key",
        "text.verbosity",
        "top_logprobs",
        "truncation",
    ]
    for name in ("metadata", "store", "previous_response_id", "include", "truncation"):
        assert name not in out.body  # consumed by the gateway, or named above


def test_input_items_of_a_string() -> None:
    assert input_items({"input": "hi"}) == [{"type": "message", "role": "user", "content": "hi"}]


# --- answers ---------------------------------------------------------------------------------------
def chat(message: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}]}


def test_a_chat_answer_becomes_output_items() -> None:
    output, incomplete = chat_to_output(
        chat(
            {
                "reasoning_content": "Think.",
                "content": "Checking.",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
                ],
            },
            "tool_calls",
        )
    )
    assert incomplete is None
    assert [i["type"] for i in output] == ["reasoning", "message", "function_call"]
    assert output[0]["summary"] == [{"type": "summary_text", "text": "Think."}]
    assert output[1]["content"] == [
        {"type": "output_text", "annotations": [], "logprobs": [], "text": "Checking."}
    ]
    assert output[1]["id"].startswith("msg_") and output[1]["status"] == "completed"
    call = output[2]
    assert (call["call_id"], call["name"], call["arguments"], call["status"]) == (
        "call_1",
        "w",
        "{}",
        "completed",
    )
    assert call["id"].startswith("fc_")


def test_length_is_incomplete_and_a_refusal_is_a_refusal_part() -> None:
    assert chat_to_output(chat({"content": "Once upon"}, "length"))[1] == "max_output_tokens"
    output, _ = chat_to_output(chat({"content": None, "refusal": "I can't."}))
    assert output[0]["content"] == [{"type": "refusal", "refusal": "I can't."}]


def test_usage_counts_cache_reads_in_the_input() -> None:
    usage = Usage(
        input_tokens=10, cache_read_tokens=90, cache_write_tokens=5, output_tokens=20, reasoning_tokens=8
    )
    assert responses_usage(usage) == {
        "input_tokens": 105,
        "input_tokens_details": {"cached_tokens": 90, "cache_write_tokens": 5},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 8},
        "total_tokens": 125,
    }


# --- streams ---------------------------------------------------------------------------------------
ECHO = Echo("resp_abc", "anthropic/claude-opus-5.5", 1_700_000_000, {"input": "hi", "tools": []}, False)


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "x", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def events(data: bytes) -> list[dict[str, Any]]:
    out = []
    for block in data.decode().strip().split("\n\n"):
        name, payload = block.split("\n")
        obj = json.loads(payload.removeprefix("data: "))
        assert name == f"event: {obj['type']}"
        out.append(obj)
    return out


def sdk_final(evs: list[dict[str, Any]]) -> Any:
    """What the `openai` SDK's own stream accumulator makes of the events (it raises on a sequence
    OpenAI would never send)."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for e in evs:
        state.handle_event(construct_type(type_=ResponseStreamEvent, value=e))  # type: ignore[arg-type]
    return state._completed_response


def run(
    chunks: list[list[dict[str, Any]]], usage: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    stream = ChatToResponsesStream(ECHO)
    data = b"".join(stream.feed(c) for c in chunks)
    tail, final = stream.end(usage or {"input_tokens": 3, "output_tokens": 2})
    return events(data + tail), final


def test_a_text_stream() -> None:
    evs, final = run([[chunk({"role": "assistant", "content": ""})], [chunk({"content": "Hel"})],
                      [chunk({"content": "lo"}), chunk({}, "stop")]])  # fmt: skip
    assert [e["type"] for e in evs] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    assert evs[0]["response"]["status"] == "in_progress" and evs[0]["response"]["id"] == "resp_abc"
    assert evs[6]["text"] == "Hello"
    assert final["status"] == "completed" and final["usage"] == {"input_tokens": 3, "output_tokens": 2}
    assert evs[-1]["response"] == final
    parsed = sdk_final(evs)
    assert parsed.output_text == "Hello" and parsed.id == "resp_abc"


def test_reasoning_then_text_then_parallel_tool_calls() -> None:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "w", "arguments": ""}}
    evs, final = run(
        [
            [chunk({"reasoning_content": "Hmm"}), chunk({"reasoning_content": "."})],
            [chunk({"content": "Checking."})],
            [
                chunk({"tool_calls": [call]}),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}),
            ],
            [
                chunk(
                    {
                        "tool_calls": [
                            {**call, "index": 1, "id": "call_2", "function": {"name": "v", "arguments": "{}"}}
                        ]
                    }
                )
            ],
            [
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
                chunk({}, "tool_calls"),
            ],
        ]
    )
    kinds = [e["type"] for e in evs]
    assert (
        "response.reasoning_summary_text.delta" in kinds and "response.function_call_arguments.done" in kinds
    )
    assert [i["type"] for i in final["output"]] == ["reasoning", "message", "function_call", "function_call"]
    assert final["output"][0]["summary"] == [{"type": "summary_text", "text": "Hmm."}]
    assert [(i["call_id"], i["arguments"]) for i in final["output"][2:]] == [
        ("call_1", '{"a":1}'),
        ("call_2", "{}"),
    ]
    parsed = sdk_final(evs)
    assert [o.type for o in parsed.output] == ["reasoning", "message", "function_call", "function_call"]
    assert parsed.output[2].arguments == '{"a":1}'


def test_a_refusal_and_a_length_stop() -> None:
    evs, final = run([[chunk({"refusal": "No."})], [chunk({}, "length")]])
    assert "response.refusal.delta" in [e["type"] for e in evs]
    assert final["output"][0]["content"] == [{"type": "refusal", "refusal": "No."}]
    assert evs[-1]["type"] == "response.incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}


def test_a_failure_after_the_first_event_is_response_failed() -> None:
    stream = ChatToResponsesStream(ECHO)
    data = stream.feed([chunk({"content": "Hel"})]) + stream.failed(
        {"code": "server_error", "message": "upstream went away"}
    )
    evs = events(data)
    assert evs[-1]["type"] == "response.failed"
    assert evs[-1]["response"]["error"] == {"code": "server_error", "message": "upstream went away"}
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
