"""What the `POST /auth/session` suites share: a gateway with its HTTP client and database, and the
checks of an answer (tests/auth/conftest.py starts the fake Supabase Auth and the gateways)."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import httpx

from shared.config import Settings
from shared.runtime import Runtime
from tests.conftest import gateway_settings, provision, start_gateway
from tests.fakes.server import FakeServer
from tests.harness import GatewayServer
from tests.store.support import query

SECRET = "test-supabase-jwt-secret-0123456789-abcdefghij"
KID = "fake-signing-key-1"


class Gw:
    def __init__(self, server: GatewayServer, settings: Settings) -> None:
        self.server = server
        self.settings = settings
        self.http = httpx.Client(base_url=server.url, timeout=20)

    def session(
        self, token: str | None = None, body: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        sent = dict(headers or {})
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        if body is None:
            return self.http.post("/auth/session", headers=sent)
        return self.http.post("/auth/session", json=body, headers=sent)

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return query(self.settings.database_url, sql, params)

    def stop(self) -> None:
        self.http.close()
        self.server.stop()


def _start(fakes: dict[str, FakeServer], tmp: Any, **env: str) -> Gw:
    settings = gateway_settings(fakes, f"sqlite:///{tmp / 'gatewayz.db'}", **env)
    provision(settings, f"operator-{uuid.uuid4().hex[:8]}@example.com", Decimal(0))  # migrates
    return Gw(start_gateway(settings), settings)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"message", "type", "param", "code"} <= set(body["error"])
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return dict(body["error"])


def user_count(gw: Gw) -> int:
    return int(gw.rows("SELECT COUNT(*) AS n FROM users")[0]["n"])


def grant(settings: Settings, user_id: str, amount: Decimal) -> None:
    async def run() -> None:
        rt = Runtime.build(settings)
        try:
            await rt.ledger.change_balance(
                user_id, amount, type="grant", description="test credits", actor_type="system"
            )
        finally:
            await rt.close()

    asyncio.run(run())
