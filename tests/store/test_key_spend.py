"""Key spend limits in the ledger (SPEC §5) on SQLite and PostgreSQL: a reserve that would take a
key's spend past its day, month or total limit is refused, and each period counts what it should
(a total limit every earlier day's spend, a day or month limit only its own)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from shared.billing import to_pico
from shared.billing.ledger import Ledger, RequestRecord, ReserveRefusal, SpendLimits, new_id, settle_params
from shared.billing.ledger_sql import SETTLE
from shared.store import Database
from tests.store.support import assert_ledger_consistent, new_key, new_user, record

D = Decimal


@pytest.mark.parametrize("period", ["day", "month", "total"])
async def test_spend_limits_apply_per_period_on_reserve(db: Database, period: str) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db, D(100))
    key_id = await new_key(db, user_id)
    # The period under test has the tightest limit; the others are loose (or absent).
    loose = {"day": D(50), "month": D(60), "total": None}
    limits = SpendLimits(**{**loose, period: D(1)})
    first = new_id("req")
    assert (
        await ledger.reserve(user_id=user_id, key_id=key_id, request_id=first, amount=D("0.6"), limits=limits)
        is None
    )
    # An open hold of the key counts toward its limit.
    refused = await ledger.reserve(
        user_id=user_id, key_id=key_id, request_id=new_id("req"), amount=D("0.5"), limits=limits
    )
    assert refused == ReserveRefusal(f"spend_limit_{period}", D("99.4"))
    await ledger.settle(record(user_id, key_id, first), D("0.7"))
    # So does what the key has spent.
    refused = await ledger.reserve(
        user_id=user_id, key_id=key_id, request_id=new_id("req"), amount=D("0.300000000001"), limits=limits
    )
    assert refused is not None and refused.reason == f"spend_limit_{period}"
    assert (
        await ledger.reserve(
            user_id=user_id, key_id=key_id, request_id=new_id("req"), amount=D("0.3"), limits=limits
        )
        is None
    )
    # Another key of the same user has its own spend.
    other_key = await new_key(db, user_id)
    assert (
        await ledger.reserve(
            user_id=user_id, key_id=other_key, request_id=new_id("req"), amount=D("0.9"), limits=limits
        )
        is None
    )
    # Insufficient credits is reported before any spend limit.
    poor = await ledger.reserve(
        user_id=user_id, key_id=key_id, request_id=new_id("req"), amount=D(200), limits=limits
    )
    assert poor is not None and poor.reason == "insufficient_credits"


async def settle_dated(db: Database, rec: RequestRecord, cost: Decimal, moment: datetime) -> None:
    """A settlement exactly as the ledger writes it, dated `moment`: the SETTLE routine run
    through the store with that moment's time and spend periods (no clock is touched)."""
    params = settle_params(dataclasses.replace(rec, touch_key=False), cost, "settled", moment)
    assert (await db.run(SETTLE, params))[0] == to_pico(cost)


async def test_a_total_limit_counts_the_spend_of_earlier_days_a_day_or_month_limit_does_not(
    db: Database,
) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db, D(100))
    earlier = datetime.now(UTC) - timedelta(days=40)  # another day, and another month
    capped, daily = await new_key(db, user_id), await new_key(db, user_id)
    for key_id in (capped, daily):
        await settle_dated(db, record(user_id, key_id, new_id("req")), D("0.8"), earlier)

    total = SpendLimits(total=D(1))
    refused = await ledger.reserve(
        user_id=user_id, key_id=capped, request_id=new_id("req"), amount=D("0.3"), limits=total
    )
    assert refused is not None and refused.reason == "spend_limit_total"  # 0.8 then + 0.3 now > 1
    assert (
        await ledger.reserve(
            user_id=user_id, key_id=capped, request_id=new_id("req"), amount=D("0.2"), limits=total
        )
        is None
    )
    # A day's and a month's limit start afresh: that spend was another day and month.
    fresh = SpendLimits(day=D(1), month=D(1))
    assert (
        await ledger.reserve(
            user_id=user_id, key_id=daily, request_id=new_id("req"), amount=D("0.9"), limits=fresh
        )
        is None
    )
    assert await assert_ledger_consistent(db, user_id) == to_pico(D("98.4"))
