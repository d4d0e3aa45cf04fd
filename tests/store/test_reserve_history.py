"""A reserve's cost does not grow with the user's history (issue 20) on PostgreSQL: with autovacuum
off, every closed hold leaves a dead entry in the open-holds index, and the reserve must not
re-read them all on every call (the planner's bitmap scan does, once the table is large)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
from psycopg.pq import Escaping

from shared.billing import to_pico
from shared.billing.ledger import HOLD_TTL, Ledger, new_id, periods
from shared.billing.ledger_sql import RESERVE
from shared.store import now_text
from tests.store.support import migrated_postgres, new_user

HISTORY = 100_000  # closed holds of one user: where the planner had turned to a bitmap scan


def reserve_values(user_id: str) -> dict[str, object]:
    moment = datetime.now(UTC)
    return {
        "hold_id": new_id("hold"),
        "user_id": user_id,
        "key_id": None,
        "request_id": new_id("req"),
        "amount": to_pico(Decimal("0.01")),
        "expires_at": now_text(moment + HOLD_TTL),
        "now": now_text(moment),
        "limit_day": None,
        "limit_month": None,
        "limit_total": None,
        **periods(moment),
    }


async def pages_per_reserve(age: timedelta, calls: int = 3) -> list[int]:
    """Pages each of `calls` reserves reads (one new session: plans made on today's table), after
    HISTORY holds of one user, made `age` ago and closed, with autovacuum off."""
    async with migrated_postgres() as (url, db):
        user_id = await new_user(db, Decimal(100))
        await db.fetch("ALTER TABLE credit_holds SET (autovacuum_enabled = false)", {})
        made = datetime.now(UTC) - age
        await db.fetch(
            "INSERT INTO credit_holds (id, user_id, request_id, amount_pico, status, expires_at, created_at)"
            " SELECT 'hold_old' || g, :u, 'req_old' || g, 5, 'open', :exp, :made"
            " FROM generate_series(1, :n) g",
            {"u": user_id, "exp": now_text(made + HOLD_TTL), "made": now_text(made), "n": HISTORY},
        )
        await db.fetch("UPDATE credit_holds SET status = 'settled', closed_at = :now", {"now": now_text()})
        ledger = Ledger(db)  # installs the routine
        assert (
            await ledger.reserve(user_id=user_id, key_id=None, request_id=new_id("req"), amount=Decimal(1))
            is None
        )

        with psycopg.connect(url, autocommit=True) as conn:
            quote = Escaping(conn.pgconn).escape_literal
            pages = []
            for _ in range(calls):
                sql = b"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + RESERVE.call(
                    reserve_values(user_id), quote
                )
                plan = conn.execute(sql).fetchone()
                assert plan is not None
                top = (plan[0] if isinstance(plan[0], list) else json.loads(plan[0]))[0]["Plan"]
                pages.append(top["Shared Hit Blocks"] + top["Shared Read Blocks"])
            return pages


async def test_recent_closed_holds_are_read_once_not_on_every_reserve() -> None:
    """Holds closed within their 15 minutes still lie in the reserve's range: the first reserve
    meets their dead entries and marks them; the next ones skip them (a bitmap scan never would)."""
    pages = await pages_per_reserve(timedelta(0))
    assert pages[-1] < 100, pages  # 1,737 with a bitmap scan


async def test_old_closed_holds_cost_a_reserve_nothing() -> None:
    """Holds from before the last 15 minutes lie outside the reserve's range in the index (keyed by
    expiry): a reserve does not walk their entries."""
    pages = await pages_per_reserve(timedelta(days=1))
    assert pages[-1] < 40, pages  # 98 with the index keyed (user_id, key_id)
