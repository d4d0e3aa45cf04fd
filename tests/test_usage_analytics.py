"""Usage analytics over real HTTP (issue 18), on SQLite and on the real PostgreSQL (the `deployment`
fixture of tests/test_account_routes.py): a user sees spend per day, model and key — as JSON and as
CSV, equal to a recount of their raw records — and their activity; operators see the same across
users; the public rankings reflect the rolled-up traffic; the rollup job runs on the operator's
schedule only, as a Vercel cron route and as a Lambda entry.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from shared.analytics.rollup import LAG
from shared.analytics.summary import Query
from shared.billing.ledger import new_id
from shared.store import now_text
from tests import test_account_routes as accounts
from tests.conftest import ADMIN_KEY, Account, gateway_settings, provision, run_off_main_thread
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply
from tests.store.test_usage_rollups import INSERT, recount
from tests.test_account_routes import Deployment, assert_envelope

deployment = accounts.deployment  # the same fixture: a gateway per backend for this module
SECRET = "cron-secret-analytics-0123456789"


def seed_day() -> datetime:
    """Noon of the day the next rollup run (re-)rolls, whatever the watermark already is."""
    day = (datetime.now(UTC) - LAG).date() - timedelta(days=1)
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def seed(deployment: Deployment, user: Account, key_id: str, model: str, count: int, cost_pico: int) -> None:
    """Earlier traffic of the user (a past day's records), as the pipeline would have written it."""
    for n in range(count):
        deployment.rows(
            INSERT,
            {
                "request_id": new_id("req"),
                "user_id": user.user_id,
                "key_id": key_id,
                "model": model,
                "provider": "openai",
                "status": "ok" if n else "error",
                "http_status": 200 if n else 502,
                "input_tokens": 1000 + n,
                "cache_read_tokens": 10,
                "cache_write_tokens": 0,
                "output_tokens": 300,
                "reasoning_tokens": 0,
                "cost_pico": cost_pico + n,
                "latency_ms": 180 * (n + 1),
                "created_at": now_text(seed_day() + timedelta(minutes=n)),
            },
        )


def run_rollup(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("CRON_SECRET", SECRET)
    with deployment.http(SECRET) as http:
        response = http.get("/internal/jobs/rollup")
    assert response.status_code == 200, response.text
    return dict(response.json())


def decimal_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**row, "cost": Decimal(row["cost"])} for row in rows]


@pytest.fixture(scope="module")
def traffic(deployment: Deployment, openai_fake: OpenAIFake) -> dict[str, Any]:
    """A user with two keys: yesterday's seeded records on the first, today's real requests (the
    official SDK through the gateway) on both."""
    user = deployment.user("5", "enterprise", scopes=["inference", "read", "keys"])
    with deployment.http(user.key) as http:
        first = http.get("/v1/keys").json()["data"][0]["id"]
        second = http.post("/v1/keys", json={"name": "second", "scopes": ["inference"]}).json()
    seed(deployment, user, first, "openai/gpt-4o", 4, 123_456_789_012)
    openai_fake.script("gpt-4o", Reply(input=20, output=6), Reply(input=100, output=50))
    openai_fake.script("gpt-4o-mini", Reply(input=1000, output=10))
    deployment.sdk(user.key).chat.completions.create(
        model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    deployment.sdk(second["key"]).chat.completions.create(
        model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    deployment.sdk(second["key"]).chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    return {"user": user, "first": first, "second": second["id"]}


def raw_records(deployment: Deployment, user_id: str) -> list[dict[str, Any]]:
    return deployment.rows("SELECT * FROM request_records WHERE user_id = :u", {"u": user_id})


def test_a_user_sees_spend_per_day_model_and_key(
    deployment: Deployment, traffic: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    user: Account = traffic["user"]
    records = raw_records(deployment, user.user_id)
    assert len(records) == 7
    today = datetime.now(UTC).date()
    expected = Query(today - timedelta(days=29), today, "day", ("key", "model"), user.user_id)
    with deployment.http(user.key) as http:
        # Before and after the rollup job: the same answer, equal to a recount of the raw records.
        for _ in range(2):
            body = http.get("/v1/usage/summary", params={"group_by": "model,key"}).json()
            assert body["object"] == "usage.summary" and body["group_by"] == ["key", "model"]
            assert decimal_rows(body["data"]) == recount(records, expected)
            total = sum(Decimal(r["cost_pico"]) for r in records) / Decimal(10**12)
            assert Decimal(body["totals"]["cost"]) == total and body["totals"]["requests"] == 7
            result = run_rollup(deployment, monkeypatch)
            assert result["rolled_through"] == (seed_day().date() + timedelta(days=1)).isoformat()

        # Hours of the last two days, by provider: from the raw records, the same recount.
        start = (today - timedelta(days=1)).isoformat()
        hourly = http.get(
            "/v1/usage/summary", params={"granularity": "hour", "start": start, "group_by": "provider"}
        ).json()
        hours = Query(today - timedelta(days=1), today, "hour", ("provider",), user.user_id)
        assert decimal_rows(hourly["data"]) == recount(records, hours)

        # CSV (by parameter or by Accept): the same rows, money as the same exact strings.
        for response in (
            http.get("/v1/usage/summary", params={"group_by": "model,key", "format": "csv"}),
            http.get("/v1/usage/summary", params={"group_by": "model,key"}, headers={"accept": "text/csv"}),
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/csv")
            assert "attachment" in response.headers["content-disposition"]
            lines = list(csv.DictReader(io.StringIO(response.text)))
            assert [(r["period"], r["key_id"], r["model"], r["cost"]) for r in lines] == [
                (r["period"], r["key_id"], r["model"], r["cost"]) for r in body["data"]
            ]
            assert [int(r["requests"]) for r in lines] == [r["requests"] for r in body["data"]]
            assert [r["latency_p95_ms"] for r in lines] == [str(r["latency_ms"]["p95"]) for r in body["data"]]


def test_activity_shows_requests_spend_top_models_and_keys(
    deployment: Deployment, traffic: dict[str, Any]
) -> None:
    user: Account = traffic["user"]
    records = raw_records(deployment, user.user_id)
    with deployment.http(user.key) as http:
        body = http.get("/v1/activity", params={"days": 7}).json()
    assert body["object"] == "activity" and body["days"] == 7
    assert body["requests"] == 7 and body["errors"] == 1
    assert Decimal(body["spend"]) == sum(Decimal(r["cost_pico"]) for r in records) / Decimal(10**12)
    assert [m["model"] for m in body["top_models"]] == ["openai/gpt-4o", "openai/gpt-4o-mini"]
    assert [m["requests"] for m in body["top_models"]] == [6, 1]
    keys = {k["id"]: k for k in body["keys"]}
    assert keys[traffic["first"]]["requests"] == 5 and keys[traffic["second"]]["requests"] == 2
    assert keys[traffic["second"]]["last_used_at"] is not None
    assert "key_hash" not in keys[traffic["first"]] and user.key not in str(body)
    assert sum(d["requests"] for d in body["daily"]) == 7


def test_bad_summary_input_is_a_clear_400_that_changes_nothing(
    deployment: Deployment, traffic: dict[str, Any]
) -> None:
    user: Account = traffic["user"]
    before = deployment.counts()
    bad = [
        ({"granularity": "week"}, "granularity"),
        ({"start": "2026-13-01"}, "start"),
        ({"start": "2026-12-06", "end": "2026-12-01"}, "start"),
        ({"start": "2020-01-01", "end": "2026-01-01"}, "end"),
        ({"granularity": "hour", "start": "2026-11-01", "end": "2026-11-30"}, "end"),
        ({"group_by": "user"}, "group_by"),  # a user sees their own usage only
        ({"format": "xml"}, "format"),
    ]
    with deployment.http(user.key) as http:
        for params, name in bad:
            error = assert_envelope(http.get("/v1/usage/summary", params=params), 400)
            assert error["param"] == name, (params, error)
        assert_envelope(http.get("/v1/activity", params={"days": 0}), 400)
        assert_envelope(http.get("/admin/analytics"), 403)
    with deployment.http(None) as http:
        assert_envelope(http.get("/v1/usage/summary"), 401)
        assert_envelope(http.get("/v1/rankings", params={"period": "year"}), 400)
    assert deployment.counts() == before


def test_admin_analytics_has_the_same_shape_across_users(
    deployment: Deployment, traffic: dict[str, Any]
) -> None:
    user: Account = traffic["user"]
    with deployment.http(user.key) as http:
        own = http.get("/v1/usage/summary", params={"group_by": "model"}).json()
    with deployment.http(ADMIN_KEY) as http:
        one = http.get("/admin/analytics", params={"group_by": "user,model", "user_id": user.user_id}).json()
        everyone = http.get("/admin/analytics", params={"group_by": "user"}).json()
        csv_text = http.get("/admin/analytics", params={"group_by": "user", "format": "csv"}).text
    assert set(one) == set(own)
    assert [{k: v for k, v in r.items() if k != "user_id"} for r in one["data"]] == own["data"]
    assert {r["user_id"] for r in one["data"]} == {user.user_id}
    mine = [r for r in everyone["data"] if r["user_id"] == user.user_id]
    assert sum(r["requests"] for r in mine) == 7
    assert everyone["totals"]["requests"] >= 7
    assert csv_text.splitlines()[0].startswith("period,user_id,requests,")


def test_rankings_are_public_cached_and_match_the_rollups(
    deployment: Deployment, traffic: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    mark = run_rollup(deployment, monkeypatch)["rolled_through"]
    with deployment.http(None) as http:
        response = http.get("/v1/rankings", params={"period": "day", "limit": 100})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=60"
    body = response.json()
    day = (datetime.fromisoformat(mark) - timedelta(days=1)).date().isoformat()
    assert (body["start"], body["end"]) == (day, day)
    rows = deployment.rows(
        "SELECT model, SUM(requests) AS requests, "
        "SUM(input_tokens + cache_read_tokens + cache_write_tokens + output_tokens) AS tokens "
        "FROM usage_daily WHERE day = :day GROUP BY model",
        {"day": day},
    )
    rolled = {r["model"]: (int(r["tokens"]), int(r["requests"])) for r in rows}
    assert {r["model"]: (r["tokens"], r["requests"]) for r in body["by_tokens"]} == rolled
    assert [r["rank"] for r in body["by_requests"]] == list(range(1, len(rolled) + 1))
    tokens = [r["tokens"] for r in body["by_tokens"]]
    assert tokens == sorted(tokens, reverse=True)
    assert all(set(r) == {"rank", "model", "tokens", "requests"} for r in body["by_tokens"])
    # The seeded traffic is counted: 4 requests of (1000+n) + 10 + 300 tokens.
    assert rolled["openai/gpt-4o"][0] >= sum(1000 + n + 310 for n in range(4))

    # Cached in the process: a change to the rollups shows only after the TTL (60 s).
    extra = {"day": day, "user": "usr_rankings_cache", "model": "openai/gpt-4o-mini"}
    deployment.rows(
        "INSERT INTO usage_daily (day, user_id, key_id, model, provider, requests, output_tokens) "
        "VALUES (:day, :user, '', :model, 'openai', 1000000, 1000000000)",
        extra,
    )
    try:
        with deployment.http(None) as http:
            again = http.get("/v1/rankings", params={"period": "day", "limit": 100}).json()
        assert again == body
    finally:
        deployment.rows("DELETE FROM usage_daily WHERE user_id = :user", extra)


def test_the_rollup_job_runs_on_the_operator_schedule_only(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRON_SECRET", raising=False)
    with deployment.http(SECRET) as http:
        assert_envelope(http.get("/internal/jobs/rollup"), 401)  # no secret configured: refused
    monkeypatch.setenv("CRON_SECRET", SECRET)
    with deployment.http("wrong-secret") as http:
        assert_envelope(http.get("/internal/jobs/rollup"), 401)


def test_lambda_schedule_entry_and_cli_roll_up_and_prune(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from functions import jobs
    from shared.store import open_database
    from tests.test_jobs import _call, _NoFake

    db_url = f"sqlite:///{tmp_path / 'rollup.db'}"
    settings = gateway_settings({"openai": _NoFake(), "anthropic": _NoFake(), "gemini": _NoFake()}, db_url)
    user = provision(settings, "rollup@example.com", credits=Decimal(1))
    old = datetime.now(UTC) - timedelta(days=40)

    async def insert() -> None:
        db = open_database(db_url)
        try:
            for n, moment in enumerate((old, old + timedelta(days=1), datetime.now(UTC) - timedelta(days=2))):
                await db.fetch(
                    INSERT,
                    {
                        "request_id": f"req_lambda{n}",
                        "user_id": user.user_id,
                        "key_id": None,
                        "model": "openai/gpt-4o",
                        "provider": "openai",
                        "status": "ok",
                        "http_status": 200,
                        "input_tokens": 1,
                        "cache_read_tokens": 0,
                        "cache_write_tokens": 0,
                        "output_tokens": 1,
                        "reasoning_tokens": 0,
                        "cost_pico": 7,
                        "latency_ms": 5,
                        "created_at": now_text(moment),
                    },
                )
        finally:
            await db.close()

    run_off_main_thread(insert)
    monkeypatch.setenv("GATEWAYZ_DATABASE_URL", db_url)
    monkeypatch.setenv("GATEWAYZ_KEY_SECRET", settings.key_secret or "")
    monkeypatch.setenv("GATEWAYZ_REQUEST_RETENTION_DAYS", "30")
    result = run_off_main_thread(lambda: _call(jobs.rollup_usage))
    assert result["pruned_records"] == 2  # the two records past 30 days, their days rolled up
    assert (
        result["rolled_days"] == 31
        and result["rolled_through"] == (old + timedelta(days=31)).date().isoformat()
    )

    # `gatewayz rollup --since D` reprocesses every day from D (never the pruned ones) in one run.
    from shared.cli import main

    capsys.readouterr()
    assert run_off_main_thread(lambda: _cli(main, ["rollup", "--since", "2026-02-30"])) == 2
    assert run_off_main_thread(lambda: _cli(main, ["rollup", "--since", old.date().isoformat()])) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["rolled_through"] == (datetime.now(UTC) - LAG).date().isoformat()
    assert printed["pruned_records"] == 0 and printed["rolled_days"] >= 9


async def _cli(main: Any, argv: list[str]) -> int:
    import asyncio

    return int(await asyncio.to_thread(main, argv))


def test_the_index_bench_still_runs() -> None:
    """bench/request_records_index.py (the measured cost of the rollup's index) keeps running."""
    import subprocess
    import sys

    from tests.services import postgres_url

    argv = ["--url", postgres_url(), "--rows", "100", "--block", "5", "--rounds", "1"]
    out = subprocess.run(
        [sys.executable, "-m", "bench.request_records_index", *argv],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "without index: median" in out and "with index: median" in out
