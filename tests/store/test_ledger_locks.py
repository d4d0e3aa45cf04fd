"""The ledger's locks on PostgreSQL (SQLite serialises every writer): a reserve never waits for a
settlement's commit, a claw-back waits for a reserve in progress and sees its hold, and reserves
of one user take turns whatever the interleaving. Each test forces its interleaving with a
transaction of its own on the real server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from shared.billing import to_pico
from shared.billing.ledger import HOLD_TTL, Ledger, ReserveRefusal, new_id
from shared.billing.ledger_sql import LOCK_USER, RESERVE_LOCK
from shared.store import now_text
from tests.store.support import balance, migrated_postgres, new_user

D = Decimal


async def test_a_reserve_does_not_wait_for_a_settlement_holding_the_users_row() -> None:
    """PostgreSQL (SQLite serialises every writer): a settlement holds the user's row until its
    commit is on disk; a reserve of the same user must not queue behind it — it sees the
    settlement's hold, the worst case, meanwhile."""
    import psycopg

    async with migrated_postgres() as (url, db):
        user_id = await new_user(db, D(10))
        ledger = Ledger(db)
        assert (
            await ledger.reserve(user_id=user_id, key_id=None, request_id=new_id("req"), amount=D(4)) is None
        )
        with psycopg.connect(url, autocommit=False) as settling:
            settling.execute(LOCK_USER.replace(":user_id", "%s"), (user_id,))  # a settlement in flight
            second = ledger.reserve(user_id=user_id, key_id=None, request_id=new_id("req"), amount=D(5))
            assert await asyncio.wait_for(second, 5) is None
            third = ledger.reserve(user_id=user_id, key_id=None, request_id=new_id("req"), amount=D(2))
            refusal = await asyncio.wait_for(third, 5)  # 10 - 4 - 5 = 1 left: refused, not queued
            assert refusal is not None and refusal.reason == "insufficient_credits"
            settling.rollback()


async def test_a_claw_back_waits_for_a_reserve_in_progress_and_sees_its_hold() -> None:
    """PostgreSQL (SQLite serialises every writer): reserves of a user take turns on a lock; a
    claw-back takes it too, so that a hold a reserve is committing counts against it. Here a
    transaction plays the reserve: it holds that lock, and commits its hold while the claw-back
    waits; the claw-back must then refuse what the hold now reserves."""
    import psycopg

    async with migrated_postgres() as (url, db):
        user_id = await new_user(db, D(10))
        ledger = Ledger(db)
        with psycopg.connect(url, autocommit=False) as reserving:
            reserving.execute(RESERVE_LOCK.replace(":user_id", "%s"), (user_id,))
            claw = asyncio.ensure_future(
                ledger.change_balance(user_id, D(-10), type="adjustment", description="x", actor_type="cli")
            )
            await asyncio.sleep(0.3)
            assert not claw.done()  # waiting for the reserve in progress
            reserving.execute(
                "INSERT INTO credit_holds (id, user_id, key_id, request_id, amount_pico, status, expires_at, "
                "created_at) VALUES (%s, %s, NULL, %s, %s, 'open', %s, %s)",
                (
                    new_id("hold"),
                    user_id,
                    new_id("req"),
                    to_pico(D(4)),
                    now_text(datetime.now(UTC) + HOLD_TTL),
                    now_text(),
                ),
            )
            reserving.commit()
            result = await asyncio.wait_for(claw, 5)
        assert not result.applied and result.balance == D(10)
        assert (
            await ledger.change_balance(user_id, D(-6), type="adjustment", description="x", actor_type="cli")
        ).applied
        assert await balance(db, user_id) == (D(4), D(4))


async def test_reserves_of_one_user_take_turns_whatever_the_interleaving() -> None:
    """PostgreSQL (SQLite serialises every writer). Two reserves of one user that each fit alone
    must not both be held. Without the lock they take turns on, the second could check the balance
    before the first's hold is committed; a 50-way race shows that only sometimes, so here the
    interleaving is forced: a transaction of the test holds uncommitted holds with the request ids
    of both reserves, so that each one, once past its check, waits on that unique index. The first
    reserve is let in, then the second; then the test's transaction rolls back."""
    import psycopg

    async with migrated_postgres() as (url, db):
        user_id = await new_user(db, D(10))
        ledger = Ledger(db)
        first, second = new_id("req"), new_id("req")
        expires = now_text(datetime.now(UTC) + HOLD_TTL)

        def waiting_on(request_id: str) -> bool:
            with psycopg.connect(url, autocommit=True) as probe:
                row = probe.execute(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                    (f"%{request_id}%",),
                ).fetchone()
            return bool(row and row[0])

        async def until_waiting(request_id: str) -> None:
            for _ in range(500):
                if waiting_on(request_id):
                    return
                await asyncio.sleep(0.01)
            raise AssertionError(f"the reserve of {request_id} never waited")

        with psycopg.connect(url, autocommit=False) as blocker:
            for request_id in (first, second):
                blocker.execute(
                    "INSERT INTO credit_holds (id, user_id, key_id, request_id, amount_pico, status, "
                    "expires_at, created_at) VALUES (%s, %s, NULL, %s, 0, 'released', %s, %s)",
                    (new_id("hold"), user_id, request_id, expires, now_text()),
                )
            one = asyncio.ensure_future(
                ledger.reserve(user_id=user_id, key_id=None, request_id=first, amount=D(10))
            )
            await until_waiting(first)  # past its check, holding the user's reserve lock
            two = asyncio.ensure_future(
                ledger.reserve(user_id=user_id, key_id=None, request_id=second, amount=D(10))
            )
            await until_waiting(second)  # on that lock — or, without it, past its own check
            blocker.rollback()
            results = await asyncio.wait_for(asyncio.gather(one, two), 10)
        assert results[0] is None
        assert results[1] == ReserveRefusal("insufficient_credits", D(0))
        assert await balance(db, user_id) == (D(10), D(10))
