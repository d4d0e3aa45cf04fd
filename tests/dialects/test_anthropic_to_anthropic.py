"""anthropic_to_anthropic, without I/O: the body as written with the native model, the events as
they came, and the usage read on the way."""

from __future__ import annotations

import orjson
import pytest

from shared.dialects.anthropic_to_anthropic import AnthropicToAnthropic, Event
from shared.transport.errors import UpstreamError


def tr() -> AnthropicToAnthropic:
    return AnthropicToAnthropic(model_id="anthropic/claude-opus-5.5", native_id="claude-opus-5-5-20260922")


def test_request_replaces_only_the_model_and_keeps_the_order() -> None:
    body = {"model": "claude-opus-5-5", "zeta": 1, "messages": [], "alpha": {"x": [1, 2]}, "max_tokens": 5}
    out = tr().request(body, stream=True)
    assert list(out) == ["model", "zeta", "messages", "alpha", "max_tokens", "stream"]
    assert out["model"] == "claude-opus-5-5-20260922" and out["alpha"] == {"x": [1, 2]}
    assert "stream" not in tr().request({**body, "stream": True}, stream=False)


def ev(name: str, obj: dict[str, object]) -> tuple[str, bytes]:
    return name, orjson.dumps({"type": name, **obj})


def test_stream_holds_message_start_until_content_and_reads_usage() -> None:
    t = tr()
    start = ev(
        "message_start",
        {"message": {"id": "msg_1", "usage": {"input_tokens": 20, "cache_read_input_tokens": 7}}},
    )
    assert t.stream_event(*start) == []
    assert t.stream_event(*ev("ping", {})) == []
    block = ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    out = t.stream_event(*block)
    assert [item.name for item in out] == ["message_start", "ping", "content_block_start"]
    assert out[0] == Event(*start)  # the bytes as they came
    delta = ev("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}})
    assert t.finishes(t.stream_event(*delta))
    t.stream_event(*ev("message_stop", {}))
    assert t.stream_done
    assert t.usage is not None
    assert (t.usage.input_tokens, t.usage.cache_read_tokens, t.usage.output_tokens) == (20, 7, 9)
    assert t.response_id == "msg_1"


def test_an_error_before_content_raises_so_the_next_offer_is_tried() -> None:
    t = tr()
    t.stream_event(*ev("message_start", {"message": {"usage": {}}}))
    with pytest.raises(UpstreamError) as info:
        t.stream_event(*ev("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}}))
    assert info.value.status == 529 and info.value.failover


def test_one_hour_cache_writes_are_counted_apart() -> None:
    t = tr()
    usage = {
        "input_tokens": 1,
        "cache_creation_input_tokens": 300,
        "cache_creation": {"ephemeral_1h_input_tokens": 200},
    }
    t.response({"id": "msg_2", "content": [], "usage": usage})
    assert t.usage is not None and (t.usage.cache_write_tokens, t.usage.cache_write_1h_tokens) == (300, 200)
