"""The upstream HTTP/1.1 client (`shared.transport.http1`) against real sockets on 127.0.0.1: what the
pipeline relies on — keep-alive reuse, every way a body can be framed, stale pooled
connections, timeouts, caller hang-ups, compression, TLS — and what it must refuse to send."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.transport.http1 import Disconnected, HttpClient, Limits, ReadTimeout, Refused

LIMITS = Limits(connect=2, read=2, total=5)
Handler = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


class Server:
    """A raw HTTP/1.1 server: `handler(request head, reader, writer)` answers one request and
    says whether to keep the connection open for the next."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        RUNNING.append(self)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)  # type: ignore[arg-type]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                )
                self.requests.append(head + await reader.readexactly(length))
                if not await self.handler(head, reader, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()

    async def start(self, tls: ssl.SSLContext | None = None) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        port = self.server.sockets[0].getsockname()[1]
        return f"{'https' if tls else 'http'}://{'localhost' if tls else '127.0.0.1'}:{port}/v1/chat"


def answer(body: bytes, *, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def chunked(w: asyncio.StreamWriter, pieces: int, piece: bytes, pause: float) -> None:
    """A whole chunked answer, one piece every `pause` seconds."""
    w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    for _ in range(pieces):
        w.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        await w.drain()
        await asyncio.sleep(pause)
    w.write(b"0\r\n\r\n")
    await w.drain()


RUNNING: list[Server] = []


@pytest.fixture(autouse=True)
async def stop_servers() -> AsyncIterator[None]:
    yield
    while RUNNING:
        await RUNNING.pop().stop()


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    c = HttpClient(user_agent="gatewayz-test")
    yield c
    c.close()
    await asyncio.sleep(0)  # let the aborted transports close their sockets


async def test_a_call_sends_one_well_formed_request_and_reuses_the_connection(client: HttpClient) -> None:
    async def ok(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(answer(b'{"ok":true}', extra=b"x-request-id: abc\r\n"))
        return True

    server = Server(ok)
    url = await server.start()
    for _ in range(3):
        resp = await client.post(
            url, {"Authorization": "Bearer k", "content-type": "application/json"}, b"{}", LIMITS
        )
        assert (resp.status, resp.headers["x-request-id"], await resp.read()) == (200, "abc", b'{"ok":true}')
    assert server.connections == 1  # keep-alive: one connection for the three calls
    head = server.requests[0].decode()
    assert head.startswith("POST /v1/chat HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{url.split(':')[2].split('/')[0]}\r\n" in head
    assert "Authorization: Bearer k\r\n" in head and "user-agent: gatewayz-test\r\n" in head
    assert head.endswith("content-length: 2\r\n\r\n{}")


async def test_a_chunked_stream_is_read_as_it_arrives(client: HttpClient) -> None:
    release = asyncio.Event()

    async def stream(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        w.write(b"6\r\ndata:1\r\n")
        await w.drain()
        await release.wait()
        w.write(b"6\r\ndata:2\r\n0\r\n\r\n")
        return True

    url = await Server(stream).start()
    resp = await client.post(url, {}, b"{}", Limits(connect=2, read=2))
    assert await resp.readany() == b"data:1"  # before the rest is even sent
    assert client.waiting == 1  # an open stream counts as waiting on the upstream (group commit)
    release.set()
    assert await resp.readany() == b"data:2"
    assert await resp.readany() == b""
    assert client.waiting == 0
    assert await (await client.post(url, {}, b"{}", LIMITS)).read() == b"data:1data:2"


async def test_a_body_without_length_ends_with_the_connection(client: HttpClient) -> None:
    async def until_close(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        return False

    server = Server(until_close)
    url = await server.start()
    resp = await client.post(url, {}, b"{}", LIMITS)
    assert await resp.read() == b"all of it"
    resp = await client.post(url, {}, b"{}", LIMITS)  # the closed connection was not pooled
    assert await resp.read() == b"all of it" and server.connections == 2


async def test_a_pooled_connection_the_server_closed_is_replaced(client: HttpClient) -> None:
    async def once(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(answer(b"fine"))
        await w.drain()
        return False  # closes right after answering, without saying so (keep-alive assumed)

    server = Server(once)
    url = await server.start()
    assert await (await client.post(url, {}, b"{}", LIMITS)).read() == b"fine"
    await asyncio.sleep(0.05)
    assert await (await client.post(url, {}, b"{}", LIMITS)).read() == b"fine"
    assert server.connections == 2


async def test_an_idle_connection_past_its_keepalive_is_not_reused() -> None:
    async def ok(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(answer(b"x"))
        return True

    server = Server(ok)
    url = await server.start()
    client = HttpClient(user_agent="t", keepalive=0.1)
    await (await client.post(url, {}, b"{}", LIMITS)).read()
    await (await client.post(url, {}, b"{}", LIMITS)).read()
    assert server.connections == 1
    await asyncio.sleep(0.2)  # a middlebox may have dropped it silently by now
    await (await client.post(url, {}, b"{}", LIMITS)).read()
    assert server.connections == 2
    client.close()
    await asyncio.sleep(0)


async def test_a_connection_dropped_mid_body_is_an_error_not_a_short_answer(client: HttpClient) -> None:
    async def cut(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
        await w.drain()
        return False

    server = Server(cut)
    resp = await client.post(await server.start(), {}, b"{}", LIMITS)
    with pytest.raises(Disconnected):
        await resp.read()
    assert client.waiting == 0  # a failed response is no longer waited on


async def test_timeouts_first_byte_between_reads_and_total(client: HttpClient) -> None:
    async def silent(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(5)
        return False

    async def trickle(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        await chunked(w, 20, b"x", 0.05)
        return True

    url = await Server(silent).start()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(ReadTimeout):
        await client.post(url, {}, b"{}", Limits(connect=1, read=0.2, total=5))
    assert 0.15 < loop.time() - t0 < 1.0

    url = await Server(trickle).start()
    resp = await client.post(url, {}, b"{}", Limits(connect=1, read=0.2, total=5))
    assert len(await resp.read()) == 20  # bytes every 50 ms: the 200 ms read timeout never fires
    resp = await client.post(url, {}, b"{}", Limits(connect=1, read=0.2, total=0.3))
    with pytest.raises(ReadTimeout):
        await resp.read()  # ...but the whole exchange may not outlast its total


async def test_a_refused_connection_and_a_bad_url() -> None:
    client = HttpClient(user_agent="t")
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(Refused):
        await client.post(f"http://127.0.0.1:{port}/v1", {}, b"{}", LIMITS)
    for bad in ("ftp://example.invalid/", "http://127.0.0.1/v1/chat completions"):
        with pytest.raises(ValueError):
            await client.post(bad, {}, b"{}", LIMITS)


async def test_a_header_value_with_a_newline_is_refused_before_sending(client: HttpClient) -> None:
    async def ok(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(answer(b"x"))
        return True

    server = Server(ok)
    url = await server.start()
    with pytest.raises(ValueError):
        await client.post(url, {"authorization": "Bearer k\r\nx-injected: 1"}, b"{}", LIMITS)
    assert server.requests == []


async def test_closing_a_half_read_stream_drops_its_connection(client: HttpClient) -> None:
    async def endless(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        await chunked(w, 200, b"x", 0.01)
        return True

    server = Server(endless)
    url = await server.start()
    resp = await client.post(url, {}, b"{}", Limits(connect=1, read=1))
    assert await resp.readany()
    resp.close()  # the caller hung up
    assert client.waiting == 0
    resp = await client.post(url, {}, b"{}", Limits(connect=1, read=1))
    assert server.connections == 2  # the half-read one was not handed out again
    resp.close()


async def test_a_caller_cancelled_while_waiting_drops_its_connection_at_once(client: HttpClient) -> None:
    async def slow_then_fast(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        if b"slow" in head:
            await asyncio.sleep(0.2)
        w.write(answer(b"slow" if b"slow" in head else b"fast"))
        return True

    server = Server(slow_then_fast)
    url = await server.start()
    task = asyncio.ensure_future(client.post(url, {"x-kind": "slow"}, b"{}", LIMITS))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.waiting == 0  # nobody waits on that answer any more (group commit's count)
    await asyncio.sleep(0.3)  # the abandoned answer has been sent by now
    resp = await client.post(url, {"x-kind": "fast"}, b"{}", LIMITS)
    assert await resp.read() == b"fast"
    assert server.connections == 2  # the abandoned exchange's connection was closed, not pooled


async def test_a_compressed_answer_is_decompressed(client: HttpClient) -> None:
    payload = b'{"choices":[]}' * 50

    async def zipped(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(answer(gzip.compress(payload), extra=b"content-encoding: gzip\r\n"))
        return True

    resp = await client.post(await Server(zipped).start(), {}, b"{}", LIMITS)
    assert await resp.read() == payload


def _self_signed(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context for `localhost` and a client context that trusts only it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    trusting = ssl.create_default_context(cafile=str(tmp / "cert.pem"))
    return server, trusting


async def test_tls_with_verification_and_sni(tmp_path: Path) -> None:
    server_tls, trusting = _self_signed(tmp_path)

    async def ok(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(answer(b"secure"))
        return True

    server = Server(ok)
    url = await server.start(tls=server_tls)
    client = HttpClient(user_agent="t", tls=trusting)
    for _ in range(2):
        assert await (await client.post(url, {}, b"{}", LIMITS)).read() == b"secure"
    assert server.connections == 1 and b"host: localhost:" in server.requests[0]
    client.close()

    stranger = HttpClient(user_agent="t")  # the system's trust store does not know this certificate
    with pytest.raises(Refused):
        await stranger.post(url, {}, b"{}", LIMITS)
    stranger.close()


async def test_a_slow_reader_slows_the_upstream_down_instead_of_buffering_everything(
    client: HttpClient,
) -> None:
    piece = b"x" * (512 * 1024)
    wrote_all = asyncio.Event()

    async def flood(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        await chunked(w, 64, piece, 0)  # 32 MiB, far more than the sockets' buffers hold
        wrote_all.set()
        return True

    url = await Server(flood).start()
    resp = await client.post(url, {}, b"{}", Limits(connect=1, read=0.2))
    received = len(await resp.readany())
    await asyncio.sleep(0.4)  # a stalled client, for longer than the read timeout
    assert not wrote_all.is_set()  # the upstream waits on TCP instead of us holding 32 MiB
    while chunk := await resp.readany():
        received += len(chunk)
    assert received == 64 * len(piece)
    await asyncio.wait_for(wrote_all.wait(), 1)
