"""The scheduled hold reaper (which also purges stored responses past their retention): as a Lambda
schedule entry and as the Vercel cron route."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.store import now_text
from tests.conftest import gateway_settings, provision, run_off_main_thread
from tests.store.support import query


def _open_hold(db_url: str, user_id: str, request_id: str, expired: bool) -> None:
    expires = datetime.now(UTC) + (timedelta(minutes=-1) if expired else timedelta(minutes=10))
    query(
        db_url,
        "INSERT INTO credit_holds (id, user_id, request_id, amount_pico, status, expires_at, created_at) "
        "VALUES (:id, :user, :rid, 5, 'open', :exp, :now)",
        {
            "id": f"hold_{request_id}",
            "user": user_id,
            "rid": request_id,
            "exp": now_text(expires),
            "now": now_text(),
        },
    )


def _stored_response(db_url: str, user_id: str, response_id: str, expired: bool) -> None:
    expires = datetime.now(UTC) + (timedelta(minutes=-1) if expired else timedelta(days=30))
    query(
        db_url,
        "INSERT INTO stored_responses (id, user_id, model, items, response, created_at, expires_at) "
        "VALUES (:id, :user, 'openai/gpt-4o', '[]', '{}', :now, :exp)",
        {"id": response_id, "user": user_id, "exp": now_text(expires), "now": now_text()},
    )


def _response_ids(db_url: str) -> list[str]:
    return [r["id"] for r in query(db_url, "SELECT id FROM stored_responses ORDER BY id")]


def _status(db_url: str, request_id: str) -> str:
    from shared.store import open_database

    async def run() -> str:
        db = open_database(db_url)
        try:
            row = await db.fetch_one(
                "SELECT status FROM credit_holds WHERE request_id = :r", {"r": request_id}
            )
            assert row is not None
            return str(row["status"])
        finally:
            await db.close()

    return str(run_off_main_thread(run))


def test_lambda_schedule_entry_expires_only_stale_holds_and_responses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions import jobs

    db_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    settings = gateway_settings({"openai": _NoFake(), "anthropic": _NoFake(), "gemini": _NoFake()}, db_url)
    account = provision(settings, "reaper@example.com", credits=Decimal(1))
    _open_hold(db_url, account.user_id, "req_stale", expired=True)
    _open_hold(db_url, account.user_id, "req_live", expired=False)
    _stored_response(db_url, account.user_id, "resp_expired", expired=True)
    _stored_response(db_url, account.user_id, "resp_kept", expired=False)
    monkeypatch.setenv("GATEWAYZ_DATABASE_URL", db_url)
    monkeypatch.setenv("GATEWAYZ_KEY_SECRET", settings.key_secret or "")
    result = run_off_main_thread(lambda: _call(jobs.reap_holds))
    assert result == {"expired_holds": 1, "expired_responses": 1}
    assert _status(db_url, "req_stale") == "expired" and _status(db_url, "req_live") == "open"
    assert _response_ids(db_url) == ["resp_kept"]


async def _call(fn: Any) -> Any:
    import asyncio

    return await asyncio.to_thread(fn, {"source": "aws.events"}, None)


class _NoFake:
    url = "http://127.0.0.1:9"

    def base_for(self, provider: str) -> str:
        return f"{self.url}/{provider}/v1"


def test_cron_route_needs_the_secret(gateway: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"{gateway.url}/internal/jobs/reap-holds"
    monkeypatch.delenv("CRON_SECRET", raising=False)
    assert httpx.get(url, headers={"authorization": "Bearer anything"}).status_code == 401  # unset: closed
    monkeypatch.setenv("CRON_SECRET", "cron-secret-0123456789")
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"authorization": "Bearer wrong"}).status_code == 401
    ok = httpx.get(url, headers={"authorization": "Bearer cron-secret-0123456789"})
    assert ok.status_code == 200 and {"expired_holds", "expired_responses"} <= set(ok.json())
