"""Spare holds in the ledger (shared.billing.spares) on SQLite and PostgreSQL: a settlement asked
for a spare writes, in its own transaction, the hold of the key's next request — only under a
reservation's checks and with room for more than the spare — and says whether it did; the next
request's settlement closes the spare it took; a spare counts against the available credit like
any hold until it is dropped."""

from __future__ import annotations

from decimal import Decimal

from shared.billing.ledger import Ledger, Spare, new_id
from shared.store import Database
from tests.store.support import assert_ledger_consistent, balance, hold_of, new_key, new_user, record

D = Decimal


async def held_request(ledger: Ledger, user_id: str, key_id: str, amount: Decimal) -> str:
    request_id = new_id("req")
    assert await ledger.reserve(user_id=user_id, key_id=key_id, request_id=request_id, amount=amount) is None
    return request_id


async def test_a_settlement_writes_the_spare_it_is_asked_for_and_the_next_request_settles_on_it(
    db: Database,
) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db, D(10))
    key_id = await new_key(db, user_id)
    first = await held_request(ledger, user_id, key_id, D(1))
    spare = Spare(user_id=user_id, key_id=key_id, owner=None, amount=D(1), room=D(4))
    assert await ledger.settle(record(user_id, key_id, first), D("0.25"), spare) == D("0.25")
    assert spare.written
    assert await hold_of(db, spare.request_id) == {
        "user_id": user_id,
        "key_id": key_id,
        "amount_pico": 1_000_000_000_000,
        "status": "open",
        "closed_at": None,
    }
    assert await balance(db, user_id) == (D("9.75"), D(1))  # the spare is held like any hold

    # The next request runs on the spare: its settlement closes it (and may write the next one).
    second = record(user_id, key_id, "req_second", hold_request_id=spare.request_id)
    following = Spare(user_id=user_id, key_id=key_id, owner=None, amount=D(1), room=D(4))
    assert await ledger.settle(second, D("0.5"), following) == D("0.5")
    assert following.written
    assert await hold_of(db, spare.request_id) is None  # the spare, closed, carries the id of...
    closed = await hold_of(db, "req_second")  # ...the request it served
    assert closed is not None and closed["status"] == "settled" and closed["amount_pico"] == 10**12
    assert await balance(db, user_id) == (D("9.25"), D(1))

    assert await ledger.drop_hold(user_id, following.request_id)  # nobody took it
    assert await balance(db, user_id) == (D("9.25"), D(0))
    assert await assert_ledger_consistent(db, user_id) == 9_250_000_000_000


async def test_no_spare_without_room_for_more_than_it(db: Database) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db, D(5))
    key_id = await new_key(db, user_id)
    other = await held_request(ledger, user_id, key_id, D(1))  # another request in flight
    first = await held_request(ledger, user_id, key_id, D(1))
    # After this charge: 4.5 in the balance, 1 held by the other request: 3.5 available < 4.
    spare = Spare(user_id=user_id, key_id=key_id, owner=None, amount=D(1), room=D(4))
    assert await ledger.settle(record(user_id, key_id, first), D("0.5"), spare) == D("0.5")
    assert not spare.written and await hold_of(db, spare.request_id) is None
    # With the other request settled, there is room: 4 available.
    spare = Spare(user_id=user_id, key_id=key_id, owner=None, amount=D(1), room=D(4))
    assert await ledger.settle(record(user_id, key_id, other), D("0.5"), spare) == D("0.5")
    assert spare.written
    assert await balance(db, user_id) == (D(4), D(1))


async def test_no_spare_for_a_frozen_or_suspended_account_nor_for_a_replayed_settlement(db: Database) -> None:
    ledger = Ledger(db)
    user_id = await new_user(db, D(100))
    key_id = await new_key(db, user_id)
    for change in ("UPDATE users SET spend_frozen = 'dispute'", "UPDATE users SET status = 'suspended'"):
        request_id = await held_request(ledger, user_id, key_id, D(1))
        await db.fetch(change + " WHERE id = :u RETURNING id", {"u": user_id})
        spare = Spare(user_id=user_id, key_id=key_id, owner=None, amount=D(1), room=D(4))
        assert await ledger.settle(record(user_id, key_id, request_id), D(1), spare) == D(1)  # charged
        assert not spare.written and await hold_of(db, spare.request_id) is None
        await db.fetch(
            "UPDATE users SET spend_frozen = NULL, status = 'active' WHERE id = :u RETURNING id",
            {"u": user_id},
        )

    request_id = await held_request(ledger, user_id, key_id, D(1))
    assert await ledger.settle(record(user_id, key_id, request_id), D(1)) == D(1)
    spare = Spare(user_id=user_id, key_id=key_id, owner=None, amount=D(1), room=D(4))
    assert await ledger.settle(record(user_id, key_id, request_id), D(1), spare) is None  # a replay
    assert not spare.written and await hold_of(db, spare.request_id) is None
    assert await balance(db, user_id) == (D(97), D(0))
    await assert_ledger_consistent(db, user_id)
