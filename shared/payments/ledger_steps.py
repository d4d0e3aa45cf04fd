"""The money-in side of the ledger: statements that a webhook event, a coupon or a trial adds to
its own transaction (SPEC §4: every balance change one `credit_transactions` row, in the same
transaction as the balance).

Like `shared.billing.ledger`, a transaction here is a fixed list of statements that never waits on
a round trip: each statement is made conditional, in SQL, on the one that must precede it — a
`guard` (the webhook event's row written by this very transaction, a coupon redemption, a trial)
and then the credit row itself (`tx_id`). If the guard did not hold (a replayed event, a second
redemption), every later statement touches nothing.

The balance never goes below zero (the users table's CHECK): a claw-back takes at most what is
available (balance minus open holds, which stay reserved for requests in flight); the rest is
`debt_pico`, and the account's spending is frozen ('debt') until a later purchase pays it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from shared.billing import to_pico
from shared.billing.ledger import new_id
from shared.billing.ledger_sql import APPLY_TX, AUDIT_IF_TX, LOCK_USER, RESERVE_LOCK
from shared.store import Step, now_text

PICO_PER_CENT = 10**10  # Stripe amounts are integer cents of USD

# The webhook event row this transaction wrote (`claim` is its random token).
EVENT_CLAIMED = "EXISTS (SELECT 1 FROM stripe_events WHERE id = :event_id AND claim = :claim)"
TX_WRITTEN = "EXISTS (SELECT 1 FROM credit_transactions WHERE id = :tx_id)"
_HELD = (
    "(SELECT COALESCE(SUM(h.amount_pico), 0) FROM credit_holds h "
    "WHERE h.user_id = u.id AND h.status = 'open' AND h.expires_at > :now)"
)
_AVAILABLE = f"(u.balance_pico - {_HELD})"

CLAIM_EVENT = """
INSERT INTO stripe_events (id, type, status, claim, user_id, livemode, created, payload, received_at)
VALUES (:event_id, :type, :status, :claim, :user_id, :livemode, :created, :payload, :now)
ON CONFLICT (id) DO NOTHING
"""
EVENT_RESULT = "SELECT claim FROM stripe_events WHERE id = :event_id"


def grant_sql(guard: str) -> str:
    """A positive credit row, written only if `guard` holds (and, with a key, once)."""
    return f"""
INSERT INTO credit_transactions (id, user_id, amount_pico, type, balance_after_pico, payment_id,
                                 idempotency_key, description, metadata, created_at)
SELECT :tx_id, u.id, :amount, :type, u.balance_pico + :amount, :payment_id, :idempotency_key,
       :description, :metadata, :now
FROM users u
WHERE u.id = :user_id AND :amount > 0 AND {guard}
ON CONFLICT (idempotency_key) DO NOTHING
"""


# What a refund takes back: what is newly refunded on the payment, capped at the available credit.
_DUE = "(:refunded - p.refunded_pico)"
_TAKE = f"(CASE WHEN {_AVAILABLE} <= 0 THEN 0 WHEN {_AVAILABLE} < {_DUE} THEN {_AVAILABLE} ELSE {_DUE} END)"
CLAW_BACK_REFUND = f"""
INSERT INTO credit_transactions (id, user_id, amount_pico, type, balance_after_pico, payment_id,
                                 idempotency_key, description, metadata, created_at)
SELECT :tx_id, u.id, -{_TAKE}, 'refund', u.balance_pico - {_TAKE}, p.id, NULL, :description, :metadata, :now
FROM users u JOIN payments p ON p.user_id = u.id
WHERE p.id = :payment_id AND u.id = :user_id AND :refunded > p.refunded_pico AND {EVENT_CLAIMED}
"""
# The balance change, and the shortfall (refunded minus taken) as debt that freezes spending.
APPLY_REFUND = f"""
UPDATE users SET
  balance_pico = balance_pico + (SELECT amount_pico FROM credit_transactions WHERE id = :tx_id),
  debt_pico = debt_pico + (:refunded - (SELECT refunded_pico FROM payments WHERE id = :payment_id))
              + (SELECT amount_pico FROM credit_transactions WHERE id = :tx_id),
  spend_frozen = CASE
    WHEN (:refunded - (SELECT refunded_pico FROM payments WHERE id = :payment_id))
         + (SELECT amount_pico FROM credit_transactions WHERE id = :tx_id) > 0
    THEN COALESCE(spend_frozen, 'debt') ELSE spend_frozen END
WHERE id = :user_id AND {TX_WRITTEN}
"""
MARK_REFUNDED = f"UPDATE payments SET refunded_pico = :refunded WHERE id = :payment_id AND {TX_WRITTEN}"

# A purchase pays the debt first: the part of it the available credit covers.
_REPAY = f"(CASE WHEN {_AVAILABLE} <= 0 THEN 0 WHEN {_AVAILABLE} < u.debt_pico THEN {_AVAILABLE} ELSE u.debt_pico END)"
REPAY_DEBT = f"""
INSERT INTO credit_transactions (id, user_id, amount_pico, type, balance_after_pico, payment_id,
                                 idempotency_key, description, metadata, created_at)
SELECT :tx_id, u.id, -{_REPAY}, 'refund', u.balance_pico - {_REPAY}, :payment_id, NULL,
       'debt repayment (an earlier refund exceeded the credit left)', NULL, :now
FROM users u
WHERE u.id = :user_id AND u.debt_pico > 0 AND EXISTS (SELECT 1 FROM credit_transactions WHERE id = :after_tx)
"""
APPLY_REPAYMENT = f"""
UPDATE users SET
  balance_pico = balance_pico + (SELECT amount_pico FROM credit_transactions WHERE id = :tx_id),
  debt_pico = debt_pico + (SELECT amount_pico FROM credit_transactions WHERE id = :tx_id),
  spend_frozen = CASE WHEN spend_frozen = 'debt'
                       AND debt_pico + (SELECT amount_pico FROM credit_transactions WHERE id = :tx_id) = 0
                      THEN NULL ELSE spend_frozen END
WHERE id = :user_id AND {TX_WRITTEN}
"""


def lock_steps(dialect: str, user_id: str) -> list[Step]:
    """PostgreSQL: wait for the user's row and reserves in progress (see `Ledger._lock`), so that
    the claw-back's `available` counts every hold they commit. SQLite serialises writers anyway."""
    if dialect != "postgres":
        return []
    params = {"user_id": user_id}
    return [(LOCK_USER, params), (RESERVE_LOCK, params)]


def credit_steps(
    user_id: str,
    amount: Decimal,
    *,
    type: str,
    description: str,
    guard: str,
    guard_params: dict[str, Any],
    idempotency_key: str | None = None,
    payment_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    actor_type: str = "system",
    actor_id: str | None = None,
    tx_id: str | None = None,
) -> tuple[str, list[Step]]:
    """A grant's credit row, balance change and audit entry, all conditional on `guard`."""
    tx_id = tx_id or new_id("txn")
    now = now_text()
    params = {
        "tx_id": tx_id,
        "user_id": user_id,
        "amount": to_pico(amount),
        "type": type,
        "payment_id": payment_id,
        "idempotency_key": idempotency_key,
        "description": description,
        "metadata": orjson.dumps(metadata).decode() if metadata else None,
        "now": now,
        "audit_id": new_id("aud"),
        "actor_type": actor_type,
        "actor_id": actor_id,
        "action": f"credits.{type}",
        "details": orjson.dumps(
            {"amount": str(amount), "description": description, "type": type, "payment_id": payment_id}
        ).decode(),
        "ip": None,
        **guard_params,  # last: a guard may pin `now` (the moment its row was written)
    }
    return tx_id, [(grant_sql(guard), params), (APPLY_TX, params), (AUDIT_IF_TX, params)]


def repay_steps(user_id: str, after_tx: str, payment_id: str | None) -> list[Step]:
    """After a purchase (`after_tx`): pay what is owed out of it, unfreezing a 'debt' freeze."""
    params = {
        "tx_id": new_id("txn"),
        "after_tx": after_tx,
        "user_id": user_id,
        "payment_id": payment_id,
        "now": now_text(),
    }
    return [(REPAY_DEBT, params), (APPLY_REPAYMENT, params)]


def pico_of_cents(cents: int) -> int:
    return int(cents) * PICO_PER_CENT
