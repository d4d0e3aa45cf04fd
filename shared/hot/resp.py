"""A lean Redis client for the limiter's hot path: one connection per process, commands pipelined
on it (Redis answers in order, so replies are matched to callers first-in first-out), replies
parsed by hiredis.

Why not redis-py's asyncio client: per command it checks a connection out of a pool, wraps the
read in a timeout context and records observability attributes — measured at a fifth of the
gateway's CPU with three limiter calls per request. Here a command is a future, the commands of one loop
iteration leave in one write, and one timer per connection enforces the reply timeout (the oldest
outstanding command's).

Supported: `redis://` and `rediss://` (TLS) URLs with an optional user, password and database
number (`/2`, or `?db=2`), and for TLS `?ssl_ca_certs=<file>` (a private CA) and
`?ssl_cert_reqs=required|optional|none` — what Redis, Redis Cloud, ElastiCache and Upstash's Redis
protocol endpoint need. Any other option is refused (`ValueError`) rather than ignored.

Redis Cluster is not supported: the limiter's script touches the keys of one request (its IP, its
user, its key) in one atomic call, and those keys live in different hash slots. A connection is
refused when the server says it runs in cluster mode (`ClusterUnsupported`), rather than working
for some keys and failing with MOVED or CROSSSLOT for others.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import hiredis


class ReplyError(Exception):
    """An error reply from Redis (a script error, NOSCRIPT, WRONGPASS, MOVED...)."""

    @property
    def code(self) -> str:
        """The reply's error code, its first word (`NOAUTH`, `WRONGPASS`, `CROSSSLOT`...)."""
        return str(self).split(" ", 1)[0]


class ClusterUnsupported(ReplyError):
    """The server runs Redis Cluster, which the limiter does not support (see the module's docstring)."""


_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def tls_context(options: dict[str, str]) -> ssl.SSLContext:
    """The TLS context of a `rediss://` URL: the system's trust store, or `ssl_ca_certs`."""
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    reqs = options.get("ssl_cert_reqs", "required")
    if reqs not in _CERT_REQS:
        raise ValueError(f"ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}, got {reqs!r}")
    if reqs != "required":  # the server's certificate is not (or not always) checked: nor its name
        context.check_hostname = False
        context.verify_mode = _CERT_REQS[reqs]
    return context


def encode(args: tuple[str | int | bytes, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Connection(asyncio.Protocol):
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._reader = hiredis.Reader(encoding="utf-8", replyError=ReplyError)
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._out: list[bytes] = []  # commands of this loop iteration, written together

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            future, _ = self._waiting.popleft()
            if future.done():
                continue  # its caller gave up (cancelled); the reply is dropped in order
            if isinstance(reply, ReplyError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(ConnectionError(f"redis connection lost: {exc or 'closed'}"))

    def _fail(self, error: Exception) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)

    def send(self, args: tuple[str | int | bytes, ...]) -> asyncio.Future[Any]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((future, time.monotonic() + self.timeout))
        if not self._out:  # one write (one syscall) for every command issued in this iteration
            loop.call_soon(self._flush)
        self._out.append(encode(args))
        if self._timer is None:
            self._timer = loop.call_later(self.timeout, self._check)
        return future

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.transport is not None and not self.lost:
            self.transport.write(b"".join(out))

    def _check(self) -> None:
        """The reply timeout: a connection whose oldest command waits too long is dropped."""
        self._timer = None
        if not self._waiting:
            return
        deadline = self._waiting[0][1]
        now = time.monotonic()
        if now >= deadline:
            self._fail(TimeoutError(f"no reply from redis within {self.timeout:g}s"))
            if self.transport is not None:
                self.transport.abort()
            self.lost = True
            return
        self._timer = asyncio.get_running_loop().call_later(deadline - now, self._check)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.lost = True


class Script:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


_OPTIONS = frozenset({"db", "ssl_ca_certs", "ssl_cert_reqs"})


class RespClient:
    def __init__(self, url: str, *, timeout: float, connect_timeout: float) -> None:
        # Messages name the part at fault, never the URL: it may hold a password.
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"a Redis URL starts with redis:// or rediss://, got {parts.scheme}://")
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise ValueError(
                f"unsupported Redis URL option(s) {', '.join(unknown)} (supported: {', '.join(sorted(_OPTIONS))})"
            )
        self.tls = parts.scheme == "rediss"
        if not self.tls and {"ssl_ca_certs", "ssl_cert_reqs"} & set(options):
            raise ValueError("ssl_ca_certs and ssl_cert_reqs need a rediss:// (TLS) URL")
        self.ssl = tls_context(options) if self.tls else None
        self.host = parts.hostname or "127.0.0.1"
        try:
            self.port = parts.port or 6379
        except ValueError:
            raise ValueError("the Redis URL's port is not a number") from None
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        path_db, query_db = parts.path.strip("/"), options.get("db", "")
        if path_db and query_db and path_db != query_db:
            raise ValueError("the Redis URL names two databases (its path and ?db=)")
        db = path_db or query_db or "0"
        if not db.isdigit():
            raise ValueError(f"the Redis database is a number, got {db!r}")
        self.db = int(db)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._conn: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_connection(lambda: _Connection(self.timeout), self.host, self.port, ssl=self.ssl),
            self.connect_timeout,
        )
        handshake: list[tuple[str | int | bytes, ...]] = []
        if self.password is not None:
            handshake.append(
                ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
            )
        if self.db:
            handshake.append(("SELECT", self.db))
        handshake.append(("INFO", "cluster"))  # sent with the rest: one round trip in all
        try:
            *replies, info = await asyncio.gather(
                *(conn.send(args) for args in handshake), return_exceptions=True
            )
            failed = next((r for r in replies if isinstance(r, BaseException)), None)
            if failed is not None:
                raise failed  # WRONGPASS, NOAUTH, a database number the server does not have
            if isinstance(info, BaseException) and not isinstance(info, ReplyError):
                raise info  # the connection failed; a refused INFO (an ACL, a proxy) is let pass
            if isinstance(info, str) and "cluster_enabled:1" in info:
                raise ClusterUnsupported(
                    "CLUSTER the server runs Redis Cluster, which the gateway does not support: "
                    "point the URL at a standalone Redis (or a primary with replicas)"
                )
        except BaseException:
            conn.close()
            raise
        return conn

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and not conn.lost:
            return conn
        if self._connecting is None:  # one connection attempt, shared by every caller meanwhile
            self._connecting = asyncio.ensure_future(self._open())
        connecting = self._connecting
        try:
            self._conn = await asyncio.shield(connecting)
        finally:
            if self._connecting is connecting and connecting.done():
                self._connecting = None
        return self._conn

    async def call(self, *args: str | int | bytes) -> Any:
        conn = await self._connection()
        return await conn.send(args)

    async def run_script(self, script: Script, keys: list[str], args: list[str | int]) -> Any:
        try:
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await self.call("EVAL", script.source, len(keys), *keys, *args)  # caches it

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
