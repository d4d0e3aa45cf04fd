"""What history keeps of a request and an answer (`shared.history.extract`): pure functions over
the pivot and the vendors' documented shapes (Anthropic Messages streaming events:
https://docs.anthropic.com/en/docs/build-with-claude/streaming; Responses streaming events:
https://platform.openai.com/docs/api-reference/responses-streaming)."""

from __future__ import annotations

import orjson

from shared.dialects.anthropic_to_anthropic import Event
from shared.dialects.responses_to_responses import ResponsesEvent
from shared.history.extract import StreamText, answer_text, new_turn, request_messages


def test_request_messages_flatten_parts_and_name_what_is_not_text() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{}"}}
                ],
            },
        ]
    }
    assert request_messages(body) == [
        ("system", "Be brief."),
        ("user", "What is in this picture?\n[image_url]"),
        ("assistant", "[tool call: look({})]"),
    ]


def test_new_turn_is_what_follows_the_last_answer() -> None:
    messages = [("user", "a"), ("assistant", "b"), ("user", "c"), ("tool", "d")]
    assert new_turn(messages) == [("user", "c"), ("tool", "d")]
    assert new_turn([("system", "s"), ("user", "a")]) == [("system", "s"), ("user", "a")]


def test_whole_answers_in_each_shape() -> None:
    chat = {
        "choices": [{"message": {"role": "assistant", "content": "Paris."}}, {"message": {"content": "No"}}]
    }
    assert answer_text("openai", chat) == "Paris."
    anthropic = {
        "content": [
            {"type": "thinking", "thinking": "hidden"},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Paris"}},
        ]
    }
    assert answer_text("anthropic", anthropic) == 'Let me check.\n[tool call: weather({"city":"Paris"})]'
    responses = {
        "output": [
            {"type": "reasoning", "summary": []},
            {"type": "message", "content": [{"type": "output_text", "text": "Hi.", "annotations": []}]},
        ]
    }
    assert answer_text("responses", responses) == "Hi."


def _event(name: str, data: dict[str, object]) -> Event:
    return Event(name, orjson.dumps(data))


def test_an_anthropic_stream_is_assembled_with_its_tool_call() -> None:
    text = StreamText("anthropic")
    text.add([_event("message_start", {"type": "message_start", "message": {}})])
    text.add(
        [
            _event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
            _event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
            _event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "lo"}}),
            _event(
                "content_block_start",
                {"index": 1, "content_block": {"type": "tool_use", "name": "f", "input": {}}},
            ),
            _event(
                "content_block_delta",
                {"index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"a":'}},
            ),
            _event(
                "content_block_delta",
                {"index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}},
            ),
            _event("message_stop", {"type": "message_stop"}),
        ]
    )
    assert text.text() == 'Hello\n[tool call: f({"a":1})]'


def test_a_responses_stream_uses_its_completed_response() -> None:
    completed = {
        "type": "response.completed",
        "response": {"output": [{"type": "message", "content": [{"type": "output_text", "text": "Done."}]}]},
    }
    text = StreamText("responses")
    text.add([ResponsesEvent("response.output_text.delta", orjson.dumps({"delta": "Do"}))])
    text.add([ResponsesEvent("response.completed", orjson.dumps(completed), completed)])
    assert text.text() == "Done."


def test_a_chat_stream_keeps_the_first_choice_and_its_tool_calls() -> None:
    def chunk(index: int, delta: dict[str, object]) -> dict[str, object]:
        return {"choices": [{"index": index, "delta": delta, "finish_reason": None}]}

    text = StreamText("openai")
    text.add([chunk(0, {"content": "A"}), chunk(1, {"content": "other choice"}), chunk(0, {"content": "B"})])
    text.add(
        [
            chunk(0, {"tool_calls": [{"index": 0, "function": {"name": "g", "arguments": '{"x"'}}]}),
            chunk(0, {"tool_calls": [{"index": 0, "function": {"arguments": ":2}"}}]}),
        ]
    )
    assert text.text() == 'AB\n[tool call: g({"x":2})]'
