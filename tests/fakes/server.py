"""The common harness of the fake upstreams: an aiohttp server on 127.0.0.1 in its own thread.

A test scripts what the fake answers with `Reply` objects queued per native model id (a model
with nothing queued gets `default`). Each dialect's fake (openai_fake, anthropic_fake,
gemini_fake) renders a `Reply` in that vendor's documented wire format and validates every
request the way the vendor does: unknown fields and missing headers are rejected with the vendor's
own error, so a gateway bug shows up as a failing test rather than a silent pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str = ""


@dataclass
class Reply:
    """What the fake upstream answers to one request.

    status != 200 answers with the vendor's error envelope (`retry_after` adds the header).
    `delay` waits before the response headers; `chunk_delay` between stream events.
    `fail_after` (streams only) drops the connection after that many content events.
    Usage: `input` uncached prompt tokens, `cached` cache reads, `cache_write` cache writes,
    `output` completion tokens (reasoning included), `reasoning` of which reasoning.
    """

    text: str = "Hello from the fake upstream."
    status: int = 200
    error_message: str = "fake upstream error"
    retry_after: int | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    chunks: int = 3
    fail_after: int | None = None
    stream_error_after: int | None = None  # send the vendor's in-stream error event after N events
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: str | None = None
    choices: int | None = None  # None: as many as the request asked for (n / candidateCount)
    finish_reason: str | None = None  # vendor-native value; None: the natural one
    input: int = 11
    cached: int = 0
    cache_write: int = 0
    output: int = 7
    reasoning_tokens: int = 0
    logprobs: bool = False
    omit_usage: bool = False


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    completed: bool = False  # the whole response was written (False: the client went away)
    raw: bytes = b""  # the request body as it arrived


class FakeServer:
    """Subclasses implement `routes()` returning aiohttp route definitions."""

    def __init__(self) -> None:
        self.default = Reply()
        self._queues: dict[str, deque[Reply]] = defaultdict(deque)
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.open_streams = 0
        # What GET …/models answers, once a test sets it (tests/fakes/model_lists.py): by vendor
        # prefix on the OpenAI fake, under "models" on the others; `page_cap` pages below `limit`.
        self.listings: dict[str, Any] = {}
        self.page_cap: int | None = None

    # --- scripting (called from tests, any thread) ---------------------------------------------
    def script(self, model: str, *replies: Reply) -> None:
        with self._lock:
            self._queues[model].extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._queues.clear()
            self.requests.clear()
            self.default = Reply()
            self.listings = {}
            self.page_cap = None

    def next_reply(self, model: str) -> Reply:
        with self._lock:
            queue = self._queues.get(model)
            return queue.popleft() if queue else self.default

    def record(self, request: web.Request, body: Any, raw: bytes = b"") -> Recorded:
        rec = Recorded(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            raw=raw,
        )
        with self._lock:
            self.requests.append(rec)
        return rec

    def bodies_for(self, model: str) -> list[Any]:
        with self._lock:
            return [
                r.body for r in self.requests if isinstance(r.body, dict) and r.body.get("model") == model
            ]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- lifecycle -----------------------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def start(self) -> FakeServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.add_routes(self.routes())
            self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            server = site._server
            assert server is not None and server.sockets
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name=type(self).__name__, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


async def write_sse(
    request: web.Request,
    rec: Recorded,
    server: FakeServer,
    events: list[bytes],
    reply: Reply,
    error_event: bytes | None = None,
) -> web.StreamResponse:
    """Write pre-rendered SSE events, honouring the reply's pacing and failure points."""
    resp = web.StreamResponse(status=200, headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    server.open_streams += 1
    try:
        for i, event in enumerate(events):
            if reply.fail_after is not None and i >= reply.fail_after:
                # Drop the connection mid-stream, as a crashed upstream would.
                assert request.transport is not None
                request.transport.close()
                return resp
            if reply.stream_error_after is not None and i >= reply.stream_error_after and error_event:
                await resp.write(error_event)
                break
            if reply.chunk_delay and i:
                await asyncio.sleep(reply.chunk_delay)
            await resp.write(event)
        with contextlib.suppress(ConnectionResetError):
            await resp.write_eof()
        rec.completed = True
    finally:
        server.open_streams -= 1
    return resp


def split_text(text: str, pieces: int) -> list[str]:
    if pieces <= 1 or len(text) <= 1:
        return [text]
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]
