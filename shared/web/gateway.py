"""The dashboard's client of the gateway's own JSON API: every page reads and writes through the
same routes a script calls (no private back door), in process.

A call is an ASGI request to the app serving the page (the local server's app, or the web
function's, which includes the routers the dashboard calls), with the signed-in user's key as
`Authorization: Bearer`, the browser's address (socket peer and `X-Forwarded-For`, which the
gateway believes only from a trusted proxy) and its `Origin`: the gateway authenticates, limits,
checks the key's restrictions and answers exactly as it would over the network. Streams
(the playground) come back chunk by chunk; when the browser goes away the gateway sees a
disconnect, as it would from a client, and settles what was generated.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import anyio
import orjson
from starlette.requests import Request
from starlette.types import Message

# Headers of the browser's request that the gateway reads to judge it as it would a direct call.
_PASSED = (b"x-forwarded-for", b"origin", b"referer", b"user-agent", b"host")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    data: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.body and self.headers.get("content-type", "").startswith("application/json"):
            with contextlib.suppress(orjson.JSONDecodeError):
                self.data = orjson.loads(self.body)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        """The error envelope's message (or the status when there is none)."""
        if isinstance(self.data, dict) and isinstance(self.data.get("error"), dict):
            return str(self.data["error"].get("message") or self.status)
        return f"The gateway answered {self.status}."


def _scope(
    request: Request, method: str, path: str, query: Mapping[str, Any] | None, key: str | None, body: bytes
) -> dict[str, Any]:
    headers = [(name, value) for name, value in request.scope["headers"] if name in _PASSED]
    if key is not None:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    clean = {k: v for k, v in (query or {}).items() if v is not None and v != ""}
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": request.scope.get("scheme", "http"),
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": urlencode(clean).encode(),
        "headers": headers,
        "client": request.scope.get("client"),
        "server": request.scope.get("server"),
    }


async def call(
    request: Request,
    method: str,
    path: str,
    *,
    key: str | None,
    query: Mapping[str, Any] | None = None,
    json: Any = None,
) -> Answer:
    """One buffered call to the gateway's API."""
    body = orjson.dumps(json) if json is not None else b""
    scope = _scope(request, method, path, query, key, body)
    delivered = False
    status = 500
    headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # never: a buffered answer ends on its own
        raise AssertionError

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            headers.update((k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", ()))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await request.app(scope, receive, send)
    return Answer(status, headers, b"".join(chunks))


@dataclass
class Stream:
    status: int
    headers: dict[str, str]
    chunks: AsyncIterator[bytes]


@contextlib.asynccontextmanager
async def stream(request: Request, path: str, *, key: str, json: Any) -> AsyncIterator[Stream]:
    """A streamed POST to the gateway's API: the status and headers, then the body as it comes.
    Leaving the context early tells the gateway its client went away, and waits for it to finish
    (its settlement included)."""
    body = orjson.dumps(json)
    scope = _scope(request, "POST", path, None, key, body)
    queue: asyncio.Queue[Message | None] = asyncio.Queue(maxsize=64)
    gone = asyncio.Event()
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if not gone.is_set():  # once the browser is gone, what the gateway still sends is dropped
            await queue.put(message)

    async def serve() -> None:
        try:
            await request.app(scope, receive, send)
        finally:
            await queue.put(None)

    task = asyncio.create_task(serve())

    async def body_chunks() -> AsyncIterator[bytes]:
        while (message := await queue.get()) is not None:
            if message["type"] == "http.response.body" and message.get("body"):
                yield message["body"]

    try:
        start = await queue.get()
        if start is None:
            await task  # raises what the app raised
            raise RuntimeError("the gateway sent no response")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", ())}
        yield Stream(start["status"], headers, body_chunks())
    finally:
        gone.set()
        # Shielded: the browser going away cancels this request, but the gateway must finish (and
        # settle) what it started; drain what it had queued so that it is not blocked.
        with anyio.CancelScope(shield=True):
            while not task.done():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                await asyncio.sleep(0.005)
        with contextlib.suppress(Exception):
            task.result()
