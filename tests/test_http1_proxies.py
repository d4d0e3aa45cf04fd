"""Upstream calls behind an egress proxy (issue 10, defect 8): `HTTPS_PROXY` through a CONNECT
tunnel (TLS end to end with the upstream), `HTTP_PROXY` with absolute-form requests, credentials
from the proxy URL, `NO_PROXY` as urllib reads it — on real sockets, through a proxy of the
test's own (tests/fakes/connect_proxy.py). Also what the client offers and marks on every call."""

from __future__ import annotations

import asyncio
import gzip
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.config import ConfigError
from shared.transport.http1 import Disconnected, HttpClient, Refused
from shared.transport.proxies import ProxyConfig
from tests.fakes.connect_proxy import ConnectProxy
from tests.test_http1 import LIMITS, RUNNING, Server, _self_signed, answer, stop_servers

__all__ = ["stop_servers"]  # the servers of each test are stopped after it


async def ok(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
    w.write(answer(b"through"))
    return True


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    p = ConnectProxy(user="gw", password="p@ss word").start()
    yield p
    p.stop()


def creds(proxy: ConnectProxy) -> str:
    return f"http://gw:p%40ss%20word@127.0.0.1:{proxy.port}"


async def test_https_goes_through_a_connect_tunnel_with_the_proxy_credentials(
    proxy: ConnectProxy, tmp_path: Path
) -> None:
    server_tls, trusting = _self_signed(tmp_path)
    server = Server(ok)
    url = await server.start(tls=server_tls)  # https://localhost:PORT/v1/chat
    port = url.split(":")[2].split("/")[0]
    client = HttpClient(
        user_agent="t", tls=trusting, proxies=ProxyConfig.from_env({"HTTPS_PROXY": creds(proxy)})
    )
    for _ in range(2):
        assert await (await client.post(url, {}, b"{}", LIMITS)).read() == b"through"
    assert proxy.connects == [f"localhost:{port}"]  # one tunnel, kept alive for both calls
    assert proxy.authorizations == [proxy.expected]
    assert server.connections == 1 and b"host: localhost:" in server.requests[0]
    client.close()


async def test_http_goes_through_the_proxy_in_absolute_form(proxy: ConnectProxy) -> None:
    server = Server(ok)
    url = await server.start()  # http://127.0.0.1:PORT/v1/chat
    client = HttpClient(user_agent="t", proxies=ProxyConfig.from_env({"http_proxy": creds(proxy)}))
    assert await (await client.post(url + "?x=1", {}, b"{}", LIMITS)).read() == b"through"
    assert proxy.forwarded == [f"POST {url}?x=1 HTTP/1.1"]
    assert proxy.authorizations == [proxy.expected]
    assert b"proxy-authorization" not in server.requests[0].lower()  # the proxy's, not the upstream's
    client.close()


async def test_no_proxy_reaches_the_upstream_directly(proxy: ConnectProxy) -> None:
    server = Server(ok)
    url = await server.start()
    port = url.split(":")[2].split("/")[0]
    for no_proxy in ("127.0.0.1", f"example.com, 127.0.0.1:{port}", "*"):
        env = {"HTTP_PROXY": creds(proxy), "NO_PROXY": no_proxy}
        client = HttpClient(user_agent="t", proxies=ProxyConfig.from_env(env))
        assert await (await client.post(url, {}, b"{}", LIMITS)).read() == b"through"
        client.close()
    assert proxy.forwarded == [] and proxy.connects == []
    # Another port of the same host is not covered by a NO_PROXY entry with a port.
    client = HttpClient(
        user_agent="t", proxies=ProxyConfig.from_env({"HTTP_PROXY": creds(proxy), "NO_PROXY": "127.0.0.1:1"})
    )
    await (await client.post(url, {}, b"{}", LIMITS)).read()
    assert len(proxy.forwarded) == 1
    client.close()


async def test_a_proxy_that_refuses_the_tunnel_is_a_refused_connect(
    proxy: ConnectProxy, tmp_path: Path
) -> None:
    """Nothing reached the upstream: `Refused`, which the pipeline may try again."""
    server_tls, trusting = _self_signed(tmp_path)
    server = Server(ok)
    url = await server.start(tls=server_tls)
    no_creds = f"http://127.0.0.1:{proxy.port}"
    client = HttpClient(user_agent="t", tls=trusting, proxies=ProxyConfig.from_env({"HTTPS_PROXY": no_creds}))
    with pytest.raises(Refused, match=r"refused a tunnel .* HTTP 407"):
        await client.post(url, {}, b"{}", LIMITS)
    assert proxy.refused == 1 and server.requests == []
    client.close()


NO_PROXY_CASES = [
    ("api.openai.com", "openai.com"),
    ("api.openai.com", ".openai.com"),
    ("api.openai.com", "api.openai.com"),
    ("notopenai.com", "openai.com"),
    ("api.openai.com", "OpenAI.COM "),
    ("api.openai.com:443", "api.openai.com"),
    ("api.openai.com", "api.openai.com:443"),
    ("localhost:8080", "localhost:8080"),
    ("localhost:8081", "localhost:8080"),
    ("10.0.0.1", "10.0.0.1,other"),
    ("10.0.0.12", "10.0.0.1"),
    ("[::1]:8000", "[::1]"),
    ("anything.example", "*"),
    ("anything.example", ""),
    ("anything.example", " , ,"),
]


@pytest.mark.parametrize(("host", "no_proxy"), NO_PROXY_CASES)
def test_no_proxy_matching_is_urllibs(host: str, no_proxy: str) -> None:
    config = ProxyConfig.from_env({"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": no_proxy})
    bypassed = config.for_origin("http", host) is None
    expected = urllib.request.proxy_bypass_environment(host, {"no": no_proxy}) if no_proxy else False
    assert bypassed == expected


def test_the_environment_is_read_as_urllib_reads_it() -> None:
    lower_wins = ProxyConfig.from_env({"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2"})
    assert lower_wins.https is not None and (lower_wins.https.host, lower_wins.https.port) == ("lower", 2)
    unset = ProxyConfig.from_env({"HTTPS_PROXY": "http://upper:1", "https_proxy": ""})
    assert unset.https is None and not unset
    # Under CGI a client's `Proxy:` header becomes HTTP_PROXY: only the lower-case form counts.
    cgi = ProxyConfig.from_env({"REQUEST_METHOD": "POST", "HTTP_PROXY": "http://evil:1"})
    assert cgi.http is None
    bare = ProxyConfig.from_env({"HTTP_PROXY": "proxy.internal:3128"})
    assert bare.http is not None and (bare.http.host, bare.http.port, bare.http.authorization) == (
        "proxy.internal",
        3128,
        None,
    )
    for bad in ("socks5://127.0.0.1:1080", "https://proxy:443", "http://:3128", "http://proxy:port"):
        with pytest.raises(ConfigError, match="HTTPS_PROXY"):
            ProxyConfig.from_env({"HTTPS_PROXY": bad})


# --- what every call offers and says ----------------------------------------------------------
async def test_only_the_decodable_codings_are_offered_and_another_is_an_error() -> None:
    replies = iter(
        [
            answer(gzip.compress(b"zipped"), extra=b"content-encoding: gzip\r\n"),
            answer(zlib.compress(b"deflated"), extra=b"content-encoding: deflate\r\n"),
            answer(b"\x1b\x00brotli", extra=b"content-encoding: br\r\n"),
        ]
    )

    async def encoded(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(next(replies))
        return True

    server = Server(encoded)
    url = await server.start()
    client = HttpClient(user_agent="t")
    # The caller's accept-encoding is not sent: only what the response side decodes is offered.
    assert await (await client.post(url, {"Accept-Encoding": "br"}, b"{}", LIMITS)).read() == b"zipped"
    assert await (await client.post(url, {}, b"{}", LIMITS)).read() == b"deflated"
    with pytest.raises(Disconnected, match="'br'"):
        await client.post(url, {}, b"{}", LIMITS)
    for request in server.requests:
        assert request.lower().count(b"accept-encoding") == 1
        assert b"accept-encoding: gzip, deflate\r\n" in request
    client.close()


async def test_every_call_carries_the_via_mark_unless_it_brings_its_own() -> None:
    server = Server(ok)
    url = await server.start()
    client = HttpClient(user_agent="t", via="1.1 gatewayz-abc")
    await (await client.post(url, {}, b"{}", LIMITS)).read()
    await (await client.post(url, {"via": "1.1 edge, 1.1 gatewayz-abc"}, b"{}", LIMITS)).read()
    first, second = server.requests
    assert b"via: 1.1 gatewayz-abc\r\n" in first and b"user-agent: t\r\n" in first
    assert second.count(b"via:") == 1 and b"via: 1.1 edge, 1.1 gatewayz-abc\r\n" in second
    assert b"user-agent: t\r\n" in second
    client.close()


def test_the_tunnel_works_on_uvloop_too(proxy: ConnectProxy, tmp_path: Path) -> None:
    """`gatewayz serve` runs on uvloop, whose start_tls is its own."""
    import uvloop

    server_tls, trusting = _self_signed(tmp_path)

    async def scenario() -> bytes:
        server = Server(ok)
        url = await server.start(tls=server_tls)
        client = HttpClient(
            user_agent="t", tls=trusting, proxies=ProxyConfig.from_env({"HTTPS_PROXY": creds(proxy)})
        )
        try:
            return await (await client.post(url, {}, b"{}", LIMITS)).read()
        finally:
            client.close()
            RUNNING.remove(server)
            await server.stop()
            await asyncio.sleep(0.05)  # the aborted transports close on this loop

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(uvloop.run, scenario()).result() == b"through"
    assert len(proxy.connects) == 1
