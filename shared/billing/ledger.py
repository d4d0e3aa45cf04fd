"""The credit ledger: grants, reserve → settle, release, the hold reaper (SPEC §4).

Invariants, enforced in SQL so that they hold across processes and instances:
- the balance equals the sum of the user's `credit_transactions` (every change is one row, written
  in the same transaction as the balance);
- available credit = balance - open, unexpired holds; a reserve succeeds only if it fits, under
  the user's row lock, so concurrent requests can never overspend;
- a request is charged at most once (a unique index on the usage row's request id), and a grant
  with an idempotency key at most once;
- the balance never goes below zero (a CHECK constraint, and settlement caps a cost that exceeded
  its reservation at what is left, and says what it charged);
- reserved money stays reserved: a claw-back (a negative change) takes at most the available
  credit (balance minus open holds), so that every request in flight is charged in full.

Every operation is a fixed list of statements run in one transaction (`Database.transaction`):
later statements are made conditional on earlier ones in SQL, so nothing waits on a round trip.
The statements and routines are in `shared.billing.ledger_sql`.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from shared.billing import from_pico, to_pico
from shared.billing.ledger_sql import (
    APPLY_TX,
    AUDIT_IF_TX,
    DIAGNOSE,
    DROP_HOLD,
    INSERT_CREDIT,
    LOCK_USER,
    OPEN_HOLDS_USER,
    REAP,
    RESERVE,
    RESERVE_LOCK,
    RESULT_TX,
    SETTLE,
)
from shared.store import Database, Row, Step, now_text

HOLD_TTL = timedelta(minutes=15)  # longer than any request may run (GATEWAYZ_REQUEST_DEADLINE)
DRAIN_S = 15.0  # seconds a closing runtime waits for settlements still under way

# Row and request ids need uniqueness, not secrecy: 64 bits from a PRNG seeded once per process
# from the OS (a getrandom syscall per id showed up at a few per cent of a request's CPU) after the
# time in milliseconds. Time first, so that new rows land at the right edge of every index keyed
# by an id: a commit then dirties a few shared pages instead of one random page per index (on
# SQLite, measured: WAL bytes per request halved, ledger CPU per request at c=10 -26 %).
_ids = random.Random(os.urandom(32))


def reseed_ids() -> None:
    """A fresh seed from the OS: after a SnapStart restore (shared/snapstart.py), every restored
    environment would otherwise draw the snapshot's sequence."""
    _ids.seed(os.urandom(32))


def new_id(prefix: str) -> str:
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{_ids.getrandbits(64):016x}"


def periods(moment: datetime) -> dict[str, str]:
    """The spend-limit periods a charge at `moment` counts toward (UTC calendar day and month)."""
    text = now_text(moment)  # 2026-11-29T…: slicing beats two strftime calls
    return {"day": "d:" + text[:10], "month": "m:" + text[:7], "total": "total"}


@dataclass(frozen=True, slots=True)
class GrantResult:
    applied: bool  # False: an idempotent replay, or it would have made the balance negative
    balance: Decimal
    transaction_id: str | None


@dataclass(frozen=True, slots=True)
class SpendLimits:
    day: Decimal | None = None
    month: Decimal | None = None
    total: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ReserveRefusal:
    reason: str  # frozen | insufficient_credits | spend_limit_day | spend_limit_month | spend_limit_total | inactive | no_user
    available: Decimal


@dataclass(slots=True)
class RequestRecord:
    """What a request did, for `request_records` (and the usage route)."""

    request_id: str
    user_id: str
    key_id: str | None
    model: str
    endpoint: str
    provider: str | None = None
    status: str = "ok"
    http_status: int = 200
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    byok: bool = False
    latency_ms: int = 0
    attempts: list[str] = field(default_factory=list)
    client_request_id: str | None = None  # the caller's x-request-id, when they sent one
    spend_key_id: str | None = None  # the budget its spend counts under (None: `key_id`'s own)
    hold_request_id: str | None = None  # the spare hold it took (None: its own hold)
    track_spend: bool = True  # count toward key_spend (only keys with spend limits need it)
    touch_key: bool = True  # update the key's last_used_at (throttled by the caller)

    def params(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "user_id": self.user_id,
            "key_id": self.key_id,
            "model": self.model,
            "provider": self.provider,
            "endpoint": self.endpoint,
            "status": self.status,
            "http_status": self.http_status,
            "input_tokens": self.input_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "output_tokens": self.output_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "estimated": self.estimated,
            "byok": self.byok,
            "latency_ms": self.latency_ms,
            "attempts": orjson.dumps(self.attempts).decode(),
            "client_request_id": self.client_request_id,
            "spend_key_id": self.spend_key_id or self.key_id,
            "hold_request_id": self.hold_request_id or self.request_id,
        }


@dataclass(slots=True)
class Spare:
    """A hold written ahead, by a settlement, for a key's next request (shared.billing.spares)."""

    user_id: str
    key_id: str  # the key whose next request it waits for
    owner: object  # the key's record (cached) it was written for: another record may not take it
    amount: Decimal  # what it holds: the worst case of the request whose settlement wrote it
    room: Decimal  # the available credit the account must have for it to be written
    hold_id: str = field(default_factory=lambda: new_id("hold"))
    request_id: str = field(default_factory=lambda: new_id("spare"))
    born: float = 0.0  # when it was written (time.monotonic)
    written: bool = False


_NO_SPARE = {
    "spare": False,
    "spare_hold_id": None,
    "spare_request_id": None,
    "spare_amount": None,
    "spare_room": None,
    "spare_expires_at": None,
}


def _spare_params(spare: Spare | None, moment: datetime) -> dict[str, Any]:
    if spare is None:
        return _NO_SPARE
    return {
        "spare": True,
        "spare_hold_id": spare.hold_id,
        "spare_request_id": spare.request_id,
        "spare_amount": to_pico(spare.amount),
        "spare_room": to_pico(spare.room),
        "spare_expires_at": now_text(moment + HOLD_TTL),
    }


def settle_params(
    record: RequestRecord, cost: Decimal, hold_status: str, moment: datetime, spare: Spare | None = None
) -> dict[str, Any]:
    """The SETTLE routine's parameters for a settlement at `moment`."""
    return {
        "tx_id": new_id("txn"),
        "cost": to_pico(cost),
        "hold_status": hold_status,
        "description": f"{record.model} via {record.provider}" if record.provider else record.model,
        "metadata": orjson.dumps(
            {"estimated": record.estimated, "byok": record.byok, "endpoint": record.endpoint}
        ).decode(),
        "now": now_text(moment),
        **record.params(),
        **periods(moment),
        "track_spend": record.key_id is not None and record.track_spend,
        "touch_key": record.key_id is not None and record.touch_key,
        **_spare_params(spare, moment),
    }


def _opt_pico(amount: Decimal | None) -> int | None:
    return None if amount is None else to_pico(amount)


class Ledger:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._landing: set[asyncio.Task[Any]] = set()  # settlements under way (see `_settle`)

    async def change_balance(
        self,
        user_id: str,
        amount: Decimal,
        *,
        type: str,
        description: str,
        actor_type: str,
        actor_id: str | None = None,
        idempotency_key: str | None = None,
        payment_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        ip: str | None = None,
    ) -> GrantResult:
        """Grant (positive) or claw back (negative) credits, with its ledger row and audit entry.
        A claw-back larger than the available credit (balance minus open holds) is not applied."""
        tx_id = new_id("txn")
        params = {
            "tx_id": tx_id,
            "user_id": user_id,
            "amount": to_pico(amount),
            "type": type,
            "payment_id": payment_id,
            "idempotency_key": idempotency_key,
            "description": description,
            "metadata": orjson.dumps(metadata).decode() if metadata else None,
            "now": now_text(),
            "audit_id": new_id("aud"),
            "actor_type": actor_type,
            "actor_id": actor_id,
            "action": f"credits.{type}",
            "details": orjson.dumps(
                {"amount": str(amount), "description": description, "type": type}
            ).decode(),
            "ip": ip,
        }
        steps: list[Step] = [
            *self._lock(params),
            (INSERT_CREDIT, params),
            (APPLY_TX, params),
            (AUDIT_IF_TX, params),
            (RESULT_TX, params),
        ]
        rows = (await self.db.transaction(steps))[-1]
        if not rows:
            raise LookupError(user_id)
        row = rows[0]
        applied = bool(row["applied"])
        return GrantResult(applied, from_pico(row["balance_pico"]), tx_id if applied else row["existing_tx"])

    async def reserve(
        self,
        *,
        user_id: str,
        key_id: str | None,
        request_id: str,
        amount: Decimal,
        limits: SpendLimits = SpendLimits(),
    ) -> ReserveRefusal | None:
        """Hold `amount` for a request; None when held, else why not (one round trip, two if refused).
        `key_id`: the budget the key's spend limits count against (`KeyRecord.budget_id`)."""
        moment = datetime.now(UTC)
        params = {
            "hold_id": new_id("hold"),
            "user_id": user_id,
            "key_id": key_id,
            "request_id": request_id,
            "amount": to_pico(amount),
            "expires_at": now_text(moment + HOLD_TTL),
            "now": now_text(moment),
            "limit_day": _opt_pico(limits.day),
            "limit_month": _opt_pico(limits.month),
            "limit_total": _opt_pico(limits.total),
            **periods(moment),
        }
        if await self.db.run(RESERVE, params):
            return None
        return await self._diagnose(params)

    async def _diagnose(self, params: dict[str, Any]) -> ReserveRefusal:
        row = await self.db.fetch_one(DIAGNOSE, params)
        if row is None:
            return ReserveRefusal("no_user", Decimal(0))
        available = from_pico(row["balance_pico"] - row["held"])
        if row["status"] != "active":
            return ReserveRefusal("inactive", available)
        if row["spend_frozen"] is not None:  # a refund left debt, or a dispute is open
            return ReserveRefusal("frozen", available)
        amount = params["amount"]
        if row["balance_pico"] - row["held"] < amount:
            return ReserveRefusal("insufficient_credits", available)
        for period in ("day", "month", "total"):
            limit = params[f"limit_{period}"]
            if limit is not None and row[f"spent_{period}"] + row["key_held"] + amount > limit:
                return ReserveRefusal(f"spend_limit_{period}", available)
        return ReserveRefusal("insufficient_credits", available)  # a concurrent change; refuse safely

    async def drop_hold(self, user_id: str, request_id: str) -> bool:
        """Undo the open hold of a request that never ran; whether there was one."""
        return bool(await self.db.run(DROP_HOLD, {"request_id": request_id, "user_id": user_id}))

    async def _settle(
        self, record: RequestRecord, cost: Decimal, hold_status: str, spare: Spare | None = None
    ) -> Decimal | None:
        """Charge `cost` once for the request, close its hold, count key spend, write its record
        (and, asked to, a spare hold: `spare.written` says whether it was); what was charged
        (None: settled before)."""
        params = settle_params(record, cost, hold_status, datetime.now(UTC), spare)
        # A settlement, once asked for, lands even if its caller is cancelled meanwhile (a server
        # cancels the requests still running when its shutdown grace runs out): it runs in a task
        # of its own that the caller awaits through a shield, and `drain` waits for it before the
        # database closes. (A cancel scope's shield does not stop a task's `cancel()`.)
        task = asyncio.ensure_future(self.db.run(SETTLE, params))
        self._landing.add(task)
        task.add_done_callback(self._landing.discard)
        charged, written = await asyncio.shield(task)
        if spare is not None:
            spare.written = bool(written)
        return None if charged is None else from_pico(int(charged))

    async def drain(self) -> None:
        """Wait (at most DRAIN_S seconds) for the settlements under way, before the database
        closes: those whose callers were cancelled are still to be charged."""
        if self._landing:
            await asyncio.wait(set(self._landing), timeout=DRAIN_S)

    def _lock(self, params: dict[str, Any]) -> list[Step]:
        """A balance change waits for the user's row and, on PostgreSQL, for the user's reserves in
        progress (the lock they take turns on), so that it sees every hold they commit."""
        if not self.db.row_locks:
            return []
        return [(LOCK_USER, params)] + ([(RESERVE_LOCK, params)] if self.db.dialect == "postgres" else [])

    async def settle(
        self, record: RequestRecord, cost: Decimal, spare: Spare | None = None
    ) -> Decimal | None:
        """Exactly once per request id: a replay changes nothing (one round trip). Returns what was
        charged: `cost`, or less when the balance could not cover it (a cost that overran its hold),
        or None for a replay (nothing charged now). With `spare`, the same transaction writes the
        hold of the key's next request when there is room for it (`spare.written`)."""
        return await self._settle(record, cost, "settled", spare)

    async def release(self, record: RequestRecord) -> None:
        """A request that produced nothing billable: close its hold, record it, charge nothing."""
        await self._settle(record, Decimal(0), "released")

    async def reap(self) -> int:
        """Expire holds whose request never settled (a crashed instance). Balances are untouched."""
        rows = await self.db.fetch(REAP, {"now": now_text()})
        return len(rows)

    async def balance(self, user_id: str) -> tuple[Decimal, Decimal]:
        """(balance, held) for a user."""
        row = await self.db.fetch_one(
            f"SELECT u.balance_pico, ({OPEN_HOLDS_USER}) AS held FROM users u WHERE u.id = :user_id",
            {"user_id": user_id, "now": now_text()},
        )
        if row is None:
            raise LookupError(user_id)
        return from_pico(row["balance_pico"]), from_pico(row["held"])

    async def transactions(self, user_id: str, *, limit: int, cursor: str | None) -> tuple[list[Row], bool]:
        """Ledger rows, newest first; `cursor` is the last id of the previous page."""
        params: dict[str, Any] = {"user_id": user_id, "limit": limit + 1, "cursor": cursor}
        where = "user_id = :user_id"
        if cursor:
            where += (
                " AND (created_at, id) < (SELECT created_at, id FROM credit_transactions WHERE id = :cursor)"
            )
        rows = await self.db.fetch(
            f"SELECT * FROM credit_transactions WHERE {where} ORDER BY created_at DESC, id DESC LIMIT :limit",
            params,
        )
        return rows[:limit], len(rows) > limit
