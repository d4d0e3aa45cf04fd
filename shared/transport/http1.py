"""The upstream HTTP/1.1 client: keep-alive connections per origin, httptools' parser, one
asyncio protocol per connection.

Why not aiohttp (the previous client): in the pipeline it was ~18 % of the gateway's CPU per
request — a request object, a cookie jar, tracing hooks, a task per body write, a timer object per
read — to do one thing: POST a JSON body and read the answer whole or as it arrives. Here a call
is one write, the parser's callbacks fill the response, and one timer per response enforces the
read and total deadlines (re-armed only when it fires early, not on every read).

What it speaks: HTTP/1.1 over TCP or TLS (the system's trust store, SNI, hostname checks);
bodies by Content-Length, chunked, or to the end of the connection; gzip and deflate, the only
codings it offers (`accept-encoding`; a server that answers with another one is an error rather
than bytes nobody can read). Proxies from the environment (`shared.transport.proxies`): a CONNECT
tunnel for https origins, absolute-form requests for http ones, decided once per origin. No
redirects, no cookies: upstream APIs use neither.

A request is sent once. Upstream calls are paid, so nothing that may have reached the server is
sent again: a failed connect raises `Refused` (nothing was sent; the caller may try again), and
any failure after the request was written raises `Disconnected` or `ReadTimeout`. The one
exception is a pooled connection found closed before anything was written on it (its close was
already pending, or the write itself failed at once): the request then goes on a fresh connection.
"""

from __future__ import annotations

import asyncio
import select
import ssl
import zlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httptools

if TYPE_CHECKING:
    from shared.transport.proxies import Proxy, ProxyConfig

# Headers the client writes: framing is always its own; the defaulted ones (user-agent, via)
# give way to a caller's value.
_FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection", "accept-encoding"})
_DEFAULTED = frozenset({"user-agent", "via"})
_OURS = _FRAMING | _DEFAULTED
_IDLE_PER_ORIGIN = 64  # idle keep-alive connections kept per origin; beyond, they are closed
# An idle connection older than this is not reused: a NAT or load balancer on the way may have
# forgotten it without telling either end, and a request sent on it would wait for its read timeout.
KEEPALIVE_S = 15.0
# A response buffers at most about this much before its connection stops reading (a caller slower
# than the upstream, e.g. a stream to a slow client): TCP then slows the upstream down.
_HIGH_WATER = 256 * 1024
# A pooled connection idle for longer than this is polled for a pending close before it is used
# (a server's idle timeout, or a Lambda thaw, can leave one the event loop has not yet seen
# closed). Busier connections skip the system call: servers do not time out a connection used
# a moment ago.
_PROBE_IDLE_S = 1.0


class Disconnected(ConnectionError):
    """The server closed the connection before the response's end."""


class Refused(ConnectionError):
    """No connection could be opened (DNS, refused, TLS handshake, connect timeout)."""


class ReadTimeout(TimeoutError):
    """No bytes within the read timeout, or the response's total deadline passed."""


class _NotSent(ConnectionError):
    """A pooled connection failed the request's write at once: nothing reached the server."""


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
        self.last_read = 0.0
        self.read_limit = 0.0
        self.deadline: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.idle_since = 0.0
        self.paused = False  # reading paused: the response's caller is behind
        self.fd = -1  # the socket's descriptor, to poll an idle connection for a pending close

    # -- asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None else -1

    def data_received(self, data: bytes) -> None:
        if self.response is None:  # bytes nobody asked for: the connection is unusable
            self.abort()
            return
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
        encoding = response.headers.get("content-encoding")
        if encoding is not None:
            encoding = encoding.strip().lower()
            if encoding in ("gzip", "x-gzip"):
                response._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
            elif encoding == "deflate":
                response._decoder = zlib.decompressobj()
            elif encoding not in ("", "identity"):
                self._fail(Disconnected(f"the response is encoded with {encoding!r}, which was not offered"))
                self.abort()
                return
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
    async def send(self, head: bytes, body: bytes, limits: Limits, *, reused: bool) -> Response:
        transport = self.transport
        assert transport is not None
        self.response = Response(self)
        self.pool.client.waiting += 1  # until the response's _finish
        self.headers_waiter = waiter = self.loop.create_future()
        now = self.loop.time()
        self.last_read = now
        self.read_limit = limits.read
        self.deadline = None if limits.total is None else now + limits.total
        self._arm(now)
        transport.write(head + body)
        if reused and transport.is_closing():
            # The write failed at once (the socket refused it: the server had reset the
            # connection), so not a byte left: the caller may send on a fresh connection.
            self._fail(_NotSent("the pooled connection was closed"))
            waiter.exception()  # retrieved: the caller raises its own
            self.abort()
            raise _NotSent("the pooled connection was closed")
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


class _ConnectAnswer(asyncio.Protocol):
    """A proxy's answer to CONNECT: its status, once the head has arrived (a 2xx has no body)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.status: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if self.status.done():
            return
        if end < 0:
            if len(self.buffer) > 16384:
                self.status.set_exception(ConnectionError("the proxy's answer to CONNECT has no end"))
            return
        fields = self.buffer[: self.buffer.find(b"\r\n")].split(b" ", 2)
        status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
        if 200 <= status < 300 and end + 4 != len(self.buffer):
            self.status.set_exception(ConnectionError("the proxy sent bytes before the tunnel was used"))
        else:
            self.status.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.status.done():
            self.status.set_exception(ConnectionError("the proxy closed the connection during CONNECT"))


class _Pool:
    """The idle keep-alive connections to one origin, most recently used first, and how a new one
    is opened: directly, to the proxy (plain http), or through a proxy's CONNECT tunnel (https)."""

    def __init__(
        self, client: HttpClient, host: str, port: int, tls: ssl.SSLContext | None, proxy: Proxy | None
    ) -> None:
        self.client = client
        self.host, self.port, self.tls, self.keepalive = host, port, tls, client.keepalive
        self.proxy = proxy
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
        the server in the meantime)."""
        loop = asyncio.get_running_loop()
        while self.idle:
            conn = self.idle.pop()
            idle = loop.time() - conn.idle_since
            if idle > self.keepalive:
                conn.abort()  # the most recent is the freshest: the rest are older still
                self.close()
            elif conn.closed or conn.transport is None or conn.transport.is_closing():
                continue
            elif idle > _PROBE_IDLE_S and _close_pending(conn.fd):
                conn.abort()  # the server's close (or stray bytes) arrived while it was idle
            else:
                return conn, True
        try:
            async with asyncio.timeout(connect_timeout):
                return await self._open(loop), False
        except TimeoutError:
            raise Refused("connect timeout") from None
        except Refused:
            raise
        except OSError as exc:  # ssl.SSLError (a failed handshake, an unknown CA) included
            raise Refused(f"{type(exc).__name__}: {exc}") from None

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        proxy = self.proxy
        if proxy is None or self.tls is None:  # direct, or plain http to the proxy itself
            host, port = (self.host, self.port) if proxy is None else (proxy.host, proxy.port)
            _, protocol = await loop.create_connection(
                lambda: _Connection(self),
                host,
                port,
                ssl=self.tls,
                server_hostname=self.host if self.tls else None,
            )
            return protocol
        transport, answer = await loop.create_connection(_ConnectAnswer, proxy.host, proxy.port)
        try:
            target = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
            auth = f"proxy-authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
            transport.write(f"CONNECT {target} HTTP/1.1\r\nhost: {target}\r\n{auth}\r\n".encode("latin-1"))
            status = await answer.status
            if not 200 <= status < 300:
                raise Refused(f"the proxy {proxy.url} refused a tunnel to {target}: HTTP {status}")
            conn = _Connection(self)
            tls_transport = await loop.start_tls(transport, conn, self.tls, server_hostname=self.host)
            if tls_transport is None:  # only a loop whose transport went away meanwhile
                raise ConnectionError("the tunnel closed during the TLS handshake")
            conn.connection_made(tls_transport)  # start_tls does not tell the protocol
            return conn
        except BaseException:
            transport.abort()
            raise

    def close(self) -> None:
        for conn in list(self.idle):
            conn.abort()
        self.idle.clear()


def _close_pending(fd: int) -> bool:
    """Whether an idle connection's socket has something to read: the server's close, a reset,
    or bytes nobody asked for — in each case it cannot carry a request."""
    if fd < 0:
        return False
    try:
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return True


class HttpClient:
    """POST a body to a URL: `await client.post(url, headers, body, limits)` → a `Response`
    whose status and headers arrived. Raises `Refused`, `Disconnected` or `ReadTimeout`.

    `proxies` (from the environment, see `shared.transport.proxies`) are decided once per origin;
    `via` is sent as the `via` header of every request that does not bring its own."""

    def __init__(
        self,
        *,
        user_agent: str,
        tls: ssl.SSLContext | None = None,
        keepalive: float = KEEPALIVE_S,
        proxies: ProxyConfig | None = None,
        via: str | None = None,
    ) -> None:
        self.keepalive = keepalive
        self.waiting = 0  # responses asked for and not yet complete (streams included)
        self._defaults = {"user-agent": f"user-agent: {user_agent}\r\n".encode()}
        if via:
            self._defaults["via"] = f"via: {via}\r\n".encode()
        # Offered once for all: the only codings the response side decodes.
        self._default_head = b"".join(self._defaults.values()) + b"accept-encoding: gzip, deflate\r\n"
        self._tls = tls
        self._proxies = proxies if proxies else None
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
            written = parts.netloc.rpartition("@")[2]  # the host as the URL writes it (NO_PROXY)
            proxy = self._proxies.for_origin(parts.scheme, written) if self._proxies else None
            tls_context = self._tls_context() if tls else None
            pool = self._pools[key] = _Pool(self, parts.hostname, port, tls_context, proxy)
        default_port = port == (443 if tls else 80)
        host = parts.hostname if default_port else f"{parts.hostname}:{port}"
        if ":" in parts.hostname and not parts.hostname.startswith("["):  # an IPv6 literal
            host = f"[{parts.hostname}]" if default_port else f"[{parts.hostname}]:{port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if any(c <= " " or c == "\x7f" for c in path + host):  # would break the request line
            raise ValueError(f"unencoded space or control character in {url!r}")
        if pool.proxy is not None and not tls:
            # Plain http through a proxy: the absolute form names the origin (RFC 9112 §3.2.2).
            auth = pool.proxy.authorization
            line = f"POST http://{host}{path} HTTP/1.1\r\nhost: {host}\r\n"
            line += f"proxy-authorization: {auth}\r\n" if auth else ""
        else:
            line = f"POST {path} HTTP/1.1\r\nhost: {host}\r\n"
        if len(self._targets) < 4096:  # URLs come from the provider table: a handful
            self._targets[url] = (pool, line.encode())
        return pool, line.encode()

    async def post(self, url: str, headers: Mapping[str, str], body: bytes, limits: Limits) -> Response:
        pool, line = self._target(url)
        head = [line]
        given: set[str] | None = None  # defaulted headers the caller set
        for name, value in headers.items():
            lower = name.lower()
            if lower in _OURS:
                if lower in _FRAMING:
                    continue  # framing is ours to write
                given = {lower} if given is None else given | {lower}
            text = f"{name}: {value}\r\n"
            if "\r" in text[:-2] or "\n" in text[:-2]:  # a key pasted with a newline must not add headers
                raise ValueError(f"invalid character in the {name!r} header")
            head.append(text.encode("latin-1"))
        if given is None:
            head.append(self._default_head)
        else:
            head += [v for k, v in self._defaults.items() if k not in given]
            head.append(b"accept-encoding: gzip, deflate\r\n")
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        request = b"".join(head)
        while True:
            conn, reused = await pool.connection(limits.connect)
            try:
                return await conn.send(request, body, limits, reused=reused)
            except _NotSent:
                continue  # nothing was written: the next connection is a fresh one or a live one

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._targets.clear()
