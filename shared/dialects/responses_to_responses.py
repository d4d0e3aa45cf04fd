"""responses_to_responses: the pass-through for Responses callers to providers that serve OpenAI's
Responses API themselves (providers.toml feature `responses`: OpenAI).

The caller's body goes out as written — built-in tools, unknown and new fields included — with
`model` replaced by the offer's native id and `store: false`: the gateway keeps a conversation's
state itself (under the caller's account, not the gateway's upstream key), so the upstream stores
nothing and `previous_response_id` never reaches it (the front end has already put the stored
items in `input`). Answers come back untouched, whole or event by event (each event's data bytes
as they arrived); the front end gives them the gateway's response id and model.

What billing needs is read on the way: `usage` from the response, or from `response.completed` /
`response.incomplete` (https://platform.openai.com/docs/api-reference/responses/object#responses/object-usage:
`input_tokens` include `input_tokens_details.cached_tokens`, `output_tokens` include
`output_tokens_details.reasoning_tokens`). Streams: `response.created` and `response.in_progress`
are held until the next event, so that a failure before any output still fails over (the caller
has seen no byte yet). An `error` event or `response.failed` ends the stream with an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from shared.dialects.base import ChatTranslator, Usage
from shared.dialects.openai_to_openai import error_message
from shared.transport.errors import UpstreamError, retry_after_seconds

LIFECYCLE = frozenset(
    {"response.created", "response.queued", "response.in_progress", "response.completed",
     "response.incomplete", "response.failed"}
)  # fmt: skip
TERMINAL = frozenset({"response.completed", "response.incomplete"})
_HELD = frozenset({"response.created", "response.queued", "response.in_progress"})
_DELTAS = frozenset(
    {"response.output_text.delta", "response.function_call_arguments.delta", "response.refusal.delta",
     "response.reasoning_summary_text.delta", "response.reasoning_text.delta"}
)  # fmt: skip
# Bytes of a delta event that are not generated text (type, ids, indexes, sequence number): the
# basis of an estimate for a stream that never reports usage.
_DELTA_OVERHEAD = 150
# https://platform.openai.com/docs/api-reference/responses/object#responses/object-error
_ERROR_STATUS = {"rate_limit_exceeded": 429, "server_error": 502, "vector_store_timeout": 504}


class ResponsesEvent(NamedTuple):
    """One upstream SSE event, forwarded as it came; `obj` is its parsed data for the lifecycle
    events (which carry the response object), else None."""

    name: str
    data: bytes
    obj: dict[str, Any] | None = None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_of(raw: Any) -> Usage | None:
    """A Responses `usage` object, normalised (None when there is none)."""
    if not isinstance(raw, Mapping):
        return None
    total_in = _int(raw.get("input_tokens"))
    output = _int(raw.get("output_tokens"))
    idet = raw.get("input_tokens_details") or {}
    odet = raw.get("output_tokens_details") or {}
    cached = min(_int(idet.get("cached_tokens")), total_in)
    written = min(_int(idet.get("cache_write_tokens")), total_in - cached)
    return Usage(
        input_tokens=total_in - cached - written,
        cache_read_tokens=cached,
        cache_write_tokens=written,
        output_tokens=output,
        reasoning_tokens=min(_int(odet.get("reasoning_tokens")), output),
    )


def failure(error: Any) -> UpstreamError:
    """A failed response's `error` (or an `error` event), classified by its code."""
    err = error if isinstance(error, Mapping) else {}
    code = err.get("code") if isinstance(err.get("code"), str) else None
    message = str(err.get("message") or "the upstream failed the response")[:2000]
    status = _ERROR_STATUS.get(code or "", 400 if code and code.startswith("invalid") else 502)
    return UpstreamError(status, message, kind="stream", vendor_type=code)


class ResponsesToResponses(ChatTranslator):
    source = "responses"
    dialect = "openai"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._held: list[ResponsesEvent] = []
        self._done = False

    def path(self, stream: bool) -> str:
        return "/responses"

    def request(self, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        out = dict(body)  # key order kept: the body leaves as the caller wrote it
        out["model"] = self.native_id
        out["store"] = False  # the gateway keeps the state (see the module docstring)
        out.pop("previous_response_id", None)
        if stream:
            out["stream"] = True
        else:
            out.pop("stream", None)
            out.pop("stream_options", None)
        return out

    def response(self, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("status") == "failed":
            raise failure(data.get("error"))
        self.response_id = str(data.get("id") or "")
        self.usage = usage_of(data.get("usage"))
        return data

    # --- stream -----------------------------------------------------------------------------------
    def stream_event(self, event: str | None, data: bytes) -> list[Any]:
        obj = None
        name = event
        if name is None or name in LIFECYCLE or name == "error":
            obj = self.event_object(data) or {}
            name = name or str(obj.get("type") or "")
        if name == "error":
            raise failure(obj)
        if obj is not None and name in LIFECYCLE:
            response = obj.get("response") or {}
            if name == "response.failed":
                raise failure(response.get("error"))
            self.response_id = self.response_id or str(response.get("id") or "")
            if name in TERMINAL:
                self.usage = usage_of(response.get("usage")) or self.usage
                self._done = True
        item = ResponsesEvent(name, data, obj if name in LIFECYCLE else None)
        if name in _HELD:
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

    @property
    def stream_done(self) -> bool:
        return self._done

    def finishes(self, items: list[Any]) -> bool:
        return any(item.name in TERMINAL for item in items)

    def output_chars(self, items: list[Any]) -> int:
        return sum(max(0, len(item.data) - _DELTA_OVERHEAD) for item in items if item.name in _DELTAS)

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        message, vtype, param = error_message(body, status)
        return UpstreamError(
            status, message, retry_after=retry_after_seconds(headers), vendor_type=vtype, param=param
        )
