"""Fixtures of the fault suite: gateways whose dependencies a test can break.

`Faulty` is a gateway on loopback (tests/harness.py) with a caller whose key allows ONE concurrent
request: a concurrency slot leaked by a failed request shows up as a 429 on the next one. On
PostgreSQL the gateway reaches the real server through a `TcpProxy` the test can cut; assertions
read the database directly, around the proxy. `invariants` checks what every fault must leave
behind: the balance equal to its ledger, no hold open beyond the reaper's window (and only as many
as the fault could strand), no slot held.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.billing.ledger import HOLD_TTL
from shared.store import Row, now_text
from tests.conftest import ADMIN_KEY, Account, gateway_settings, provision, start_gateway
from tests.faults.proxy import TcpProxy, postgres_proxy, proxied
from tests.harness import GatewayServer
from tests.store.support import (
    LEDGER_STATE,
    OPEN_HOLDS,
    check_ledger,
    database_url,
    open_holds_after_spares,
    query,
)

MODEL = "openai/gpt-4o"
HELLO = [{"role": "user", "content": "hello"}]
CREDITS = Decimal(100)


@dataclass
class Faulty:
    backend: str
    url: str  # the database, reached directly (assertions)
    server: GatewayServer
    account: Account
    proxy: TcpProxy | None = None
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {key or self.account.key}"}

    def chat(self, *, key: str | None = None, **body: Any) -> httpx.Response:
        payload = {"model": MODEL, "messages": HELLO, **body}
        return self.http.post(
            f"{self.server.url}/v1/chat/completions", json=payload, headers=self.headers(key)
        )

    def stream(self, **body: Any) -> Any:
        payload = {"model": MODEL, "messages": HELLO, "stream": True, **body}
        return self.http.stream(
            "POST", f"{self.server.url}/v1/chat/completions", json=payload, headers=self.headers()
        )

    def get(self, path: str, *, admin: bool = False, **kw: Any) -> httpx.Response:
        return self.http.get(
            f"{self.server.url}{path}", headers=self.headers(ADMIN_KEY if admin else None), **kw
        )

    def send(self, method: str, path: str, *, admin: bool = False, **kw: Any) -> httpx.Response:
        return self.http.request(
            method, f"{self.server.url}{path}", headers=self.headers(ADMIN_KEY if admin else None), **kw
        )

    def rows(self, sql: str, **params: Any) -> list[Row]:
        return query(self.url, sql, params)

    def balance_pico(self) -> int:
        return check_ledger(self.rows(LEDGER_STATE, user_id=self.account.user_id)[0])

    def open_holds(self) -> list[Row]:
        return self.rows(OPEN_HOLDS, u=self.account.user_id)

    def spares_dropped(self) -> None:
        open_holds_after_spares(self.url, self.account.user_id)

    def invariants(self, *, open_holds: int = 0, model: str = MODEL) -> int:
        """Ledger == balance (>= 0); `open_holds` holds stranded, none past the reaper's window
        (spare holds nobody took are dropped first); no concurrency slot held (the key allows one:
        a leaked slot makes this request a 429). Returns the balance in picodollars (before this
        check's own request)."""
        holds = open_holds_after_spares(self.url, self.account.user_id)
        balance = self.balance_pico()
        assert len(holds) == open_holds, holds
        window = now_text(datetime.now(UTC) + HOLD_TTL)
        assert all(str(h["expires_at"]) <= window for h in holds), holds
        answer = self.chat(model=model)
        assert answer.status_code == 200, answer.text
        return balance

    def close(self) -> None:
        self.http.close()
        self.server.stop()
        if self.proxy is not None:
            self.proxy.stop()


def assert_unavailable(response: httpx.Response) -> None:
    """A 503 `dependency_unavailable` in the OpenAI envelope, with a retry-after, never a 500."""
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "dependency_unavailable", error
    assert set(error) >= {"message", "type", "param", "code"} and error.get("request_id")
    assert response.headers["retry-after"].isdigit()


def start_faulty(
    fakes: dict[str, Any], backend: str, directory: Path, stack: Any, *, warm: str = MODEL, **env: str
) -> Faulty:
    """A gateway on a fresh database of `backend` (PostgreSQL behind a proxy), warmed up by one
    request for the model `warm` (routines installed, the key cached, a pooled connection)."""
    url = stack.enter_context(database_url(backend, directory))
    direct = gateway_settings(fakes, url, **env)
    account = provision(
        direct,
        f"faults-{backend}@example.com",
        CREDITS,
        scopes=["inference", "read", "keys"],
        rate_limits={"concurrency": 1},
    )
    proxy = postgres_proxy() if backend == "postgres" else None
    settings = gateway_settings(fakes, proxied(url, proxy), **env) if proxy else direct
    gw = Faulty(backend, url, start_gateway(settings), account, proxy)
    stack.callback(gw.close)
    first = gw.chat(model=warm)
    assert first.status_code == 200, first.text
    return gw


@pytest.fixture
def pg(fakes: dict[str, Any], tmp_path: Path) -> Iterator[Faulty]:
    from contextlib import ExitStack

    with ExitStack() as stack:
        yield start_faulty(fakes, "postgres", tmp_path, stack)


def in_background(call: Callable[[], Any]) -> Callable[[], Any]:
    """Run `call` on a thread; the returned function joins it and gives its result (or raises)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join(timeout: float = 30) -> Any:
        thread.join(timeout)
        assert not thread.is_alive(), "the request did not finish"
        if "error" in box:
            raise box["error"]
        return box["result"]

    return join


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# The limiter suites' Redis fixtures (private redis-server processes, the Upstash bridge), shared.
from tests.limits.conftest import e2e_redis, real_redis, redis_process, upstash_bridge  # noqa: E402, F401
