"""Closed-hold retention (issue 20) on SQLite and PostgreSQL: holds closed longer ago than the
retention are deleted in bounded batches; open holds, recent holds, the ledger, balances and
request records are never touched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from shared.billing import to_pico
from shared.billing.ledger import Ledger, RequestRecord, new_id
from shared.billing.retention import id_bound, prune_closed_holds
from shared.store import Database
from shared.store.migrate import migrate, read_migrations
from tests.store.support import assert_ledger_consistent, new_user

D = Decimal
WEEK = timedelta(days=7)


def record(user_id: str, request_id: str) -> RequestRecord:
    return RequestRecord(
        request_id=request_id, user_id=user_id, key_id=None, model="openai/gpt-4o", endpoint="chat"
    )


async def count(db: Database, sql: str, **params: object) -> int:
    row = await db.fetch_one(sql, params)
    assert row is not None
    return int(next(iter(row.values())))


async def paid_requests(db: Database, user_id: str, n: int) -> list[str]:
    """n requests through the real ledger: reserve, then settle (odd) or release (even)."""
    ledger = Ledger(db)
    ids = []
    for i in range(n):
        request_id = new_id("req")
        assert (
            await ledger.reserve(user_id=user_id, key_id=None, request_id=request_id, amount=D("0.5")) is None
        )
        if i % 2:
            await ledger.settle(record(user_id, request_id), D("0.125"))
        else:
            await ledger.release(record(user_id, request_id))
        ids.append(request_id)
    return ids


async def test_closed_holds_past_retention_go_and_everything_else_stays(fresh_db: Database) -> None:
    db = fresh_db
    await migrate(db, read_migrations())
    user_id = await new_user(db, D(10))
    await paid_requests(db, user_id, 4)
    in_flight = new_id("req")
    assert await Ledger(db).reserve(user_id=user_id, key_id=None, request_id=in_flight, amount=D(1)) is None
    ledger_rows = await count(db, "SELECT COUNT(*) FROM credit_transactions")
    records = await count(db, "SELECT COUNT(*) FROM request_records")

    # Within the retention: nothing goes.
    kept = await prune_closed_holds(db, WEEK)
    assert (kept.pruned_holds, kept.done) == (0, True)
    assert await count(db, "SELECT COUNT(*) FROM credit_holds") == 5

    # Eight days on, the four closed holds are past a week's retention; the open one stays.
    later = datetime.now(UTC) + timedelta(days=8)
    pruned = await prune_closed_holds(db, WEEK, now=later)
    assert (pruned.pruned_holds, pruned.done) == (4, True)
    left = await db.fetch("SELECT request_id, status FROM credit_holds")
    assert left == [{"request_id": in_flight, "status": "open"}]
    # The money history is kept: the ledger, the records, the balance and what is held.
    assert await count(db, "SELECT COUNT(*) FROM credit_transactions") == ledger_rows
    assert await count(db, "SELECT COUNT(*) FROM request_records") == records
    assert await Ledger(db).balance(user_id) == (D(10) - 2 * D("0.125"), D(1))
    assert await assert_ledger_consistent(db, user_id) == to_pico(D(10) - 2 * D("0.125"))


async def test_a_run_stops_at_its_bound_and_the_next_one_carries_on(fresh_db: Database) -> None:
    db = fresh_db
    await migrate(db, read_migrations())
    user_id = await new_user(db, D(10))
    await paid_requests(db, user_id, 5)
    later = datetime.now(UTC) + timedelta(days=8)

    first = await prune_closed_holds(db, WEEK, batch=2, max_batches=2, now=later)
    assert (first.pruned_holds, first.batches, first.done) == (4, 2, False)
    second = await prune_closed_holds(db, WEEK, batch=2, max_batches=2, now=later)
    assert (second.pruned_holds, second.batches, second.done) == (1, 1, True)
    assert await count(db, "SELECT COUNT(*) FROM credit_holds") == 0


async def test_the_id_bound_orders_with_the_ids_the_ledger_makes(fresh_db: Database) -> None:
    """The batch walks the primary key: an id made at a moment sorts at or above that moment's
    bound and below a later moment's, in the database's own ordering."""
    db = fresh_db
    await migrate(db, read_migrations())
    before = datetime.now(UTC) - timedelta(milliseconds=5)
    made = new_id("hold")
    after = datetime.now(UTC) + timedelta(milliseconds=5)
    row = await db.fetch_one(
        "SELECT CAST(:low < :id AS INTEGER) AS above, CAST(:id < :high AS INTEGER) AS below",
        {"low": id_bound(before), "id": made, "high": id_bound(after)},
    )
    assert row == {"above": 1, "below": 1}
