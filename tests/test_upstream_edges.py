"""The gateway's upstream calls at their edges (issue 10, defects 8 and 15), end to end on
loopback: an upstream that reads a paid request and hangs up gets it once and the caller is not
charged; an egress proxy from the environment carries the calls; a provider URL that leads back
to the gateway is a clear 508, not a request that chases its own tail into a rate limit."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.runtime import Runtime
from shared.server import create_server_app
from tests.conftest import Account, gateway_settings, provision, start_gateway
from tests.fakes.connect_proxy import ConnectProxy
from tests.harness import GatewayServer

ASK = [{"role": "user", "content": "hi"}]
ONLY_OPENAI = {"only": ["openai"], "allow_fallbacks": False}


class HangUpServer:
    """Reads each request whole, counts it, and closes the connection without a word."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        data += conn.recv(65536) or b"!"
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = next(
                        int(v) for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
                        if k.strip().lower() == b"content-length"
                    )  # fmt: skip
                    while len(body) < length:
                        body += conn.recv(65536)
                    self.requests.append(body)
                except (OSError, StopIteration):
                    pass

    def __enter__(self) -> HangUpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running = False
        self.thread.join(5)
        self.sock.close()


def balance(gw: GatewayServer, account: Account) -> Decimal:
    me = httpx.get(f"{gw.url}/v1/me", headers={"authorization": f"Bearer {account.key}"}, timeout=10)
    return Decimal(str(me.json()["balance"]))


@pytest.fixture
def own_db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gatewayz.db'}"


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_that_hangs_up_after_reading_gets_the_request_once(
    fakes: dict[str, Any], own_db: str, stream: bool
) -> None:
    with HangUpServer() as upstream:
        settings = gateway_settings(fakes, own_db, OPENAI_BASE_URL=f"http://127.0.0.1:{upstream.port}/v1")
        account = provision(settings, "hangup@example.com", Decimal(10))
        gw = start_gateway(settings)
        try:
            before = balance(gw, account)
            r = httpx.post(
                f"{gw.url}/v1/chat/completions",
                json={"model": "openai/gpt-4o", "messages": ASK, "stream": stream, "provider": ONLY_OPENAI},
                headers={"authorization": f"Bearer {account.key}"},
                timeout=20,
            )
            assert r.status_code == 502, r.text
            assert r.json()["error"]["type"] == "upstream_error"
            assert r.headers["x-gatewayz-attempts"].startswith("openai:connect:")
            assert len(upstream.requests) == 1  # was 2: the client, then its wrapper, sent it again
            assert balance(gw, account) == before
        finally:
            gw.stop()


def test_an_egress_proxy_from_the_environment_carries_the_calls(
    fakes: dict[str, Any], own_db: str, openai_fake: Any
) -> None:
    proxy = ConnectProxy(user="egress", password="s3cret").start()
    try:
        settings = gateway_settings(fakes, own_db, HTTP_PROXY=f"http://egress:s3cret@127.0.0.1:{proxy.port}")
        account = provision(settings, "proxied@example.com", Decimal(10))
        gw = start_gateway(settings)
        try:
            r = httpx.post(
                f"{gw.url}/v1/chat/completions",
                json={"model": "openai/gpt-4o", "messages": ASK, "provider": ONLY_OPENAI},
                headers={"authorization": f"Bearer {account.key}"},
                timeout=20,
            )
            assert r.status_code == 200, r.text
            assert proxy.forwarded == [f"POST {openai_fake.base_for('openai')}/chat/completions HTTP/1.1"]
            assert proxy.authorizations == [proxy.expected]
            assert openai_fake.requests[-1].headers["via"].startswith("1.1 gatewayz-")
        finally:
            gw.stop()
    finally:
        proxy.stop()


@pytest.fixture
def looping_gateway(fakes: dict[str, Any], own_db: str) -> Iterator[tuple[GatewayServer, Account]]:
    """A gateway whose OpenAI base URL is its own (`OPENAI_BASE_URL` left over from an SDK setup)."""
    first = gateway_settings(fakes, own_db)
    account = provision(first, "loop@example.com", Decimal(10))
    app = create_server_app(first)
    gw = GatewayServer(app)  # its port is known from here on
    # The shell an OpenAI SDK user has: the gateway's URL and their gateway key, in the variables
    # the gateway also reads for its OpenAI upstream.
    settings = gateway_settings(fakes, own_db, OPENAI_BASE_URL=f"{gw.url}/v1", OPENAI_API_KEY=account.key)
    app.state.settings = settings
    app.state.runtime = Runtime.build(settings)
    gw.start()
    yield gw, account
    gw.stop()


@pytest.mark.parametrize("stream", [False, True])
def test_a_provider_url_that_leads_back_to_the_gateway_is_a_508(
    looping_gateway: tuple[GatewayServer, Account], stream: bool
) -> None:
    gw, account = looping_gateway
    before = balance(gw, account)
    started = time.monotonic()
    r = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": "openai/gpt-4o", "messages": ASK, "stream": stream, "provider": ONLY_OPENAI},
        headers={"authorization": f"Bearer {account.key}"},
        timeout=20,
    )
    assert time.monotonic() - started < 2  # one hop, not a chase into the rate limits
    assert r.status_code == 508, r.text
    error = r.json()["error"]
    assert error["code"] == "loop_detected" and "OPENAI_BASE_URL" in error["message"]
    assert r.headers["x-gatewayz-attempts"].startswith("openai:508:")  # the inner call was refused
    assert balance(gw, account) == before


def test_a_request_marked_by_this_deployment_is_refused_before_anything_else(
    looping_gateway: tuple[GatewayServer, Account],
) -> None:
    gw, _ = looping_gateway
    mark = gw.runtime.http.mark
    assert mark is not None
    for via in (f"1.1 {mark}", f"1.1 edge.example (CloudFront), 1.1 {mark}"):
        r = httpx.post(f"{gw.url}/v1/chat/completions", json={}, headers={"via": via}, timeout=10)
        assert r.status_code == 508 and r.json()["error"]["type"] == "api_error"
    # Another deployment's mark (a gateway in front of this one) is not a loop.
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={}, headers={"via": "1.1 gatewayz-000000000000"})
    assert r.status_code == 401
