"""A fast fake OpenAI and Anthropic upstream for 127.0.0.1 (the benchmark's physical floor).

A raw asyncio `Protocol` HTTP/1.1 server (httptools parser, uvloop when installed) with
keep-alive. Every answer is rendered once at start-up, so a request costs one parse and one
`transport.write`:

- `POST …/chat/completions` → a fixed, realistic `chat.completion` with `usage`;
  with `"stream": true`, SSE over chunked transfer encoding: a role chunk, 20 content chunks, a
  finish chunk, a usage chunk (when `stream_options.include_usage` is set, as OpenAI does) and
  `data: [DONE]`.
- `POST /v1/messages` (Anthropic, https://docs.anthropic.com/en/api/messages) → a fixed `message`
  with `usage` (input, output, cache creation and cache read tokens); with `"stream": true`, the
  documented named events (https://docs.anthropic.com/en/docs/build-with-claude/streaming):
  `message_start`, `ping`, `content_block_start`, 20 `content_block_delta` text deltas,
  `content_block_stop`, `message_delta` (stop_reason, usage), `message_stop`. Like the real API
  it refuses a request without `x-api-key` (401) or `anthropic-version` (400), in Anthropic's
  error envelope.
- `POST …/responses` (OpenAI Responses, https://platform.openai.com/docs/api-reference/responses)
  → a fixed `response` with `usage`; with `"stream": true`, the documented named events
  (https://platform.openai.com/docs/api-reference/responses-streaming): `response.created`,
  `response.in_progress`, `response.output_item.added`, `response.content_part.added`, 20
  `response.output_text.delta`, `response.output_text.done`, `response.content_part.done`,
  `response.output_item.done`, `response.completed` (with the usage).
- `POST …/embeddings` (OpenAI, https://platform.openai.com/docs/api-reference/embeddings) → one
  text-embedding-3-small vector (1536 dimensions) with `usage`, as base64 (little-endian float32,
  the `openai` SDK's default) when the request asks for it, else as floats.
- `GET /health`, `GET /v1/models` → small fixed answers.

Delays: `--delay-ms` before the response (headers included) and `--chunk-delay-ms` between two
stream events. With a zero chunk delay the whole stream goes out in one write. A request can
override both with a `user` field (chat, Responses) or `metadata.user_id` (Messages) containing
`bench:delay=<ms>` and/or `bench:chunk=<ms>` (standard fields that gateways pass through), so one
fake serves every point.

Run: `python -m bench.fake_upstream --port 9100 [--delay-ms 50] [--chunk-delay-ms 0]`; it prints
`READY <port>` on stdout once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import socket
import sys
from typing import Any

import httptools
import orjson

MODEL = "gpt-4o-2024-08-06"
CREATED = 1_760_000_000
RESPONSE_ID = "chatcmpl-bench0000000000000000000000000"
_TEXT = (
    "Sure! Here is a short answer to your question about how a gateway forwards requests: "
    "it authenticates the caller, picks a provider, and streams the reply back unchanged."
)
WORDS = _TEXT.split(" ")
# 20 content pieces (about 20 tokens), as a real stream would send them.
PIECES = [w + " " for w in WORDS[:19]] + [" ".join(WORDS[19:])]
CONTENT = "".join(PIECES)
USAGE = {
    "prompt_tokens": 42,
    "completion_tokens": len(PIECES),
    "total_tokens": 42 + len(PIECES),
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}


def completion_body() -> bytes:
    return orjson.dumps(
        {
            "id": RESPONSE_ID,
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": CONTENT, "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
            "service_tier": "default",
            "system_fingerprint": "fp_bench",
        }
    )


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": RESPONSE_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def stream_events(include_usage: bool) -> list[bytes]:
    """The SSE events of one stream, each `data: …\\n\\n`."""
    objs: list[Any] = [_chunk({"role": "assistant", "content": "", "refusal": None})]
    objs += [_chunk({"content": piece}) for piece in PIECES]
    objs.append(_chunk({}, "stop"))
    if include_usage:
        objs.append({**_chunk({}), "choices": [], "usage": USAGE})
    events = [b"data: " + orjson.dumps(o) + b"\n\n" for o in objs]
    events.append(b"data: [DONE]\n\n")
    return events


# ---- Anthropic Messages -------------------------------------------------------------------------

CLAUDE_MODEL = "claude-sonnet-4-5-20250929"
MESSAGE_ID = "msg_bench00000000000000000000"
CLAUDE_USAGE = {
    "input_tokens": 42,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "output_tokens": len(PIECES),
    "service_tier": "standard",
}


def _message(content: list[dict[str, Any]], stop_reason: str | None, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": MESSAGE_ID,
        "type": "message",
        "role": "assistant",
        "model": CLAUDE_MODEL,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


EMBEDDING_SIZE = 1536


def embedding_body(encoding: str) -> bytes:
    import base64
    import struct

    values = [((17 * j) % 1024 - 512) / 4096 + j / 3e5 for j in range(EMBEDDING_SIZE)]
    vector: Any = values
    if encoding == "base64":
        vector = base64.b64encode(struct.pack(f"<{EMBEDDING_SIZE}f", *values)).decode()
    return orjson.dumps(
        {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": vector}],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 14, "total_tokens": 14},
        }
    )


def message_body() -> bytes:
    return orjson.dumps(_message([{"type": "text", "text": CONTENT}], "end_turn", CLAUDE_USAGE))


def _named(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps({"type": event, **data}) + b"\n\n"


def message_events() -> list[bytes]:
    """The SSE events of one Messages stream, each `event: X\\ndata: {...}\\n\\n`."""
    final = {k: v for k, v in CLAUDE_USAGE.items() if k != "service_tier"}  # cumulative, as the API sends
    events = [
        _named("message_start", {"message": _message([], None, {**CLAUDE_USAGE, "output_tokens": 1})}),
        _named("ping", {}),
        _named("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
    ]
    events += [
        _named("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
        for piece in PIECES
    ]
    events += [
        _named("content_block_stop", {"index": 0}),
        _named(
            "message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": final}
        ),
        _named("message_stop", {}),
    ]
    return events


# ---- OpenAI Responses --------------------------------------------------------------------------

RESPONSE_OBJECT_ID = "resp_bench0000000000000000000000000000"
ITEM_ID = "msg_bench0000000000000000000000000000"
RESPONSES_USAGE = {
    "input_tokens": 42,
    "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
    "output_tokens": len(PIECES),
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 42 + len(PIECES),
}
_TEXT_PART = {"type": "output_text", "annotations": [], "logprobs": [], "text": CONTENT}
_ITEM = {
    "id": ITEM_ID,
    "type": "message",
    "status": "completed",
    "role": "assistant",
    "content": [_TEXT_PART],
}


def _response(status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": RESPONSE_OBJECT_ID,
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": 256,
        "model": MODEL,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": 0.7,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def response_body() -> bytes:
    return orjson.dumps(_response("completed", [_ITEM], RESPONSES_USAGE))


def response_events() -> list[bytes]:
    """The SSE events of one Responses stream, each `event: X\ndata: {...}\n\n`."""
    objs: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response("in_progress", [], None)},
        {"type": "response.in_progress", "response": _response("in_progress", [], None)},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**_ITEM, "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", "item_id": ITEM_ID, "output_index": 0, "content_index": 0,
         "part": {**_TEXT_PART, "text": ""}},
    ]  # fmt: skip
    objs += [
        {"type": "response.output_text.delta", "item_id": ITEM_ID, "output_index": 0, "content_index": 0,
         "delta": piece, "logprobs": []}
        for piece in PIECES
    ]  # fmt: skip
    objs += [
        {"type": "response.output_text.done", "item_id": ITEM_ID, "output_index": 0, "content_index": 0,
         "text": CONTENT, "logprobs": []},
        {"type": "response.content_part.done", "item_id": ITEM_ID, "output_index": 0, "content_index": 0,
         "part": _TEXT_PART},
        {"type": "response.output_item.done", "output_index": 0, "item": _ITEM},
        {"type": "response.completed", "response": _response("completed", [_ITEM], RESPONSES_USAGE)},
    ]  # fmt: skip
    out = []
    for seq, obj in enumerate(objs):
        kind = obj.pop("type")
        out.append(_named(kind, {"sequence_number": seq, **obj}))
    return out


def anthropic_error(status: bytes, kind: str, message: str) -> bytes:
    body = orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})
    return fixed_response(status, b"application/json", body)


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
SERVER = b"server: bench-fake\r\n"


def fixed_response(status: bytes, ctype: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\n" + SERVER + b"content-type: " + ctype + b"\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\n" + SERVER + b"content-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)
COMPLETION = fixed_response(b"200 OK", b"application/json", completion_body())
EVENTS = {True: stream_events(True), False: stream_events(False)}
STREAM_WHOLE = {k: STREAM_HEAD + b"".join(http_chunk(e) for e in v) + LAST_CHUNK for k, v in EVENTS.items()}
MODELS = fixed_response(
    b"200 OK",
    b"application/json",
    orjson.dumps(
        {
            "object": "list",
            "data": [{"id": "gpt-4o", "object": "model", "created": CREATED, "owned_by": "bench"}],
        }
    ),
)
MESSAGE = fixed_response(b"200 OK", b"application/json", message_body())
EMBEDDINGS = {
    encoding: fixed_response(b"200 OK", b"application/json", embedding_body(encoding))
    for encoding in ("float", "base64")
}
RESPONSE = fixed_response(b"200 OK", b"application/json", response_body())
RESPONSE_EVENTS = response_events()
RESPONSE_STREAM_WHOLE = STREAM_HEAD + b"".join(http_chunk(e) for e in RESPONSE_EVENTS) + LAST_CHUNK
MESSAGE_EVENTS = message_events()
MESSAGE_STREAM_WHOLE = STREAM_HEAD + b"".join(http_chunk(e) for e in MESSAGE_EVENTS) + LAST_CHUNK
# https://docs.anthropic.com/en/api/errors
NO_API_KEY = anthropic_error(b"401 Unauthorized", "authentication_error", "x-api-key header is required")
NO_VERSION = anthropic_error(
    b"400 Bad Request", "invalid_request_error", "anthropic-version: header is required"
)
HEALTH = fixed_response(b"200 OK", b"text/plain", b"ok")
NOT_FOUND = fixed_response(
    b"404 Not Found", b"application/json", b'{"error":{"message":"not found","type":"invalid_request_error"}}'
)

_OVERRIDE = re.compile(rb"bench:(delay|chunk)=(\d+)")
_STREAM_TRUE = re.compile(rb'"stream"\s*:\s*true')
_USAGE_TRUE = re.compile(rb'"include_usage"\s*:\s*true')
_BASE64 = re.compile(rb'"encoding_format"\s*:\s*"base64"')


class Settings:
    def __init__(self, delay_ms: float, chunk_delay_ms: float) -> None:
        self.delay = delay_ms / 1000.0
        self.chunk_delay = chunk_delay_ms / 1000.0
        self.requests = 0


class FakeProtocol(asyncio.Protocol):
    __slots__ = (
        "_api_key",
        "_body",
        "_closed",
        "_handles",
        "_keep_alive",
        "_url",
        "_version",
        "loop",
        "parser",
        "settings",
        "transport",
    )

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self._url = b""
        self._body: list[bytes] = []
        self._closed = False
        self._handles: list[asyncio.TimerHandle] = []
        self._keep_alive = True
        self._api_key = False
        self._version = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(fixed_response(b"400 Bad Request", b"text/plain", b"bad request"))
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        for h in self._handles:
            h.cancel()
        self._handles.clear()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []
        self._api_key = self._version = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # Only what the Anthropic API insists on is remembered (the OpenAI side reads no header).
        if len(name) == 9 and name.lower() == b"x-api-key":
            self._api_key = bool(value)
        elif len(name) == 17 and name.lower() == b"anthropic-version":
            self._version = bool(value)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._keep_alive = self.parser.should_keep_alive()
        self.settings.requests += 1
        method = self.parser.get_method()
        path = self._url.split(b"?", 1)[0]
        if method == b"POST" and path.endswith(b"/completions"):
            self._chat(b"".join(self._body))
        elif method == b"POST" and path.endswith(b"/messages"):
            self._messages(b"".join(self._body))
        elif method == b"POST" and path.endswith(b"/responses"):
            body = b"".join(self._body)
            stream = _STREAM_TRUE.search(body) is not None
            self._answer(body, stream, RESPONSE, RESPONSE_EVENTS, RESPONSE_STREAM_WHOLE)
        elif method == b"POST" and path.endswith(b"/embeddings"):
            body = b"".join(self._body)
            answer = EMBEDDINGS["base64" if _BASE64.search(body) else "float"]
            self._answer(body, False, answer, [], b"")
        elif path.endswith(b"/models"):
            self._send(MODELS)
        elif path in (b"/health", b"/", b"/healthz"):
            self._send(HEALTH)
        else:
            self._send(NOT_FOUND)

    def _send(self, data: bytes) -> None:
        if self._closed or self.transport is None:
            return
        self.transport.write(data)
        if not self._keep_alive:
            self.transport.close()

    def _chat(self, body: bytes) -> None:
        stream = _STREAM_TRUE.search(body) is not None
        usage = stream and _USAGE_TRUE.search(body) is not None
        self._answer(body, stream, COMPLETION, EVENTS[usage], STREAM_WHOLE[usage])

    def _messages(self, body: bytes) -> None:
        if not self._api_key:
            self._send(NO_API_KEY)
        elif not self._version:
            self._send(NO_VERSION)
        else:
            stream = _STREAM_TRUE.search(body) is not None
            self._answer(body, stream, MESSAGE, MESSAGE_EVENTS, MESSAGE_STREAM_WHOLE)

    def _answer(self, body: bytes, stream: bool, answer: bytes, events: list[bytes], whole: bytes) -> None:
        """The pre-rendered answer or stream, after the delays (the request may override them)."""
        delay, chunk_delay = self.settings.delay, self.settings.chunk_delay
        if b"bench:" in body:
            for key, value in _OVERRIDE.findall(body):
                if key == b"delay":
                    delay = int(value) / 1000.0
                else:
                    chunk_delay = int(value) / 1000.0
        if not stream:
            self._later(delay, self._send, answer)
        elif chunk_delay <= 0:
            self._later(delay, self._send, whole)
        else:
            self._later(delay, self._stream_step, events, 0, chunk_delay)

    def _later(self, delay: float, fn: Any, *args: Any) -> None:
        if delay <= 0:
            fn(*args)
            return
        handle = self.loop.call_later(delay, self._fire, fn, args)
        self._handles.append(handle)

    def _fire(self, fn: Any, args: tuple[Any, ...]) -> None:
        if self._handles:
            self._handles.pop(0)
        fn(*args)

    def _stream_step(self, events: list[bytes], i: int, chunk_delay: float) -> None:
        if self._closed or self.transport is None:
            return
        out = STREAM_HEAD if i == 0 else b""
        out += http_chunk(events[i])
        if i + 1 == len(events):
            self.transport.write(out + LAST_CHUNK)
            if not self._keep_alive:
                self.transport.close()
            return
        self.transport.write(out)
        handle = self.loop.call_later(
            chunk_delay, self._fire, self._stream_step, (events, i + 1, chunk_delay)
        )
        self._handles.append(handle)


async def serve(host: str, port: int, settings: Settings, ready: bool = True) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: FakeProtocol(settings), host, port, backlog=4096, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    if ready:
        print(f"READY {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    async with server:
        await stop.wait()


def install_uvloop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_upstream", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=9100, help="0 picks a free port (printed as READY <port>)"
    )
    parser.add_argument("--delay-ms", type=float, default=0.0, help="delay before every response")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="delay between two stream events")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the fake upstream only listens on loopback")
    install_uvloop()
    try:
        asyncio.run(serve(args.host, args.port, Settings(args.delay_ms, args.chunk_delay_ms)))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
