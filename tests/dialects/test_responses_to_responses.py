"""responses_to_responses, without I/O: the pass-through to OpenAI's own Responses API — the body as
written with the gateway's state rules, usage read for billing, the first events held for
failover, and upstream failures classified."""

from __future__ import annotations

import json

import pytest

from shared.dialects import native_translator_class
from shared.dialects.base import Usage
from shared.dialects.responses_to_responses import ResponsesEvent, ResponsesToResponses, usage_of
from shared.transport.errors import UpstreamError


def translator() -> ResponsesToResponses:
    return ResponsesToResponses(model_id="openai/gpt-4o", native_id="gpt-4o")


def test_the_pair_needs_the_providers_responses_feature() -> None:
    assert native_translator_class("responses", "openai", frozenset({"responses"})) is ResponsesToResponses
    assert (
        native_translator_class("responses", "openai", frozenset({"n", "logprobs"})) is None
    )  # compatible only
    assert native_translator_class("responses", "anthropic", frozenset({"responses"})) is None
    assert native_translator_class("anthropic", "anthropic", frozenset()) is not None  # needs nothing more


def test_the_body_goes_as_written_but_stores_nothing_upstream() -> None:
    body = {"model": "openai/gpt-4o", "input": "hi", "tools": [{"type": "web_search"}], "store": True,
            "previous_response_id": "resp_1", "stream": False, "future_field": 1}  # fmt: skip
    out = translator().request(body, stream=False)
    assert out == {"model": "gpt-4o", "input": "hi", "tools": [{"type": "web_search"}], "store": False,
                   "future_field": 1}  # fmt: skip
    assert translator().request(body, stream=True)["stream"] is True
    assert translator().path(True) == "/responses"


def test_usage_counts_cached_tokens_once() -> None:
    raw = {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 80}, "output_tokens": 30,
           "output_tokens_details": {"reasoning_tokens": 20}, "total_tokens": 130}  # fmt: skip
    assert usage_of(raw) == Usage(
        input_tokens=20, cache_read_tokens=80, output_tokens=30, reasoning_tokens=20
    )
    assert usage_of(None) is None


def event(kind: str, **fields: object) -> tuple[str, bytes]:
    return kind, json.dumps({"type": kind, **fields}).encode()


def test_stream_holds_the_first_events_and_reads_usage_at_the_end() -> None:
    tr = translator()
    assert tr.stream_event(*event("response.created", response={"id": "resp_up"})) == []
    assert tr.stream_event(*event("response.in_progress", response={"id": "resp_up"})) == []
    items = tr.stream_event(*event("response.output_text.delta", delta="Hi"))
    assert [i.name for i in items] == [
        "response.created",
        "response.in_progress",
        "response.output_text.delta",
    ]
    assert items[0].obj is not None and items[2].obj is None  # deltas are forwarded unparsed
    usage = {"input_tokens": 5, "output_tokens": 2}
    done = tr.stream_event(*event("response.completed", response={"id": "resp_up", "usage": usage}))
    assert isinstance(done[0], ResponsesEvent) and tr.finishes(done) and tr.stream_done
    assert tr.usage == Usage(input_tokens=5, output_tokens=2)


@pytest.mark.parametrize(
    ("kind", "fields", "status"),
    [
        ("error", {"code": "rate_limit_exceeded", "message": "slow down"}, 429),
        ("response.failed", {"response": {"error": {"code": "server_error", "message": "boom"}}}, 502),
    ],
)
def test_failures_in_the_stream_raise(kind: str, fields: dict[str, object], status: int) -> None:
    with pytest.raises(UpstreamError) as info:
        translator().stream_event(*event(kind, **fields))
    assert info.value.status == status and info.value.kind == "stream"


def test_a_failed_whole_response_raises() -> None:
    with pytest.raises(UpstreamError):
        translator().response(
            {"id": "resp_1", "status": "failed", "error": {"code": "server_error", "message": "x"}}
        )
