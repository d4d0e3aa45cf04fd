"""Incidents and the probe history on both databases (SQLite and the real PostgreSQL): the
migration's tables, one open incident per breaker even when two runs race, resolution, uptime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.config import Settings
from shared.routing.probes import reconcile_incidents, run_probes, status_history
from shared.runtime import Runtime
from shared.store import now_text
from tests.store.support import BACKENDS, database_url, migrate_url


@pytest.fixture(params=BACKENDS)
async def rt(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    with database_url(request.param, tmp_path) as url:
        migrate_url(url)
        env = {
            "GATEWAYZ_DATABASE_URL": url,
            "GATEWAYZ_KEY_SECRET": "history-test-key-secret-0123456789abcdef",
            "GATEWAYZ_INCIDENT_AFTER": "0",
            "GATEWAYZ_BREAKER_MIN_REQUESTS": "1",
        }
        runtime = Runtime.build(Settings.from_env(env))
        try:
            yield runtime
        finally:
            await runtime.close()


async def test_incidents_open_once_and_resolve(rt: Runtime) -> None:
    await rt.health.failure("groq", "meta-llama/llama-x")
    runs = await asyncio.gather(*(reconcile_incidents(rt, datetime.now(UTC)) for _ in range(3)))
    assert sum(r["incidents_opened"] for r in runs) == 2  # racing runs: the index keeps one each
    rows = await rt.db.fetch("SELECT scope_key FROM incidents WHERE resolved_at IS NULL ORDER BY scope_key")
    assert [r["scope_key"] for r in rows] == ["o:groq|meta-llama/llama-x", "p:groq"]
    assert await run_probes(rt) == {"probed": 0, "failed": 0, "incidents_opened": 0, "incidents_resolved": 0}
    rt.health.reset()  # every breaker closed
    assert (await reconcile_incidents(rt, datetime.now(UTC)))["incidents_resolved"] == 2
    history = await status_history(rt)
    assert {(i["model"], i["status"]) for i in history["incidents"]} == {
        ("meta-llama/llama-x", "resolved"),
        (None, "resolved"),
    }


async def test_uptime_over_a_day_and_a_week(rt: Runtime) -> None:
    now = datetime.now(UTC)
    for i, (ok, age) in enumerate([(True, 1), (False, 2), (True, 30), (False, 100), (False, 24 * 8)]):
        await rt.db.fetch(
            "INSERT INTO provider_health (id, provider, model, ok, latency_ms, status, checked_at) "
            "VALUES (:id, 'groq', 'm', :ok, :ms, '200', :at)",
            {"id": f"h{i}", "ok": ok, "ms": 100 + i, "at": now_text(now - timedelta(hours=age))},
        )
    uptime = (await status_history(rt, now))["uptime"]["groq"]
    assert uptime["24h"] == 0.5 and uptime["7d"] == 0.5  # 2 of the last 4; the 8-day-old one is out
    assert uptime["latency_ms"] == [103, 102, 101, 100]  # oldest first
