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
from shared.store import Database, Row, Step, now_text
from shared.store.routines import Routine, Statement

HOLD_TTL = timedelta(minutes=15)  # longer than any request may run (GATEWAYZ_REQUEST_DEADLINE)
DRAIN_S = 15.0  # seconds a closing runtime waits for settlements still under way

# PostgreSQL only (`row_locks`): a row lock that, unlike an UPDATE, writes no new row version (the
# user's row is the hottest in the database: under load its version chain cost CPU on every touch).
# NO KEY UPDATE, the lock an UPDATE of the balance takes anyway: it lets the foreign-key checks of
# rows that point at the user (a reserve's hold) pass; FOR UPDATE would make them wait.
LOCK_USER = "SELECT 1 FROM users WHERE id = :user_id FOR NO KEY UPDATE"
ASYNC_COMMIT = "SELECT set_config('synchronous_commit', 'off', true)"  # this transaction only
# Reserves of one user take turns on a transaction-scoped advisory lock (namespace 7301), not on the
# user's row: a reserve then never waits for a settlement's commit, which holds the row until its
# WAL is flushed. What a settlement in flight has not committed can only make a reserve see less
# credit than there is: its hold, the worst case, still counts until the same commit.
RESERVE_LOCK = "SELECT pg_advisory_xact_lock(7301, hashtext(:user_id))"

# Open holds that still count: unexpired ones (expired ones are swept by the reaper). The partial
# index (user_id, expires_at) WHERE status = 'open' serves both (see its migration).
_OPEN_HOLDS_USER = "SELECT COALESCE(SUM(amount_pico), 0) FROM credit_holds WHERE user_id = u.id AND status = 'open' AND expires_at > :now"
# The key's: its user named too, so that both sums use the open-holds index (user_id, expires_at).
_OPEN_HOLDS_KEY = "SELECT COALESCE(SUM(amount_pico), 0) FROM credit_holds WHERE user_id = :user_id AND key_id = :key_id AND status = 'open' AND expires_at > :now"

# The credit row of a balance change: written only if the change keeps the balance >= 0 — and a
# claw-back the balance minus what open holds reserve for requests in flight — and (with an
# idempotency key) only once. The balance update below applies only if this row was written.
INSERT_CREDIT = f"""
INSERT INTO credit_transactions (id, user_id, amount_pico, type, balance_after_pico, payment_id,
                                 idempotency_key, description, metadata, created_at)
SELECT :tx_id, u.id, :amount, :type, u.balance_pico + :amount, :payment_id, :idempotency_key,
       :description, :metadata, :now
FROM users u
WHERE u.id = :user_id AND u.balance_pico + :amount >= 0
  AND (:amount >= 0 OR u.balance_pico + :amount >= ({_OPEN_HOLDS_USER}))
ON CONFLICT (idempotency_key) DO NOTHING
"""
APPLY_TX = """
UPDATE users SET balance_pico = balance_pico + (SELECT amount_pico FROM credit_transactions WHERE id = :tx_id)
WHERE id = :user_id AND EXISTS (SELECT 1 FROM credit_transactions WHERE id = :tx_id)
"""
AUDIT_IF_TX = """
INSERT INTO audit_log (id, actor_type, actor_id, action, target_type, target_id, details, ip, created_at)
SELECT :audit_id, :actor_type, :actor_id, :action, 'user', :user_id, :details, :ip, :now
WHERE EXISTS (SELECT 1 FROM credit_transactions WHERE id = :tx_id)
"""
RESULT_TX = """
SELECT u.balance_pico, (SELECT COUNT(*) FROM credit_transactions WHERE id = :tx_id) AS applied,
       (SELECT id FROM credit_transactions WHERE idempotency_key = :idempotency_key) AS existing_tx
FROM users u WHERE u.id = :user_id
"""


def _spend(period: str) -> str:
    return (
        f"(SELECT COALESCE(SUM(amount_pico), 0) FROM key_spend WHERE key_id = :key_id AND period = :{period})"
    )


def _insert_hold(hold: str, key: str, request: str, amount: str, expires: str, room: str) -> str:
    """A hold (the names of its parameters) for an active, unfrozen account with `room` available
    besides its open holds; the caller adds its own conditions after an AND."""
    return f"""
INSERT INTO credit_holds (id, user_id, key_id, request_id, amount_pico, status, expires_at, created_at)
SELECT :{hold}, u.id, :{key}, :{request}, :{amount}, 'open', :{expires}, :now
FROM users u
WHERE u.id = :user_id AND u.status = 'active' AND u.spend_frozen IS NULL
  AND u.balance_pico - ({_OPEN_HOLDS_USER}) >= :{room}
  AND"""


INSERT_HOLD = f"""{_insert_hold("hold_id", "key_id", "request_id", "amount", "expires_at", "amount")} (CAST(:limit_day AS BIGINT) IS NULL OR {_spend("day")} + ({_OPEN_HOLDS_KEY}) + :amount <= :limit_day)
  AND (CAST(:limit_month AS BIGINT) IS NULL OR {_spend("month")} + ({_OPEN_HOLDS_KEY}) + :amount <= :limit_month)
  AND (CAST(:limit_total AS BIGINT) IS NULL OR {_spend("total")} + ({_OPEN_HOLDS_KEY}) + :amount <= :limit_total)
ON CONFLICT (request_id) DO NOTHING
RETURNING id
"""
# Why a reserve failed (read only on that path).
DIAGNOSE = f"""
SELECT u.status, u.spend_frozen, u.balance_pico, ({_OPEN_HOLDS_USER}) AS held,
       {_spend("day")} AS spent_day, {_spend("month")} AS spent_month, {_spend("total")} AS spent_total,
       ({_OPEN_HOLDS_KEY}) AS key_held
FROM users u WHERE u.id = :user_id
"""

INSERT_USAGE = """
INSERT INTO credit_transactions (id, user_id, amount_pico, type, balance_after_pico, request_id, key_id,
                                 description, metadata, created_at)
SELECT :tx_id, u.id, -(CASE WHEN u.balance_pico < :cost THEN u.balance_pico ELSE :cost END), 'usage',
       u.balance_pico - (CASE WHEN u.balance_pico < :cost THEN u.balance_pico ELSE :cost END),
       :request_id, :key_id, :description, :metadata, :now
FROM users u WHERE u.id = :user_id AND :cost > 0
ON CONFLICT (request_id) WHERE type = 'usage' DO NOTHING
"""
# The request's hold: its own, or the spare it took (`hold_request_id`, see shared.billing.spares),
# which from then on carries the id of the request it served.
CLOSE_HOLD = """
UPDATE credit_holds SET status = :hold_status, closed_at = :now, request_id = :request_id
WHERE request_id = :hold_request_id AND user_id = :user_id AND status IN ('open', 'expired')
"""
# A spare: the hold of the key's next request, written by this settlement (shared.billing.spares)
# under a reservation's checks, once this charge is applied and this request's hold closed — and
# with room left for more than it (`spare_room`). Never by a replayed settlement (its record exists).
INSERT_SPARE = f"""{_insert_hold("spare_hold_id", "spend_key_id", "spare_request_id", "spare_amount", "spare_expires_at", "spare_room")} NOT EXISTS (SELECT 1 FROM request_records WHERE request_id = :request_id)
ON CONFLICT (request_id) DO NOTHING
"""
# Counted under the key's budget (`KeyRecord.budget_id`: the key, or the key it shares limits with).
ADD_SPEND = """
INSERT INTO key_spend (key_id, period, amount_pico)
SELECT :spend_key_id, p.period, -t.amount_pico
FROM credit_transactions t, (SELECT :day AS period UNION ALL SELECT :month UNION ALL SELECT :total) p
WHERE t.id = :tx_id
ON CONFLICT (key_id, period) DO UPDATE SET amount_pico = key_spend.amount_pico + excluded.amount_pico
"""
INSERT_RECORD = """
INSERT INTO request_records (request_id, user_id, key_id, model, provider, endpoint, status, http_status,
    input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens, estimated,
    cost_pico, byok, latency_ms, attempts, client_request_id, created_at)
VALUES (:request_id, :user_id, :key_id, :model, :provider, :endpoint, :status, :http_status,
    :input_tokens, :cache_read_tokens, :cache_write_tokens, :output_tokens, :reasoning_tokens, :estimated,
    COALESCE((SELECT -amount_pico FROM credit_transactions WHERE id = :tx_id), 0),
    :byok, :latency_ms, :attempts, :client_request_id, :now)
ON CONFLICT (request_id) DO NOTHING
RETURNING cost_pico,
    (SELECT COUNT(*) FROM credit_holds WHERE request_id = :spare_request_id AND status = 'open') > 0
"""
# A hold whose request the rate limiter refused (its reserve ran alongside the admission): the
# request never ran, so nothing of it stays; a commit that a crash forgets leaves the hold to expire.
DROP_HOLD = Routine(
    "drop_hold",
    (("request_id", "text"), ("user_id", "text")),
    (
        Statement(ASYNC_COMMIT, dialect="postgres"),
        Statement(
            "DELETE FROM credit_holds WHERE request_id = :request_id AND user_id = :user_id "
            "AND status = 'open' RETURNING id"
        ),
    ),
)
TOUCH_KEY = "UPDATE api_keys SET last_used_at = :now WHERE id = :key_id"
REAP = """
UPDATE credit_holds SET status = 'expired', closed_at = :now
WHERE status = 'open' AND expires_at <= :now
RETURNING id
"""

# The two transactions of every paid request (see shared.store.routines).
_PERIODS = (("day", "text"), ("month", "text"), ("total", "text"))
RESERVE = Routine(
    "reserve",
    (
        ("hold_id", "text"),
        ("user_id", "text"),
        ("key_id", "text"),
        ("request_id", "text"),
        ("amount", "bigint"),
        ("expires_at", "timestamptz"),
        ("now", "timestamptz"),
        ("limit_day", "bigint"),
        ("limit_month", "bigint"),
        ("limit_total", "bigint"),
        *_PERIODS,
    ),
    (
        # A hold is a guard, not money: its commit need not wait for the disk. A crash may forget
        # the last moment's holds (their requests then settle without one); every charge is durable.
        Statement(ASYNC_COMMIT, dialect="postgres"),
        Statement(RESERVE_LOCK, dialect="postgres"),
        Statement(INSERT_HOLD),
    ),
    # Never a bitmap scan for the user's open holds. Each closed hold leaves a dead entry in the
    # open-holds index until a vacuum; a plain index scan marks the entries it finds dead so that
    # later scans skip them (and inserts reclaim their space), a bitmap scan never does, and
    # re-reads every one with its table page on every reserve. The planner picks the bitmap scan
    # once the table is large (measured in `bench.soak` with autovacuum off: from ~100,000
    # requests of one user, 19,000 entries and 560 pages per reserve, 0.35 → 10 ms in the server).
    settings=(("enable_bitmapscan", "off"),),
)
SETTLE = Routine(
    "settle",
    (
        ("tx_id", "text"),
        ("cost", "bigint"),
        ("hold_status", "text"),
        ("description", "text"),
        ("metadata", "text"),
        ("now", "timestamptz"),
        ("request_id", "text"),
        ("user_id", "text"),
        ("key_id", "text"),
        ("model", "text"),
        ("provider", "text"),
        ("endpoint", "text"),
        ("status", "text"),
        ("http_status", "integer"),
        ("input_tokens", "integer"),
        ("cache_read_tokens", "integer"),
        ("cache_write_tokens", "integer"),
        ("output_tokens", "integer"),
        ("reasoning_tokens", "integer"),
        ("estimated", "boolean"),
        ("byok", "boolean"),
        ("latency_ms", "integer"),
        ("attempts", "text"),
        ("client_request_id", "text"),
        *_PERIODS,
        ("spend_key_id", "text"),
        ("track_spend", "boolean"),
        ("touch_key", "boolean"),
        ("hold_request_id", "text"),
        ("spare", "boolean"),
        ("spare_hold_id", "text"),
        ("spare_request_id", "text"),
        ("spare_amount", "bigint"),
        ("spare_room", "bigint"),
        ("spare_expires_at", "timestamptz"),
    ),
    (
        Statement(LOCK_USER, dialect="postgres"),
        # A spare is a reservation: it takes its turn with the user's reserves (see RESERVE_LOCK).
        Statement(RESERVE_LOCK, when="spare", dialect="postgres"),
        Statement(INSERT_USAGE),
        Statement(APPLY_TX),
        Statement(CLOSE_HOLD),
        Statement(ADD_SPEND, when="track_spend"),
        Statement(TOUCH_KEY, when="touch_key"),
        Statement(INSERT_SPARE, when="spare"),
        Statement(INSERT_RECORD),
    ),
    # What was charged (the record's cost; NULL when the request was settled before), and whether
    # the spare asked for was written.
    returns=("bigint", "boolean"),
    settings=(("enable_bitmapscan", "off"),),  # the open-holds sum, as in RESERVE
)


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
            f"SELECT u.balance_pico, ({_OPEN_HOLDS_USER}) AS held FROM users u WHERE u.id = :user_id",
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
