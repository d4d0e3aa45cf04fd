"""Sentry opt-in (issue 16): with SENTRY_DSN set, an unhandled error reaches a fake Sentry on
127.0.0.1 as one event, and nothing secret goes with it (the caller's key, the admin key, provider
keys, a key in a local variable or in the error's message)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import Request

from shared.observe import errors
from tests.conftest import ADMIN_KEY, gateway_settings, provision, start_gateway
from tests.fakes.sentry_fake import SentryFake


@pytest.fixture
def sentry(monkeypatch: pytest.MonkeyPatch) -> Iterator[SentryFake]:
    fake = SentryFake().start()
    monkeypatch.setenv("SENTRY_DSN", fake.dsn)
    try:
        yield fake
    finally:
        errors.disable()
        fake.stop()


def test_an_unhandled_error_reaches_sentry_scrubbed(
    sentry: SentryFake, fakes: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = gateway_settings(fakes, f"sqlite:///{tmp_path_factory.mktemp('sentry') / 'g.db'}")
    account = provision(settings, "sentry@example.com", Decimal(1))
    server = start_gateway(settings)

    async def boom(request: Request) -> None:
        presented = request.headers["authorization"]  # a secret in a local variable
        raise RuntimeError(f"a bug while serving {presented} with sk-test-openai-0123456789")

    server.app.add_api_route("/boom", boom, methods=["POST"])
    try:
        answer = httpx.post(
            f"{server.url}/boom?key={account.key}",
            headers={"authorization": f"Bearer {account.key}", "x-api-key": ADMIN_KEY},
            json={"messages": [{"role": "user", "content": "a private prompt"}]},
        )
        assert answer.status_code == 500
        errors.flush()
        deadline = time.monotonic() + 5
        while not sentry.events() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop()
    assert sentry.rejected == []
    events = sentry.events()
    assert len(events) == 1
    event = events[0]
    assert event["level"] == "error"
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    text = b"\n".join(sentry.raw).decode()
    for secret in (account.key, ADMIN_KEY, "sk-test-openai-0123456789", "a private prompt"):
        assert secret not in text
    assert "[redacted]" in event["exception"]["values"][-1]["value"]


def test_scrub_keeps_method_and_path_only() -> None:
    event = errors.scrub(
        {
            "request": {
                "method": "POST",
                "url": "http://h/v1/x?key=gw_live_abcdefgh12",
                "headers": {"a": "b"},
            },
            "user": {"ip_address": "1.2.3.4"},
            "breadcrumbs": {"values": [{"message": "GET https://up?key=AIza" + "x" * 30}]},
            "message": "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0x.c2lnbmF0dXJl here",
        }
    )
    assert event == {
        "request": {"method": "POST", "url": "http://h/v1/x"},
        "message": "token [redacted] here",
    }
