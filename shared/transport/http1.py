"""The upstream HTTP/1.1 client: keep-alive connections per origin, httptools' parser, one
asyncio protocol per connection.

Why not aiohttp (the previous client): in the pipeline it was ~18 % of the gateway's CPU per
request — a request object, a cookie jar, tracing hooks, a task per body write, a timer object per
read — to do one thing: POST a JSON body and read the answer whole or as it arrives. Here a call
is one write, the parser's callbacks fill the response, and one timer per response enforces the
read and total deadlines (re-armed only when it fires early, not on every read).

What it speaks: HTTP/1.1 over TCP or TLS (the system's trust store, SNI, hostname checks);
bodies by Content-Length, chunked, or to the end of the connection; gzip/deflate when a server
compresses anyway (none is asked for: answers are small, and streams must not wait on a
compressor). No proxies, no redirects, no cookies: upstream APIs use none of them.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools

_OURS = frozenset({"host", "content-length", "transfer-encoding", "connection", "user-agent"})
_IDLE_PER_ORIGIN = 64  # idle keep-alive connections kept per origin; beyond, they are closed
# An idle connection older than this is not reused: a NAT or load balancer on the way may have
# forgotten it without telling either end, and a request sent on it would wait for its read timeout.
KEEPALIVE_S = 15.0
# A response buffers at most about this much before its connection stops reading (a caller slower
# than the upstream, e.g. a stream to a slow client): TCP then slows the upstream down.
_HIGH_WATER = 256 * 1024


class Disconnected(ConnectionError):
    """The server closed the connection before the response's end."""


class Refused(ConnectionError):
    """No connection could be opened (DNS, refused, TLS handshake, connect timeout)."""


class ReadTimeout(TimeoutError):
    """No bytes within the read timeout, or the response's total deadline passed."""


@dataclass(frozen=True, slots=True)
class Limits:
    """A call's time bounds, in seconds: opening a connection, the longest wait for the next
    bytes (first byte included), and the whole exchange (None: unbounded, e.g. a stream)."""

    connect: float
    read: float
    total: float | None = None


class Response:
    """Status and headers once they arrived; the body as it arrives (`read`, `readany`)."""

    __slots__ = ("_chunks", "_conn", "_decoder", "_done", "_error", "_size", "_waiter", "headers", "status")

    def __init__(self, conn: _Connection) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}  # lower-case names; a repeated header keeps its last value
        self._conn: _Connection | None = conn
        self._chunks: deque[bytes] = deque()
        self._size = 0  # bytes in _chunks
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._decoder: Any = None

    # -- fed by the connection ------------------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        if self._decoder is not None:
            data = self._decoder.decompress(data)
        if data:
            self._chunks.append(data)
            self._size += len(data)
            if self._size > _HIGH_WATER and self._conn is not None:
                self._conn.pause()
            self._wake()

    def _finish(self, error: BaseException | None = None) -> None:
        if self._done:
            return
        if self._conn is not None:
            self._conn.pool.client.waiting -= 1
        if error is None and self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self._chunks.append(tail)
        self._done = True
        self._error = error
        self._conn = None
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        if self._conn is not None:
            self._conn.resume()  # the caller wants more than is buffered
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    # -- read by the caller -----------------------------------------------------------------------
    async def read(self) -> bytes:
        """The whole body."""
        while not self._done:
            await self._wait()
        if self._error is not None:
            raise self._error
        body = b"".join(self._chunks)
        self._chunks.clear()
        return body

    async def readany(self) -> bytes:
        """The bytes that arrived since the last call (waiting for some); b"" at the body's end."""
        while not self._chunks and not self._done:
            await self._wait()
        if self._chunks:
            data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
            self._chunks.clear()
            self._size = 0
            if self._conn is not None:
                self._conn.resume()  # drained: read again if reading was paused
            return data
        if self._error is not None:
            raise self._error
        return b""

    def close(self) -> None:
        """Stop reading: an unfinished response takes its connection down with it (a half-read
        body must not be the next caller's answer)."""
        if self._conn is not None:
            self._conn.abort()
        self._finish(Disconnected("response closed by the caller"))

    release = close


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request at a time, then back to its pool."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.headers_waiter: asyncio.Future[Response] | None = None
        self.closed = False
        self.got_bytes = False  # of the current response
        self.last_read = 0.0
        self.read_limit = 0.0
        self.deadline: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.idle_since = 0.0
        self.paused = False  # reading paused: the response's caller is behind

    # -- asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        if self.response is None:  # bytes nobody asked for: the connection is unusable
            self.abort()
            return
        self.got_bytes = True
        self.last_read = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(Disconnected(f"malformed HTTP response: {exc}"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        response = self.response
        if response is not None:
            # A body with neither a length nor chunks ends with the connection.
            if response.status and not self._has_length(response) and exc is None:
                self._complete(reuse=False)
            else:
                self._fail(Disconnected("the server closed the connection mid-response"))
        self._cancel_timer()

    # -- httptools callbacks ----------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        self.response.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        response.status = self.parser.get_status_code()
        if 100 <= response.status < 200:  # an interim answer (100 Continue): the real one follows
            response.headers = {}
            response.status = 0
            return
        encoding = response.headers.get("content-encoding", "").lower()
        if encoding in ("gzip", "x-gzip"):
            response._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            response._decoder = zlib.decompressobj()
        waiter = self.headers_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def on_body(self, body: bytes) -> None:
        if self.response is not None and self.response.status:
            try:
                self.response._feed(body)
            except zlib.error:
                self._fail(Disconnected("the response body does not decompress"))
                self.abort()

    def on_message_complete(self) -> None:
        if self.response is not None and self.response.status:
            self._complete(reuse=self.parser.should_keep_alive())

    # -- one exchange -----------------------------------------------------------------------------
    async def send(self, head: bytes, body: bytes, limits: Limits) -> Response:
        assert self.transport is not None
        self.response = Response(self)
        self.pool.client.waiting += 1  # until the response's _finish
        self.got_bytes = False
        self.headers_waiter = waiter = self.loop.create_future()
        now = self.loop.time()
        self.last_read = now
        self.read_limit = limits.read
        self.deadline = None if limits.total is None else now + limits.total
        self._arm(now)
        self.transport.write(head + body)
        try:
            return await waiter
        except asyncio.CancelledError:
            self._fail(Disconnected("the caller gave up"))
            self.abort()  # the answer would arrive on a connection someone else may use
            raise

    def _arm(self, now: float) -> None:
        due = self.last_read + self.read_limit
        if self.deadline is not None and self.deadline < due:
            due = self.deadline
        self.timer = self.loop.call_at(max(due, now), self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        if self.response is None:
            return
        now = self.loop.time()
        if self.paused:
            self.last_read = now  # the wait is the caller's, not the upstream's
        if (self.deadline is not None and now >= self.deadline) or now - self.last_read >= self.read_limit:
            self._fail(ReadTimeout("no response before the timeout"))
            self.abort()
        else:
            self._arm(now)  # bytes came meanwhile: wait for what is left of the read timeout

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.last_read = self.loop.time()
            self.transport.resume_reading()

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _complete(self, *, reuse: bool) -> None:
        response, self.response = self.response, None
        self._cancel_timer()
        self.resume()  # all of it arrived: the pool's connections read
        if response is not None:
            response._finish()
        if reuse and not self.closed:
            self.pool.put(self)
        else:
            self.abort()

    def _fail(self, error: BaseException) -> None:
        response, self.response = self.response, None
        self._cancel_timer()
        waiter = self.headers_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        if response is not None:
            response._finish(error)

    @staticmethod
    def _has_length(response: Response) -> bool:
        h = response.headers
        return "content-length" in h or "chunked" in h.get("transfer-encoding", "").lower()

    def abort(self) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.transport is not None:
            self.transport.abort()


class _Pool:
    """The idle keep-alive connections to one origin, most recently used first."""

    def __init__(self, client: HttpClient, host: str, port: int, tls: ssl.SSLContext | None) -> None:
        self.client = client
        self.host, self.port, self.tls, self.keepalive = host, port, tls, client.keepalive
        self.idle: list[_Connection] = []

    def put(self, conn: _Connection) -> None:
        if len(self.idle) >= _IDLE_PER_ORIGIN:
            conn.abort()
        else:
            conn.idle_since = conn.loop.time()
            self.idle.append(conn)

    def forget(self, conn: _Connection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)

    async def connection(self, connect_timeout: float) -> tuple[_Connection, bool]:
        """An open connection, and whether it was reused (a reused one may have been closed by
        the server in the meantime: its first request may fail without reaching it)."""
        loop = asyncio.get_running_loop()
        while self.idle:
            conn = self.idle.pop()
            if loop.time() - conn.idle_since > self.keepalive:
                conn.abort()  # the most recent is the freshest: the rest are older still
                self.close()
            elif not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn, True
        try:
            async with asyncio.timeout(connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls else None,
                )
        except TimeoutError:
            raise Refused("connect timeout") from None
        except OSError as exc:  # ssl.SSLError (a failed handshake, an unknown CA) included
            raise Refused(f"{type(exc).__name__}: {exc}") from None
        return protocol, False

    def close(self) -> None:
        for conn in list(self.idle):
            conn.abort()
        self.idle.clear()


class HttpClient:
    """POST a body to a URL: `await client.post(url, headers, body, limits)` → a `Response`
    whose status and headers arrived. Raises `Refused`, `Disconnected` or `ReadTimeout`."""

    def __init__(
        self, *, user_agent: str, tls: ssl.SSLContext | None = None, keepalive: float = KEEPALIVE_S
    ) -> None:
        self.keepalive = keepalive
        self.waiting = 0  # responses asked for and not yet complete (streams included)
        self._agent = f"user-agent: {user_agent}\r\n".encode()
        self._tls = tls
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._targets: dict[str, tuple[_Pool, bytes]] = {}  # url → (pool, request-line + host)

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()  # built on first https use (cold starts)
        return self._tls

    def _target(self, url: str) -> tuple[_Pool, bytes]:
        known = self._targets.get(url)
        if known is not None:
            return known
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        key = (parts.scheme, parts.hostname, port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(self, parts.hostname, port, self._tls_context() if tls else None)
        default_port = port == (443 if tls else 80)
        host = parts.hostname if default_port else f"{parts.hostname}:{port}"
        if ":" in parts.hostname and not parts.hostname.startswith("["):  # an IPv6 literal
            host = f"[{parts.hostname}]" if default_port else f"[{parts.hostname}]:{port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if any(c <= " " or c == "\x7f" for c in path + host):  # would break the request line
            raise ValueError(f"unencoded space or control character in {url!r}")
        line = f"POST {path} HTTP/1.1\r\nhost: {host}\r\n".encode()
        if len(self._targets) < 4096:  # URLs come from the provider table: a handful
            self._targets[url] = (pool, line)
        return pool, line

    async def post(self, url: str, headers: Mapping[str, str], body: bytes, limits: Limits) -> Response:
        pool, line = self._target(url)
        head = [line]
        agent = True
        for name, value in headers.items():
            lower = name.lower()
            if lower in _OURS:
                if lower != "user-agent":
                    continue  # framing is ours to write
                agent = False
            text = f"{name}: {value}\r\n"
            if "\r" in text[:-2] or "\n" in text[:-2]:  # a key pasted with a newline must not add headers
                raise ValueError(f"invalid character in the {name!r} header")
            head.append(text.encode("latin-1"))
        if agent:
            head.append(self._agent)
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        request = b"".join(head)
        while True:
            conn, reused = await pool.connection(limits.connect)
            try:
                return await conn.send(request, body, limits)
            except Disconnected:
                if reused and not conn.got_bytes:
                    continue  # a keep-alive connection the server had closed: try a fresh one
                raise

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._targets.clear()
