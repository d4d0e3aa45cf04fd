"""A paid request is sent once (issue 10, defect 8): the upstream client never sends a request
again once it may have reached the server, and still replaces a pooled connection that is
provably dead before anything was written on it. Real sockets on 127.0.0.1; the servers count
what they received."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from shared.config import Timeouts
from shared.transport.errors import UpstreamError
from shared.transport.http1 import Disconnected, HttpClient, Limits
from shared.transport.upstream import UpstreamClient
from tests.test_http1 import LIMITS, Server, answer, stop_servers

__all__ = ["stop_servers"]  # the servers of each test are stopped after it


async def read_and_close(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
    return False  # the request was read (and counted): close without a word


def upstream_client() -> UpstreamClient:
    return UpstreamClient(Timeouts(connect=2, first_byte=2, stream_idle=2, deadline=5))


async def test_a_server_that_reads_the_request_and_closes_gets_it_once() -> None:
    server = Server(read_and_close)
    url = await server.start()
    client = upstream_client()
    with pytest.raises(UpstreamError) as failed:
        await client.post(url, {}, b'{"paid":true}', limits=client.call_timeout(5))
    assert failed.value.kind == "connect" and failed.value.status is None
    assert len(server.requests) == 1  # was 2: the client tried again on a fresh connection
    await client.close()


async def test_on_a_reused_connection_too() -> None:
    calls = 0

    async def first_then_drop(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            w.write(answer(b"ok"))
            return True  # keep-alive: the second request comes on this connection
        return False

    server = Server(first_then_drop)
    url = await server.start()
    client = upstream_client()
    resp = await client.post(url, {}, b"{}", limits=client.call_timeout(5))
    assert await resp.read() == b"ok"
    with pytest.raises(UpstreamError):
        await client.post(url, {}, b'{"paid":true}', limits=client.call_timeout(5))
    assert len(server.requests) == 2  # was 4: the second request arrived three times
    assert server.connections == 1
    await client.close()


async def test_a_refused_connect_is_tried_once_more() -> None:
    """Nothing was sent: a second connect is free (SPEC §3: one quick retry)."""
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    client = upstream_client()
    with pytest.raises(UpstreamError) as failed:
        await client.post(f"http://127.0.0.1:{port}/v1", {}, b"{}", limits=client.call_timeout(5))
    assert "could not connect" in failed.value.message
    await client.close()


# --- pooled connections the event loop has not yet seen closed ---------------------------------
class ThreadedServer:
    """A blocking HTTP/1.1 server in a thread of its own, so that it can close (or reset) a
    connection while the test's event loop is busy and does not notice: the state a pooled
    connection is in after a server's idle timeout, or after a Lambda instance thaws."""

    def __init__(self, reset: bool) -> None:
        self.reset = reset  # close with a TCP reset rather than a FIN
        self.requests: list[bytes] = []
        self.connections = 0
        self.first_answered = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _read_request(self, conn: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(v)
            for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
            if k.lower() == b"content-length"
        )
        while len(body) < length:
            body += conn.recv(65536)
        self.requests.append(head + b"\r\n\r\n" + body)
        return True

    def _run(self) -> None:
        try:
            self._serve()
        except OSError:
            pass  # the test failed, or ended early: it says so itself

    def _serve(self) -> None:
        first, _ = self.sock.accept()  # the first connection answers once, then is dropped
        self.connections += 1
        with first:
            self._read_request(first)
            first.sendall(answer(b"first"))
            self.first_answered.set()
            time.sleep(0.05)
            if self.reset:
                first.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        second, _ = self.sock.accept()  # the replacement answers, and says it closes
        self.connections += 1
        with second:
            if self._read_request(second):
                second.sendall(answer(b"second", extra=b"connection: close\r\n"))

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def client() -> Iterator[HttpClient]:
    c = HttpClient(user_agent="t")
    yield c
    c.close()


@pytest.mark.parametrize(
    ("reset", "blocked"),
    [
        # A FIN pending on a connection idle for over a second: the client polls before using it.
        (False, 1.3),
        # A reset pending on one idle for a moment (not polled): the write fails at once, nothing
        # left, and the request goes on a fresh connection.
        (True, 0.3),
    ],
)
async def test_a_pooled_connection_dead_before_the_write_is_replaced_without_loss(
    client: HttpClient, reset: bool, blocked: float
) -> None:
    with ThreadedServer(reset) as server:
        url = f"http://127.0.0.1:{server.port}/v1/chat"
        assert await (await client.post(url, {}, b"{}", LIMITS)).read() == b"first"
        time.sleep(blocked)  # noqa: ASYNC251 (the loop must be busy: the server's close stays pending)
        resp = await client.post(url, {}, b'{"n":2}', LIMITS)
        assert await resp.read() == b"second"
        assert server.connections == 2
        assert [r.endswith(b'{"n":2}') for r in server.requests] == [False, True]


async def test_a_connection_lost_after_the_write_is_not_retried(client: HttpClient) -> None:
    """The request may have reached the server: the caller hears of it, nothing is re-sent."""
    server = Server(read_and_close)
    url = await server.start()
    with pytest.raises(Disconnected):
        await client.post(url, {}, b"{}", Limits(connect=1, read=1, total=2))
    assert len(server.requests) == 1
