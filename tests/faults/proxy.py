"""A TCP proxy on 127.0.0.1 that a test can cut: what a network failure, a database restart or a
dropped NAT entry looks like to the gateway, on real sockets in front of the real servers.

It runs its own event loop in a thread. Faults:
- `cut()`: every open connection is reset (both sides) and new ones are refused until `restore()`;
- `cut_when(pattern, forward=...)`: the same, the moment a client sends bytes containing `pattern`
  — before they reach the server (`forward=False`: the statement never ran) or just after
  (`forward=True`: the server got it, its answer is lost);
- `blackhole()`: open connections go silent (bytes are swallowed, nothing is closed), as when a
  NAT or load balancer forgets them; new connections work.
Sessions opened through `proxied(url, proxy)` carry `application_name(proxy)`, so a test can
terminate exactly the gateway's sessions (over TCP or an embedded server's Unix socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tests.services import postgres_url


class _Pair:
    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.client = client
        self.server = server
        self.silent = False


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), as a crashed host or a cut link does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    def __init__(
        self, target_port: int, target_host: str = "127.0.0.1", *, unix_path: str | None = None
    ) -> None:
        self.target = (target_host, target_port)
        self.unix_path = unix_path  # a Unix socket to forward to instead (an embedded PostgreSQL's)
        self.port = 0
        self.refusing = False
        self.connections = 0  # accepted while not refusing, since the start
        self._pairs: set[_Pair] = set()
        self._trigger: tuple[bytes, bool] | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> TcpProxy:
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for pair in list(self._pairs):
                _reset(pair.client)
                _reset(pair.server)

        self._run(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # --- faults ----------------------------------------------------------------------------------
    def cut(self) -> None:
        async def cut() -> None:
            self._cut()

        self._run(cut())

    def _cut(self) -> None:
        self.refusing = True
        self._trigger = None
        for pair in list(self._pairs):
            _reset(pair.client)
            _reset(pair.server)
        self._pairs.clear()

    def restore(self) -> None:
        async def restore() -> None:
            self.refusing = False
            self._trigger = None

        self._run(restore())

    def cut_when(self, pattern: bytes, *, forward: bool) -> None:
        async def arm() -> None:
            self._trigger = (pattern, forward)

        self._run(arm())

    def blackhole(self) -> None:
        async def silence() -> None:
            for pair in self._pairs:
                pair.silent = True

        self._run(silence())

    # --- forwarding ------------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            _reset(writer)
            return
        try:
            if self.unix_path is not None:
                up_reader, up_writer = await asyncio.open_unix_connection(self.unix_path)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer)
            return
        self.connections += 1
        pair = _Pair(writer, up_writer)
        self._pairs.add(pair)
        await asyncio.gather(
            self._pump(pair, reader, up_writer, upstream=True),
            self._pump(pair, up_reader, writer, upstream=False),
            return_exceptions=True,
        )
        self._pairs.discard(pair)

    async def _pump(
        self, pair: _Pair, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if pair.silent:
                    continue
                trigger = self._trigger if upstream else None
                if trigger is not None and trigger[0] in data:
                    if trigger[1]:  # the server gets the bytes; the client never hears back
                        writer.write(data)
                        await writer.drain()
                        _reset(pair.client)
                        self._pairs.discard(pair)
                        writer.close()  # a FIN after the data: nothing sent is lost
                    self._cut()
                    return
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            if not pair.silent and pair in self._pairs:
                with contextlib.suppress(OSError):
                    writer.close()


def postgres_proxy() -> TcpProxy:
    """A proxy in front of the tests' PostgreSQL, on TCP or (an embedded server) its Unix socket."""
    parts = urlsplit(postgres_url())
    socket_dir = dict(parse_qsl(parts.query)).get("host", "")
    if socket_dir.startswith("/"):
        return TcpProxy(0, unix_path=f"{socket_dir}/.s.PGSQL.{parts.port or 5432}").start()
    return TcpProxy(parts.port or 5432, parts.hostname or "127.0.0.1").start()


def application_name(proxy: TcpProxy) -> str:
    """The `application_name` of the sessions opened through `proxy`: it finds them in
    pg_stat_activity whether the server is reached over TCP or (embedded) a Unix socket, where
    `client_port` says nothing."""
    return f"gatewayz-fault-proxy-{proxy.port}"


def proxied(url: str, proxy: TcpProxy) -> str:
    """The same database URL, through the proxy (over TCP on 127.0.0.1), its sessions named."""
    parts = urlsplit(url)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k not in ("host", "application_name")
    ]
    query.append(("application_name", application_name(proxy)))
    netloc = f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))
