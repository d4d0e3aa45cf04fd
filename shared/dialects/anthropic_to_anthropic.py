"""anthropic_to_anthropic: the pass-through for Anthropic Messages callers to Anthropic upstreams.

The caller's body goes out as written — unknown and new fields included (`output_config`,
`context_management`, adaptive thinking, system blocks with `cache_control`, SPEC §2.2) — with
only `model` replaced by the offer's native id. Answers come back untouched: the whole message as
the upstream sent it, and a stream event by event (each event's data bytes as they arrived).
What billing needs is read on the way: usage from the message, or from `message_start` (input
and cache counts) and `message_delta` (cumulative output).

Streams: `message_start` and `ping` are held until the next event, so that an error event before
any content still fails over to the next offer (the caller has seen no byte yet).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from shared.dialects.base import ChatTranslator
from shared.dialects.openai_to_anthropic import (
    accumulate_usage,
    anthropic_error,
    anthropic_usage,
    stream_error,
)
from shared.transport.errors import UpstreamError

_HELD = frozenset({"message_start", "ping"})
# Bytes of a content_block_delta event that are not generated text (type, index, delta keys):
# the basis of an estimate for a stream that never reports usage.
_DELTA_OVERHEAD = 64


class Event(NamedTuple):
    """One upstream SSE event, forwarded as it came."""

    name: str
    data: bytes


class AnthropicToAnthropic(ChatTranslator):
    source = "anthropic"
    dialect = "anthropic"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._held: list[Event] = []
        self._raw_usage: dict[str, Any] = {}
        self._done = False

    def path(self, stream: bool) -> str:
        return "/v1/messages"

    def request(self, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        out = dict(body)  # key order kept: the body leaves as the caller wrote it
        out["model"] = self.native_id
        if stream:
            out["stream"] = True
        else:
            out.pop("stream", None)
        return out

    def response(self, data: dict[str, Any]) -> dict[str, Any]:
        self.response_id = str(data.get("id") or "")
        self.usage = anthropic_usage(data.get("usage"))
        return data

    # --- stream -----------------------------------------------------------------------------------
    def stream_event(self, event: str | None, data: bytes) -> list[Any]:
        name = event or str((self.event_object(data) or {}).get("type") or "")
        if name == "error":
            obj = self.event_object(data)
            raise stream_error(obj or {})
        if name == "message_start":
            obj = self.event_object(data) or {}
            message = obj.get("message") or {}
            self.response_id = str(message.get("id") or "")
            self._record_usage(message.get("usage"))
        elif name == "message_delta":
            obj = self.event_object(data) or {}
            self._record_usage(obj.get("usage"))
        elif name == "message_stop":
            self._done = True
        item = Event(name, data)
        if name in _HELD and not self._done:
            self._held.append(item)
            return []
        if self._held:
            out: list[Any] = [*self._held, item]
            self._held = []
            return out
        return [item]

    def stream_end(self) -> list[Any]:
        held, self._held = self._held, []
        return held

    def _record_usage(self, raw: Any) -> None:
        self.usage = accumulate_usage(self._raw_usage, raw) or self.usage

    @property
    def stream_done(self) -> bool:
        return self._done

    def finishes(self, items: list[Any]) -> bool:
        return any(item.name in ("message_delta", "message_stop") for item in items)

    def output_chars(self, items: list[Any]) -> int:
        return sum(
            max(0, len(item.data) - _DELTA_OVERHEAD) for item in items if item.name == "content_block_delta"
        )

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        return anthropic_error(status, headers, body)


def event_bytes(item: Event) -> bytes:
    return b"event: " + item.name.encode() + b"\ndata: " + item.data + b"\n\n"
