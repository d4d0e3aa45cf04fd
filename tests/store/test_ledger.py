"""The credit ledger (SPEC §4) on SQLite and PostgreSQL: grants and adjustments, idempotency,
reserve → settle/release, hold expiry and the reaper, and the invariants: the balance always equals
the sum of the ledger and never goes below zero. Every amount is an exact Decimal. Key spend limits
are in test_key_spend.py, the locks on PostgreSQL in test_ledger_locks.py; the helpers in support.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from shared.billing import to_pico
from shared.billing.ledger import (
    HOLD_TTL,
    Ledger,
    ReserveRefusal,
    new_id,
    periods,
)
from shared.store import Database, now_text
from shared.store.migrate import migrate, read_migrations
from tests.store.support import (
    assert_ledger_consistent,
    balance,
    credit_rows,
    hold_of,
    new_key,
    new_user,
    record,
    rows,
)

D = Decimal


# --- grants and adjustments ----------------------------------------------------------------------


async def test_grant_writes_one_row_the_balance_and_an_audit_entry(db: Database) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db)
    result = await ledger.change_balance(
        user_id, D("12.345678901234"), type="grant", description="welcome", actor_type="cli"
    )
    assert result.applied and result.transaction_id is not None
    assert result.balance == D("12.345678901234")
    assert await balance(db, user_id) == (D("12.345678901234"), D(0))
    assert await credit_rows(db, user_id) == [
        {
            "id": result.transaction_id,
            "amount_pico": 12_345_678_901_234,
            "type": "grant",
            "balance_after_pico": 12_345_678_901_234,
            "request_id": None,
            "key_id": None,
            "idempotency_key": None,
            "description": "welcome",
        }
    ]
    audit = await rows(
        db, "SELECT actor_type, action, target_id FROM audit_log WHERE target_id = :u", u=user_id
    )
    assert audit == [{"actor_type": "cli", "action": "credits.grant", "target_id": user_id}]
    assert await assert_ledger_consistent(db, user_id) == 12_345_678_901_234


async def test_large_balances_stay_exact(db: Database) -> None:
    user_id = await new_user(db, D("9000000.000000000001"))  # 9e18 + 1 picodollars: BIGINT, not float
    await Ledger(db).change_balance(
        user_id, D("-0.000000000002"), type="adjustment", description="x", actor_type="cli"
    )
    assert await balance(db, user_id) == (D("8999999.999999999999"), D(0))
    assert await assert_ledger_consistent(db, user_id) == 8_999_999_999_999_999_999


async def test_negative_adjustment_applies_only_while_the_balance_covers_it(db: Database) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db, D(10))
    taken = await ledger.change_balance(
        user_id, D("-3.25"), type="adjustment", description="fix", actor_type="cli"
    )
    assert taken.applied and taken.balance == D("6.75")

    before = await credit_rows(db, user_id)
    refused = await ledger.change_balance(
        user_id, D("-6.750000000001"), type="adjustment", description="too much", actor_type="cli"
    )
    assert refused == type(refused)(applied=False, balance=D("6.75"), transaction_id=None)
    assert await credit_rows(db, user_id) == before  # nothing written
    actions = await rows(
        db, "SELECT action FROM audit_log WHERE target_id = :u ORDER BY created_at", u=user_id
    )
    assert [a["action"] for a in actions] == [
        "credits.grant",
        "credits.adjustment",
    ]  # no audit of the refusal

    exact = await ledger.change_balance(
        user_id, D("-6.75"), type="adjustment", description="all", actor_type="cli"
    )
    assert exact.applied and exact.balance == D(0)
    assert await assert_ledger_consistent(db, user_id) == 0


async def test_unknown_user_is_a_lookup_error(db: Database) -> None:
    with pytest.raises(LookupError):
        await Ledger(db).change_balance("usr_missing", D(1), type="grant", description="x", actor_type="cli")


async def test_a_replayed_grant_changes_nothing_and_returns_the_same_transaction(db: Database) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db, D(1))
    key = new_id("idem")
    first = await ledger.change_balance(
        user_id, D("5.5"), type="grant", description="promo", actor_type="cli", idempotency_key=key
    )
    assert first.applied and first.balance == D("6.5")
    replay = await ledger.change_balance(
        user_id, D("5.5"), type="grant", description="promo", actor_type="cli", idempotency_key=key
    )
    assert replay.applied is False
    assert replay.transaction_id == first.transaction_id
    assert replay.balance == D("6.5")
    # Even with a different amount, a replayed key is the same grant.
    other = await ledger.change_balance(
        user_id, D(100), type="grant", description="promo", actor_type="cli", idempotency_key=key
    )
    assert (other.applied, other.transaction_id, other.balance) == (False, first.transaction_id, D("6.5"))
    assert len(await credit_rows(db, user_id)) == 2
    assert len(await rows(db, "SELECT id FROM audit_log WHERE target_id = :u", u=user_id)) == 2
    assert await assert_ledger_consistent(db, user_id) == to_pico(D("6.5"))


async def test_concurrent_replays_of_one_grant_apply_once(db: Database) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db)
    key = new_id("idem")
    results = await asyncio.gather(
        *(
            ledger.change_balance(
                user_id, D(2), type="grant", description="x", actor_type="cli", idempotency_key=key
            )
            for _ in range(8)
        )
    )
    assert sum(r.applied for r in results) == 1
    assert len({r.transaction_id for r in results}) == 1
    assert await balance(db, user_id) == (D(2), D(0))
    assert await assert_ledger_consistent(db, user_id) == to_pico(D(2))


# --- reserve -------------------------------------------------------------------------------------


async def test_reserve_succeeds_only_while_balance_minus_open_holds_covers_it(db: Database) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db, D(1))
    r1, r2, r3 = new_id("req"), new_id("req"), new_id("req")
    assert await ledger.reserve(user_id=user_id, key_id=None, request_id=r1, amount=D("0.6")) is None
    refusal = await ledger.reserve(user_id=user_id, key_id=None, request_id=r2, amount=D("0.400000000001"))
    assert refusal == ReserveRefusal("insufficient_credits", D("0.4"))
    assert await hold_of(db, r2) is None
    assert await ledger.reserve(user_id=user_id, key_id=None, request_id=r3, amount=D("0.4")) is None
    assert await balance(db, user_id) == (D(1), D(1))
    assert await ledger.reserve(
        user_id=user_id, key_id=None, request_id=new_id("req"), amount=D("0.000000000001")
    ) == (ReserveRefusal("insufficient_credits", D(0)))
    # Releasing a hold makes its amount available again.
    await ledger.release(record(user_id, None, r1, status="error", http_status=502))
    assert await balance(db, user_id) == (D(1), D("0.4"))
    assert await ledger.reserve(user_id=user_id, key_id=None, request_id=r2, amount=D("0.6")) is None
    assert await assert_ledger_consistent(db, user_id) == to_pico(D(1))  # holds never touch the balance


async def test_reserve_refuses_a_suspended_or_unknown_user(db: Database) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db, D(5))
    await db.fetch("UPDATE users SET status = 'suspended' WHERE id = :u", {"u": user_id})
    refusal = await ledger.reserve(user_id=user_id, key_id=None, request_id=new_id("req"), amount=D(1))
    assert refusal == ReserveRefusal("inactive", D(5))
    missing = await ledger.reserve(user_id="usr_missing", key_id=None, request_id=new_id("req"), amount=D(1))
    assert missing is not None and missing.reason == "no_user"


async def test_concurrent_reserves_never_overspend(db: Database) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db, D("10"))
    results = await asyncio.gather(
        *(
            ledger.reserve(user_id=user_id, key_id=None, request_id=new_id("req"), amount=D(1))
            for _ in range(30)
        )
    )
    assert sum(r is None for r in results) == 10
    assert all(r is None or r.reason == "insufficient_credits" for r in results)
    assert await balance(db, user_id) == (D(10), D(10))


# --- settle and release --------------------------------------------------------------------------


async def test_settle_charges_once_closes_the_hold_counts_spend_and_records(db: Database) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db, D(10))
    key_id = await new_key(db, user_id)
    request_id = new_id("req")
    assert await ledger.reserve(user_id=user_id, key_id=key_id, request_id=request_id, amount=D(2)) is None
    assert await balance(db, user_id) == (D(10), D(2))

    rec = record(user_id, key_id, request_id, reasoning_tokens=5, latency_ms=321)
    await ledger.settle(rec, D("0.000123456789"))
    assert await balance(db, user_id) == (D("9.999876543211"), D(0))
    hold = await hold_of(db, request_id)
    assert hold is not None and hold["status"] == "settled" and hold["closed_at"] is not None
    usage = [r for r in await credit_rows(db, user_id) if r["type"] == "usage"]
    assert len(usage) == 1
    assert usage[0]["amount_pico"] == -123_456_789
    assert usage[0]["balance_after_pico"] == 9_999_876_543_211
    assert (usage[0]["request_id"], usage[0]["key_id"]) == (request_id, key_id)
    assert usage[0]["description"] == "openai/gpt-4o via openai"

    spend = await rows(
        db, "SELECT period, amount_pico FROM key_spend WHERE key_id = :k ORDER BY period", k=key_id
    )
    assert {r["period"]: r["amount_pico"] for r in spend} == {
        p: 123_456_789 for p in periods(datetime.now(UTC)).values()
    }
    records = await rows(db, "SELECT * FROM request_records WHERE request_id = :r", r=request_id)
    assert len(records) == 1
    got = records[0]
    assert (got["user_id"], got["key_id"], got["model"], got["provider"], got["endpoint"]) == (
        user_id,
        key_id,
        "openai/gpt-4o",
        "openai",
        "chat",
    )
    assert (got["status"], got["http_status"], got["cost_pico"], got["latency_ms"]) == (
        "ok",
        200,
        123_456_789,
        321,
    )
    assert (got["input_tokens"], got["cache_read_tokens"], got["output_tokens"], got["reasoning_tokens"]) == (
        120,
        30,
        45,
        5,
    )
    assert not got["estimated"] and not got["byok"]
    touched = await db.fetch_one("SELECT last_used_at FROM api_keys WHERE id = :k", {"k": key_id})
    assert touched is not None and touched["last_used_at"] is not None

    # Settling the same request again (a retry, a duplicate delivery) changes nothing at all.
    await ledger.settle(record(user_id, key_id, request_id, output_tokens=9999), D(5))
    assert await balance(db, user_id) == (D("9.999876543211"), D(0))
    assert len([r for r in await credit_rows(db, user_id) if r["type"] == "usage"]) == 1
    spend_again = await rows(
        db, "SELECT period, amount_pico FROM key_spend WHERE key_id = :k ORDER BY period", k=key_id
    )
    assert spend_again == spend
    again = await rows(
        db, "SELECT output_tokens, cost_pico FROM request_records WHERE request_id = :r", r=request_id
    )
    assert again == [{"output_tokens": 45, "cost_pico": 123_456_789}]
    assert await assert_ledger_consistent(db, user_id) == 9_999_876_543_211


async def test_concurrent_settlements_of_one_request_charge_once(db: Database) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db, D(3))
    request_id = new_id("req")
    assert await ledger.reserve(user_id=user_id, key_id=None, request_id=request_id, amount=D(1)) is None
    await asyncio.gather(*(ledger.settle(record(user_id, None, request_id), D("0.25")) for _ in range(6)))
    assert await balance(db, user_id) == (D("2.75"), D(0))
    assert len([r for r in await credit_rows(db, user_id) if r["type"] == "usage"]) == 1
    assert await assert_ledger_consistent(db, user_id) == to_pico(D("2.75"))


async def test_settle_without_a_key_counts_no_spend(db: Database) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db, D(1))
    request_id = new_id("req")
    await ledger.settle(record(user_id, None, request_id), D("0.5"))
    assert await balance(db, user_id) == (D("0.5"), D(0))
    assert await rows(db, "SELECT cost_pico FROM request_records WHERE request_id = :r", r=request_id) == [
        {"cost_pico": 500_000_000_000}
    ]


async def test_release_charges_nothing_and_records_the_failure(db: Database) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db, D(1))
    key_id = await new_key(db, user_id)
    request_id = new_id("req")
    assert (
        await ledger.reserve(user_id=user_id, key_id=key_id, request_id=request_id, amount=D("0.9")) is None
    )
    await ledger.release(record(user_id, key_id, request_id, status="error", http_status=503, input_tokens=0))
    assert await balance(db, user_id) == (D(1), D(0))
    hold = await hold_of(db, request_id)
    assert hold is not None and hold["status"] == "released"
    assert [r["type"] for r in await credit_rows(db, user_id)] == ["grant"]
    assert await rows(db, "SELECT amount_pico FROM key_spend WHERE key_id = :k", k=key_id) == []
    assert await rows(
        db, "SELECT status, http_status, cost_pico FROM request_records WHERE request_id = :r", r=request_id
    ) == [{"status": "error", "http_status": 503, "cost_pico": 0}]
    # A settlement after the release (a late duplicate) still charges exactly once.
    await ledger.settle(record(user_id, key_id, request_id), D("0.1"))
    assert await balance(db, user_id) == (D("0.9"), D(0))
    assert await assert_ledger_consistent(db, user_id) == to_pico(D("0.9"))


async def test_a_free_request_writes_no_ledger_row(db: Database) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db, D(1))
    request_id = new_id("req")
    await ledger.settle(record(user_id, None, request_id, model="openai/gpt-oss-20b:free"), D(0))
    assert [r["type"] for r in await credit_rows(db, user_id)] == ["grant"]
    assert await rows(db, "SELECT cost_pico FROM request_records WHERE request_id = :r", r=request_id) == [
        {"cost_pico": 0}
    ]


async def test_the_balance_never_goes_negative_a_bigger_cost_is_capped(db: Database) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db, D("1.5"))
    key_id = await new_key(db, user_id)
    request_id = new_id("req")
    assert (
        await ledger.reserve(user_id=user_id, key_id=key_id, request_id=request_id, amount=D("1.5")) is None
    )
    await ledger.settle(record(user_id, key_id, request_id), D("4.75"))  # the upstream overran the estimate
    assert await balance(db, user_id) == (D(0), D(0))
    usage = [r for r in await credit_rows(db, user_id) if r["type"] == "usage"]
    assert [(r["amount_pico"], r["balance_after_pico"]) for r in usage] == [(-1_500_000_000_000, 0)]
    assert await rows(db, "SELECT cost_pico FROM request_records WHERE request_id = :r", r=request_id) == [
        {"cost_pico": 1_500_000_000_000}
    ]
    total = await db.fetch_one(
        "SELECT amount_pico FROM key_spend WHERE key_id = :k AND period = 'total'", {"k": key_id}
    )
    assert total == {"amount_pico": 1_500_000_000_000}
    # At zero, a further settlement charges nothing (its uncollectable cost is a zero-amount row).
    other = new_id("req")
    await ledger.settle(record(user_id, key_id, other), D(1))
    assert await balance(db, user_id) == (D(0), D(0))
    late = [r for r in await credit_rows(db, user_id) if r["request_id"] == other]
    assert [(r["amount_pico"], r["balance_after_pico"]) for r in late] in ([], [(0, 0)])
    assert await assert_ledger_consistent(db, user_id) == 0


# --- expiry and the reaper -----------------------------------------------------------------------


async def insert_hold(
    db: Database, user_id: str, request_id: str, amount: Decimal, expires: datetime
) -> None:
    await db.fetch(
        "INSERT INTO credit_holds (id, user_id, key_id, request_id, amount_pico, status, expires_at, created_at)"
        " VALUES (:id, :u, NULL, :r, :amount, 'open', :expires, :created)",
        {
            "id": new_id("hold"),
            "u": user_id,
            "r": request_id,
            "amount": to_pico(amount),
            "expires": now_text(expires),
            "created": now_text(expires - HOLD_TTL),
        },
    )


async def test_an_expired_hold_no_longer_counts_and_the_reaper_expires_it(fresh_db: Database) -> None:
    db = fresh_db
    await migrate(db, read_migrations())
    ledger = Ledger(db)
    user_id = await new_user(db, D(2))
    now = datetime.now(UTC)
    stale, live = new_id("req"), new_id("req")
    await insert_hold(db, user_id, stale, D("1.5"), now - timedelta(seconds=1))
    await insert_hold(db, user_id, live, D("0.25"), now + timedelta(minutes=5))
    assert await balance(db, user_id) == (D(2), D("0.25"))  # the stale hold is not counted
    # ... so the whole rest is available to a new reservation.
    fresh = new_id("req")
    assert await ledger.reserve(user_id=user_id, key_id=None, request_id=fresh, amount=D("1.75")) is None

    assert await ledger.reap() == 1
    stale_hold = await hold_of(db, stale)
    assert (
        stale_hold is not None and stale_hold["status"] == "expired" and stale_hold["closed_at"] is not None
    )
    assert (await hold_of(db, live) or {}).get("status") == "open"
    assert (await hold_of(db, fresh) or {}).get("status") == "open"
    assert await ledger.reap() == 0
    assert await balance(db, user_id) == (D(2), D(2))  # the reaper never touches balances
    assert await assert_ledger_consistent(db, user_id) == to_pico(D(2))


async def test_settle_after_expiry_still_charges_once(db: Database) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db, D(1))
    request_id = new_id("req")
    await insert_hold(db, user_id, request_id, D("0.5"), datetime.now(UTC) - timedelta(seconds=1))
    assert await ledger.reap() >= 1
    assert (await hold_of(db, request_id) or {}).get("status") == "expired"
    # The crashed-looking request finally settles: it is billed, and only once.
    await ledger.settle(record(user_id, None, request_id), D("0.3"))
    await ledger.settle(record(user_id, None, request_id), D("0.3"))
    assert await balance(db, user_id) == (D("0.7"), D(0))
    assert (await hold_of(db, request_id) or {}).get("status") == "settled"
    assert len([r for r in await credit_rows(db, user_id) if r["type"] == "usage"]) == 1
    assert await assert_ledger_consistent(db, user_id) == to_pico(D("0.7"))


# --- the invariant over a mixed history, and the ledger page -------------------------------------


async def test_balance_equals_the_ledger_sum_through_a_mixed_history(db: Database) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db, D("3.3"))
    key_id = await new_key(db, user_id)
    expected = D("3.3")
    for i, cost in enumerate([D("0.1"), D(0), D("0.000000000001"), D("1.2"), D("5")]):
        request_id = new_id("req")
        if (
            await ledger.reserve(
                user_id=user_id, key_id=key_id, request_id=request_id, amount=min(cost, D(1))
            )
            is None
        ):
            if i % 2:
                await ledger.release(record(user_id, key_id, request_id, status="error"))
            else:
                await ledger.settle(record(user_id, key_id, request_id), cost)
                expected -= min(cost, expected)
        await ledger.change_balance(user_id, D("0.05"), type="grant", description=str(i), actor_type="cli")
        expected += D("0.05")
        await ledger.change_balance(
            user_id, D("-100"), type="adjustment", description="refused", actor_type="cli"
        )
        assert await assert_ledger_consistent(db, user_id) == to_pico(expected)
    assert (await balance(db, user_id))[0] == expected


async def test_ledger_page_is_newest_first_with_a_working_cursor(db: Database) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db)
    other = await new_user(db, D(99))  # another user's rows never show up
    ids = []
    for amount in range(1, 6):
        result = await ledger.change_balance(
            user_id, D(amount), type="grant", description=str(amount), actor_type="cli"
        )
        ids.append(result.transaction_id)
    page1, more1 = await ledger.transactions(user_id, limit=2, cursor=None)
    assert [r["id"] for r in page1] == [ids[4], ids[3]] and more1
    assert [r["amount_pico"] for r in page1] == [to_pico(D(5)), to_pico(D(4))]
    page2, more2 = await ledger.transactions(user_id, limit=2, cursor=str(page1[-1]["id"]))
    assert [r["id"] for r in page2] == [ids[2], ids[1]] and more2
    page3, more3 = await ledger.transactions(user_id, limit=2, cursor=str(page2[-1]["id"]))
    assert [r["id"] for r in page3] == [ids[0]] and not more3
    everything, more = await ledger.transactions(user_id, limit=10, cursor=None)
    assert [r["id"] for r in everything] == ids[::-1] and not more
    assert [r["balance_after_pico"] for r in everything] == [to_pico(D(n)) for n in (15, 10, 6, 3, 1)]
    assert all(r["user_id"] == user_id for r in everything)  # never the other user's rows
    assert (await ledger.transactions(other, limit=10, cursor=None))[0][0]["amount_pico"] == to_pico(D(99))


# --- reserved money stays reserved (issue 10, defect 14) -----------------------------------------


async def test_a_claw_back_takes_at_most_the_available_credit(db: Database) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db, D(10))
    key_id = await new_key(db, user_id)
    in_flight = new_id("req")
    assert await ledger.reserve(user_id=user_id, key_id=key_id, request_id=in_flight, amount=D(4)) is None
    before = await credit_rows(db, user_id)
    refused = await ledger.change_balance(
        user_id, D("-6.000000000001"), type="adjustment", description="claw back", actor_type="cli"
    )
    assert not refused.applied and refused.transaction_id is None
    assert await credit_rows(db, user_id) == before  # nothing written, not even an audit entry
    taken = await ledger.change_balance(
        user_id, D(-6), type="adjustment", description="claw back", actor_type="cli"
    )
    assert taken.applied and taken.balance == D(4)
    # The request in flight is charged in full, and the ledger says so.
    assert await ledger.settle(record(user_id, key_id, in_flight), D("3.5")) == D("3.5")
    assert await balance(db, user_id) == (D("0.5"), D(0))
    # A grant is never held back by holds.
    other = new_id("req")
    assert await ledger.reserve(user_id=user_id, key_id=key_id, request_id=other, amount=D("0.5")) is None
    assert (
        await ledger.change_balance(user_id, D(1), type="grant", description="g", actor_type="cli")
    ).applied
    assert await assert_ledger_consistent(db, user_id) == to_pico(D("1.5"))


async def test_settle_reports_what_it_charged(db: Database) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db, D("1.5"))
    key_id = await new_key(db, user_id)
    request_id = new_id("req")
    assert await ledger.reserve(user_id=user_id, key_id=key_id, request_id=request_id, amount=D(1)) is None
    # The cost overran the hold and the balance: capped, and the cap is what settle reports.
    assert await ledger.settle(record(user_id, key_id, request_id), D("4.75")) == D("1.5")
    assert await ledger.settle(record(user_id, key_id, request_id), D("4.75")) is None  # a replay
    free = new_id("req")
    assert await ledger.settle(record(user_id, None, free, model="openai/gpt-oss-20b:free"), D(0)) == D(0)
    assert await rows(db, "SELECT cost_pico FROM request_records WHERE request_id = :r", r=request_id) == [
        {"cost_pico": to_pico(D("1.5"))}
    ]
