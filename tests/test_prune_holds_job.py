"""The closed-hold pruner (issue 20) as a Lambda schedule entry and as the Vercel cron route."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.store import now_text
from tests.conftest import gateway_settings, provision, run_off_main_thread
from tests.store.support import query


def _hold(db_url: str, user_id: str, request_id: str, status: str, age: timedelta) -> None:
    """A hold made `age` ago (its id carries that moment, as the ledger's ids do)."""
    moment = datetime.now(UTC) - age
    query(
        db_url,
        "INSERT INTO credit_holds (id, user_id, request_id, amount_pico, status, expires_at, created_at,"
        " closed_at) VALUES (:id, :user, :rid, 5, :status, :exp, :at, :closed)",
        {
            "id": f"hold_{int(moment.timestamp() * 1000):012x}{request_id}",
            "user": user_id,
            "rid": request_id,
            "status": status,
            "exp": now_text(moment + timedelta(minutes=15)),
            "at": now_text(moment),
            "closed": None if status == "open" else now_text(moment + timedelta(seconds=1)),
        },
    )


def _holds(db_url: str) -> list[str]:
    return [r["request_id"] for r in query(db_url, "SELECT request_id FROM credit_holds ORDER BY id")]


class _NoFake:
    url = "http://127.0.0.1:9"

    def base_for(self, provider: str) -> str:
        return f"{self.url}/{provider}/v1"


def test_lambda_schedule_entry_prunes_only_closed_holds_past_retention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions import jobs

    db_url = f"sqlite:///{tmp_path / 'prune.db'}"
    settings = gateway_settings({"openai": _NoFake(), "anthropic": _NoFake(), "gemini": _NoFake()}, db_url)
    account = provision(settings, "pruner@example.com", credits=Decimal(1))
    three_days = timedelta(days=3)
    _hold(db_url, account.user_id, "old_settled", "settled", three_days)
    _hold(db_url, account.user_id, "old_expired", "expired", three_days)
    _hold(db_url, account.user_id, "old_open", "open", three_days)  # the reaper's business, not ours
    _hold(db_url, account.user_id, "new_settled", "settled", timedelta(hours=1))
    monkeypatch.setenv("GATEWAYZ_DATABASE_URL", db_url)
    monkeypatch.setenv("GATEWAYZ_KEY_SECRET", settings.key_secret or "")
    monkeypatch.setenv("GATEWAYZ_HOLD_RETENTION_DAYS", "2")
    result = run_off_main_thread(lambda: asyncio.to_thread(jobs.prune_holds, {"source": "aws.events"}, None))
    assert result == {"pruned_holds": 2, "batches": 1, "done": True}
    assert sorted(_holds(db_url)) == ["new_settled", "old_open"]


def test_prune_cron_route_needs_the_secret(gateway: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"{gateway.url}/internal/jobs/prune-holds"
    monkeypatch.delenv("CRON_SECRET", raising=False)
    assert httpx.get(url, headers={"authorization": "Bearer anything"}).status_code == 401  # unset: closed
    monkeypatch.setenv("CRON_SECRET", "cron-secret-0123456789")
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"authorization": "Bearer wrong"}).status_code == 401
    ok = httpx.get(url, headers={"authorization": "Bearer cron-secret-0123456789"})
    assert ok.status_code == 200 and ok.json() == {"pruned_holds": 0, "batches": 1, "done": True}


def test_cli_prunes_the_same_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    import json

    from shared import cli

    db_url = f"sqlite:///{tmp_path / 'cli.db'}"
    settings = gateway_settings({"openai": _NoFake(), "anthropic": _NoFake(), "gemini": _NoFake()}, db_url)
    account = provision(settings, "cli-pruner@example.com", credits=Decimal(1))
    _hold(db_url, account.user_id, "old_released", "released", timedelta(days=9))
    _hold(db_url, account.user_id, "recent_released", "released", timedelta(days=6))
    monkeypatch.setenv("GATEWAYZ_DATABASE_URL", db_url)
    monkeypatch.setenv("GATEWAYZ_KEY_SECRET", settings.key_secret or "")
    monkeypatch.delenv("GATEWAYZ_HOLD_RETENTION_DAYS", raising=False)  # the default: 7 days
    assert run_off_main_thread(lambda: asyncio.to_thread(cli.main, ["prune-holds"])) == 0
    assert json.loads(capsys.readouterr().out) == {"pruned_holds": 1, "batches": 1, "done": True}
    assert _holds(db_url) == ["recent_released"]
