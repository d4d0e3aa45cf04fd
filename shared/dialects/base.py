"""The small interface every dialect translator shares (STYLE §2).

Gatewayz speaks OpenAI chat completions inside; a translator converts one such request into a
vendor's wire format and the vendor's answer (whole or streamed) back. Translation is pure: plain
data in, plain data out, no I/O, so every translator is tested without a network.

One translator instance serves one request attempt: it keeps the stream state and records what it
had to drop (`dropped`) or change (`adjusted`) so the pipeline can say so in response headers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import orjson

from shared.transport.errors import UpstreamError
from shared.transport.sse import SSEParser


class StreamParser(Protocol):
    """Turns a streamed body's byte chunks into (event name, data) pairs."""

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]: ...

    def close(self) -> list[tuple[str | None, bytes]]: ...


@dataclass(slots=True)
class Usage:
    """Token counts normalised once per dialect so that each token is billed exactly once.

    `input_tokens` excludes cache reads and writes; `output_tokens` includes reasoning, and
    `reasoning_tokens` says how many of them were reasoning; `cache_write_1h_tokens` says how many
    of the cache writes were Anthropic's 1-hour ones (priced apart).
    """

    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    images: int = 0  # images generated (billed per image where the catalog prices them so)
    image_kind: tuple[str, str] = ("", "")  # their (quality, size), which sets the per-image price

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.cache_write_1h_tokens += other.cache_write_1h_tokens
        self.output_tokens += other.output_tokens
        self.reasoning_tokens += other.reasoning_tokens
        self.images += other.images
        self.estimated = self.estimated or other.estimated

    def openai(self) -> dict[str, Any]:
        """The OpenAI `usage` object (cost is added by the pipeline)."""
        prompt = self.prompt_tokens
        details: dict[str, Any] = {"cached_tokens": self.cache_read_tokens}
        if self.cache_write_tokens:
            details["cache_write_tokens"] = self.cache_write_tokens
        out: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": self.output_tokens,
            "total_tokens": prompt + self.output_tokens,
            "prompt_tokens_details": details,
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }
        if self.estimated:
            out["estimated"] = True
        return out


class ChatTranslator:
    """Base of the translators. Subclasses fill in the five conversions.

    `source` is the API of the requests a translator takes and of the answers it gives back: the
    pivot (OpenAI chat) for `openai_to_<vendor>`, or a caller's own API for a pass-through.
    """

    source: ClassVar[str] = "openai"
    dialect: ClassVar[str] = ""
    # A pass-through whose requests still take the offer's parameter quirks (providers.toml):
    # OpenAI-shaped bodies of APIs without a pivot (embeddings, images) to OpenAI-compatible hosts.
    takes_quirks: ClassVar[bool] = False

    def __init__(
        self,
        *,
        model_id: str,
        native_id: str,
        supports: frozenset[str] = frozenset(),
        max_output_tokens: int | None = None,
    ) -> None:
        self.model_id = model_id  # the gateway's id, written into every response
        self.native_id = native_id  # the vendor's id, written into every request
        self.supports = supports  # the provider row's feature set
        # The offer's output ceiling, for vendors that require max_tokens (Anthropic).
        self.max_output_tokens = max_output_tokens
        self.extra_headers: dict[str, str] = {}  # per-request headers (a beta flag, say)
        self.dropped: list[str] = []
        self.adjusted: list[str] = []
        self.usage: Usage | None = None  # set by `response` or by the end of a stream
        self.created = int(time.time())
        self.response_id = ""

    def drop(self, param: str) -> None:
        if param not in self.dropped:
            self.dropped.append(param)

    # --- request ---------------------------------------------------------------------------------
    def path(self, stream: bool) -> str:
        """The path (and query) appended to the provider's base URL."""
        raise NotImplementedError

    def request(self, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        """The vendor request body for an OpenAI chat request (already validated)."""
        raise NotImplementedError

    # --- response --------------------------------------------------------------------------------
    def response(self, data: dict[str, Any]) -> dict[str, Any]:
        """An OpenAI `chat.completion` from the vendor's JSON; sets `self.usage`."""
        raise NotImplementedError

    def stream_parser(self) -> StreamParser:
        """The framing of the vendor's stream: server-sent events, unless the dialect says otherwise
        (Bedrock's ConverseStream answers AWS event-stream frames)."""
        return SSEParser()

    def raw_response(self, raw: bytes) -> dict[str, Any] | None:
        """The answer read from the upstream's bytes without parsing all of them, for answers whose
        bulk the gateway passes on untouched (embedding vectors); sets `self.usage` as `response`
        does. None: parse the whole body and call `response`."""
        return None

    def stream_event(self, event: str | None, data: bytes) -> list[Any]:
        """OpenAI `chat.completion.chunk` objects for one SSE event (possibly none); a
        pass-through gives the caller's own events instead.

        Usage is never emitted as a chunk: it is recorded in `self.usage`, and the pipeline writes
        the caller's usage chunk (with the cost) itself. An error event raises `UpstreamError`.
        """
        raise NotImplementedError

    def stream_end(self) -> list[dict[str, Any]]:
        """Chunks still owed when the upstream stream ends (a final finish_reason, say)."""
        return []

    @property
    def stream_done(self) -> bool:
        """True once the vendor's own end-of-stream marker was seen."""
        return False

    def finishes(self, items: list[Any]) -> bool:
        """Whether these stream items end the answer (a chunk with a finish_reason)."""
        return any(c.get("finish_reason") for chunk in items for c in chunk.get("choices") or ())

    def output_chars(self, items: list[Any]) -> int:
        """Characters generated in these stream items: the basis of an estimate when the
        upstream reports no usage."""
        total = 0
        for chunk in items:
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                for key in ("content", "reasoning_content"):
                    if isinstance(delta.get(key), str):
                        total += len(delta[key])
                for call in delta.get("tool_calls") or ():
                    args = (call.get("function") or {}).get("arguments")
                    if isinstance(args, str):
                        total += len(args)
        return total

    # --- errors ----------------------------------------------------------------------------------
    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        """Classify a non-2xx upstream answer on its status and structured fields."""
        raise NotImplementedError

    # --- helpers for subclasses --------------------------------------------------------------------
    @staticmethod
    def event_object(data: bytes) -> dict[str, Any] | None:
        """A stream event's JSON object (None for any other JSON value); malformed JSON is a
        protocol error, which fails over before the first byte and ends the stream after it."""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(None, "upstream sent a malformed stream event", kind="protocol") from None
        return obj if isinstance(obj, dict) else None

    def chunk(
        self, delta: dict[str, Any], index: int = 0, finish_reason: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": finish_reason}
        choice.update(extra)
        return {
            "id": self.response_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model_id,
            "choices": [choice],
        }
