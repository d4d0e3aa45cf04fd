"""Request validation: clear 400s naming the parameter; derived routing needs."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import InvalidRequest
from shared.pipeline.request import check_chat, upstream_body

OK = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages[0].content[0].type"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        (
            {"messages": [{"role": "assistant", "content": None, "tool_calls": [{"function": {}}]}]},
            "messages[0].tool_calls[0]",
        ),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": -1}, "top_p"),
        ({"n": 0}, "n"),
        ({"n": True}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"stop": [1, 2]}, "stop"),
        ({"tools": [{"type": "retrieval"}]}, "tools[0]"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"logit_bias": [1]}, "logit_bias"),
    ],
)
def test_bad_input_names_the_parameter(patch: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        check_chat({**OK, **patch})
    assert info.value.param == param


def test_not_an_object() -> None:
    with pytest.raises(InvalidRequest):
        check_chat([1, 2])


def test_needs_are_derived_from_the_request() -> None:
    params = check_chat(
        {
            **OK,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "x"},
                        {"type": "image_url", "image_url": {"url": "data:,"}},
                    ],
                }
            ],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {}}},
            "stream": True,
            "stream_options": {"include_usage": True},
            "n": 3,
            "max_completion_tokens": 50,
        }
    )
    assert params.needs == {"vision", "tools", "json_schema"}
    assert params.stream and params.include_usage and params.n == 3 and params.max_output == 50


def test_openrouter_reasoning_object_is_a_synonym() -> None:
    body = {**OK, "reasoning": {"effort": "high"}}
    check_chat(body)
    assert body["reasoning_effort"] == "high"
    assert upstream_body(body) == {**OK, "reasoning_effort": "high"}


def test_gateway_fields_are_consumed() -> None:
    body = {**OK, "models": ["a/b"], "provider": {"sort": "price"}, "temperature": 1}
    assert upstream_body(body) == {**OK, "temperature": 1}
    assert upstream_body(OK) is OK  # no copy when there is nothing to remove
