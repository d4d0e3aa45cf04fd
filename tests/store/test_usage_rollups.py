"""Usage analytics over the store (issue 18), on SQLite and on the real PostgreSQL: after a seeded
set of request records, every summary — by day or hour, by any dimensions, for one user or all —
matches a recount from the raw records exactly (money as decimals), before the rollup job ran,
after it, and after a reprocess, which never double-counts; retention deletes only raw records of
days already rolled up, in bounded batches, and never the ledger.

The recount here is written independently of shared.analytics: Python sums over the seeded rows,
and percentiles as the nearest-rank sample mapped to its bucket's upper bound.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import combinations
from typing import Any

from shared.analytics.rollup import LAG, prune_records, roll_up, watermark
from shared.analytics.summary import Query, summarise
from shared.billing.ledger import new_id
from shared.store import Database, now_text
from shared.store.migrate import migrate, read_migrations
from shared.views.analytics import cell_view
from tests.store.support import new_key, new_user

PICO = Decimal(10) ** 12
BOUNDS = (100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
MODELS = ("openai/gpt-4o", "openai/gpt-4o-mini", "anthropic/claude-sonnet-4")
PROVIDERS = ("openai", "openrouter", None)
LATENCIES = (0, 37, 100, 101, 250, 480, 999, 1000, 2400, 7000, 29999, 60000, 60001, 95000)
TOKENS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
INSERT = """
INSERT INTO request_records (request_id, user_id, key_id, model, provider, endpoint, status, http_status,
    input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost_pico,
    latency_ms, created_at)
VALUES (:request_id, :user_id, :key_id, :model, :provider, 'chat', :status, :http_status,
    :input_tokens, :cache_read_tokens, :cache_write_tokens, :output_tokens, :reasoning_tokens, :cost_pico,
    :latency_ms, :created_at)
"""


class Seed:
    """Two users (one with two keys and keyless records), requests over the last `days` UTC days,
    at random times including both edges of each day."""

    def __init__(self, users: list[tuple[str, list[str | None]]], days: int, per_day: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.users = users
        self.now = datetime.now(UTC)
        self.today = self.now.date()
        self.first = self.today - timedelta(days=days - 1)
        self.rows: list[dict[str, Any]] = []
        for n in range(days):
            day = self.first + timedelta(days=n)
            for i in range(per_day):
                self.rows.append(self.record(day, edge=i))

    def record(self, day: date, edge: int = -1) -> dict[str, Any]:
        rng = self.rng
        user_id, keys = rng.choice(self.users)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        if edge == 0:
            moment = start
        elif edge == 1:
            moment = start + timedelta(days=1) - timedelta(microseconds=1)
        else:
            moment = start + timedelta(seconds=rng.randrange(86400), microseconds=rng.randrange(10**6))
        if day == self.today:  # today's records are in the past (not after the rollup's "now")
            moment = min(moment, self.now - timedelta(seconds=1))
        status = rng.choice(("ok", "ok", "ok", "ok", "error", "cancelled"))
        return {
            "request_id": new_id("req"),
            "user_id": user_id,
            "key_id": rng.choice(keys),
            "model": rng.choice(MODELS),
            "provider": rng.choice(PROVIDERS),
            "status": status,
            "http_status": 200 if status == "ok" else 502,
            **{name: rng.randrange(0, 5000) for name in TOKENS},
            # Sub-cent costs with every picodollar digit set: a float sum would lose them.
            "cost_pico": rng.randrange(0, 10**11),
            "latency_ms": rng.choice(LATENCIES),
            "created_at": now_text(moment),
        }

    async def insert(self, db: Database, rows: Iterable[dict[str, Any]] | None = None) -> None:
        await db.transaction([(INSERT, row) for row in (self.rows if rows is None else rows)])


async def seeded(db: Database, days: int = 9, per_day: int = 14, seed: int = 18) -> Seed:
    await migrate(db, read_migrations())
    alice, bob = await new_user(db, Decimal(5)), await new_user(db)
    users: list[tuple[str, list[str | None]]] = [
        (alice, [await new_key(db, alice), await new_key(db, alice), None]),
        (bob, [await new_key(db, bob)]),
    ]
    data = Seed(users, days, per_day, seed)
    await data.insert(db)
    return data


def bucket_bound(latencies: list[int], q: float) -> int:
    ordered = sorted(latencies)
    sample = ordered[max(1, math.ceil(q * len(ordered))) - 1]
    return next((b for b in BOUNDS if sample <= b), ordered[-1])


def recount(rows: list[dict[str, Any]], q: Query) -> list[dict[str, Any]]:
    """The summary's rows, recomputed from the raw records in Python."""
    fields = {"user": "user_id", "key": "key_id", "model": "model", "provider": "provider"}
    cells: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        day = date.fromisoformat(row["created_at"][:10])
        if (q.user_id is not None and row["user_id"] != q.user_id) or not q.start <= day <= q.end:
            continue
        period = row["created_at"][:10] if q.granularity == "day" else row["created_at"][:13] + ":00:00Z"
        series = tuple(row[fields[d]] for d in q.group_by)
        cells.setdefault((period, series), []).append(row)
    out = []
    for (period, series), group in sorted(
        cells.items(), key=lambda kv: (kv[0][0], [s or "" for s in kv[0][1]])
    ):
        latencies = [r["latency_ms"] for r in group]
        out.append(
            {
                "period": period,
                **{fields[d]: value for d, value in zip(q.group_by, series, strict=True)},
                "requests": len(group),
                "errors": sum(r["status"] != "ok" for r in group),
                **{name: sum(r[name] for r in group) for name in TOKENS},
                "cost": Decimal(sum(r["cost_pico"] for r in group)) / PICO,
                "latency_ms": {
                    "p50": bucket_bound(latencies, 0.5),
                    "p95": bucket_bound(latencies, 0.95),
                    "p99": bucket_bound(latencies, 0.99),
                    "max": max(latencies),
                },
            }
        )
    return out


async def summary_rows(db: Database, q: Query) -> list[dict[str, Any]]:
    rows = [cell_view(cell, q.group_by) for cell in await summarise(db, q)]
    for row in rows:
        row["cost"] = Decimal(row["cost"])  # exact: compared as decimals, never floats
    return rows


def queries(data: Seed, hourly: bool = True) -> list[Query]:
    """Every grouping for each user and for everyone, over the whole range, part of it, and by hour."""
    alice = data.users[0][0]
    dims = ("user", "key", "model", "provider")
    groupings = [g for n in range(len(dims) + 1) for g in combinations(dims, n)]
    out = []
    for group_by in groupings:
        for user_id in (alice, None):
            if user_id is not None and "user" in group_by:
                continue
            out.append(Query(data.first, data.today, "day", group_by, user_id))
    yesterday = data.today - timedelta(days=1)
    out += [
        Query(data.first + timedelta(days=2), yesterday, "day", ("model",), alice),
        Query(data.first - timedelta(days=5), data.first + timedelta(days=1), "day", ("key",), None),
    ]
    if hourly:  # hours are read from the raw records (within their retention)
        out.append(Query(yesterday, data.today, "hour", ("model",), alice))
        out.append(Query(yesterday, yesterday, "hour", ("user", "provider"), None))
    return out


async def assert_summaries_match(
    db: Database, data: Seed, rows: list[dict[str, Any]] | None = None, *, hourly: bool = True
) -> None:
    for q in queries(data, hourly):
        assert await summary_rows(db, q) == recount(data.rows if rows is None else rows, q), q


async def test_every_summary_matches_a_recount_from_raw_records(fresh_db: Database) -> None:
    data = await seeded(fresh_db)
    # Before the job ever ran: every day is read from the raw records.
    assert await watermark(fresh_db) is None
    await assert_summaries_match(fresh_db, data)
    # After it: complete days from the rollups, today (not complete) from the raw records.
    result = await roll_up(fresh_db, now=data.now)
    complete_before = (data.now - LAG).date()
    assert result.rolled_through == complete_before.isoformat()
    assert result.days[0] == data.first.isoformat() and result.days[-1] < data.today.isoformat()
    await assert_summaries_match(fresh_db, data)
    # A month reads at most one rollup row per day per series.
    alice = data.users[0][0]
    per_series = await fresh_db.fetch(
        "SELECT model, COUNT(DISTINCT day) AS days FROM usage_daily WHERE user_id = :u GROUP BY model",
        {"u": alice},
    )
    assert per_series and all(int(r["days"]) <= 31 for r in per_series)


async def test_rolled_up_days_are_read_from_the_rollups(fresh_db: Database) -> None:
    data = await seeded(fresh_db, days=5, per_day=8, seed=7)
    await roll_up(fresh_db, now=data.now)
    mark = await watermark(fresh_db)
    assert mark is not None
    # Remove the raw records of the rolled days behind the job's back: summaries must not change.
    mark_start = now_text(datetime(mark.year, mark.month, mark.day, tzinfo=UTC))
    await fresh_db.fetch("DELETE FROM request_records WHERE created_at < :m", {"m": mark_start})
    await assert_summaries_match(fresh_db, data, hourly=False)


async def test_rollups_survive_a_reprocess_without_double_counting(fresh_db: Database) -> None:
    data = await seeded(fresh_db, days=6, per_day=10, seed=3)
    snapshot = "SELECT * FROM usage_daily ORDER BY day, user_id, key_id, model, provider"
    first = await roll_up(fresh_db, now=data.now)
    rolled = await fresh_db.fetch(snapshot)
    assert rolled
    again = await roll_up(fresh_db, now=data.now)  # the next run re-rolls the day before the mark
    assert again.days == [first.days[-1]]
    assert await fresh_db.fetch(snapshot) == rolled
    everything = await roll_up(fresh_db, now=data.now, since=data.first)  # a full reprocess
    assert everything.days == first.days
    assert await fresh_db.fetch(snapshot) == rolled
    await assert_summaries_match(fresh_db, data)

    # A record that settled late into a rolled day shows once its day is reprocessed, exactly once.
    late_day = data.first + timedelta(days=1)
    late = data.record(late_day)
    await data.insert(fresh_db, [late])
    await roll_up(fresh_db, now=data.now, since=late_day)
    await roll_up(fresh_db, now=data.now, since=late_day)
    await assert_summaries_match(fresh_db, data, [*data.rows, late])


async def test_retention_prunes_only_rolled_up_days_in_bounded_batches(fresh_db: Database) -> None:
    data = await seeded(fresh_db, days=8, per_day=6, seed=11)
    alice = data.users[0][0]
    ledger = await fresh_db.fetch("SELECT * FROM credit_transactions WHERE user_id = :u", {"u": alice})
    assert ledger  # the grant of `seeded`
    # Nothing is rolled up yet: nothing may go, however old.
    assert await prune_records(fresh_db, 2, now=data.now) == 0
    # Three days rolled up: only the records of the first two may go (the third is re-rolled by
    # the next run), though five days are past the retention.
    await roll_up(fresh_db, now=data.now, max_days=3)
    first_two = [r for r in data.rows if r["created_at"][:10] < (data.first + timedelta(days=2)).isoformat()]
    assert await prune_records(fresh_db, 2, now=data.now) == len(first_two)
    await assert_summaries_match(fresh_db, data)
    # A reprocess from the first day leaves the pruned days' rollups alone (they are all that is left).
    assert (await roll_up(fresh_db, now=data.now, since=data.first)).days[0] == (
        data.first + timedelta(days=2)
    ).isoformat()
    await assert_summaries_match(fresh_db, data)
    # Everything rolled up: records before the retention go, at most batch × max_batches a run.
    await roll_up(fresh_db, now=data.now)
    cutoff = (data.today - timedelta(days=2)).isoformat()
    old = [
        r for r in data.rows if cutoff > r["created_at"][:10] >= (data.first + timedelta(days=2)).isoformat()
    ]
    assert len(old) > 10
    runs = []
    while True:
        runs.append(await prune_records(fresh_db, 2, now=data.now, batch=4, max_batches=2))
        if runs[-1] < 8:
            break
    assert all(n <= 8 for n in runs) and sum(runs) == len(old) and runs[0] == 8
    left = await fresh_db.fetch("SELECT MIN(created_at) AS first, COUNT(*) AS n FROM request_records")
    assert str(left[0]["first"])[:10] >= cutoff
    assert int(left[0]["n"]) == len(data.rows) - len(first_two) - len(old)
    # The summaries of pruned days come from the rollups, whole; the ledger is untouched.
    await assert_summaries_match(fresh_db, data)
    assert (
        await fresh_db.fetch("SELECT * FROM credit_transactions WHERE user_id = :u", {"u": alice}) == ledger
    )
