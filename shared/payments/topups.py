"""Credit top-ups (SPEC §6): the Checkout Session, and the events that grant, claw back and freeze.

Credits are granted only here, by the webhook: `checkout.session.completed` with
`payment_status: "paid"` (or, for an asynchronous payment method, the later
`checkout.session.async_payment_succeeded`) grants `amount_total / 100` USD once per session (the
credit row's idempotency key). The same transaction records the payment (what a refund may take
back), applies a pending top-up-bonus coupon, pays the referral bonuses of a first purchase, and
pays debt left by an earlier refund.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from shared.billing import from_pico
from shared.billing.ledger import new_id
from shared.billing.ledger_sql import AUDIT_IF_TX, LOCK_USER
from shared.errors import InvalidRequest
from shared.payments import notify
from shared.payments.effects import (
    KIND_KEY,
    USER_KEY,
    Plan,
    known_user,
    metadata,
    ref_id,
    text,
)
from shared.payments.ledger_steps import (
    APPLY_REFUND,
    CLAW_BACK_REFUND,
    EVENT_CLAIMED,
    MARK_REFUNDED,
    credit_steps,
    pico_of_cents,
    repay_steps,
)
from shared.payments.stripe_api import call, client
from shared.runtime import Runtime
from shared.store import Step, now_text

RECORD_PAYMENT = f"""
INSERT INTO payments (id, user_id, session_id, amount_pico, refunded_pico, created_at)
SELECT :payment_id, :user_id, :session_id, :amount, 0, :now
WHERE {EVENT_CLAIMED}
ON CONFLICT (id) DO NOTHING
"""
LINK_CUSTOMER = f"""
UPDATE users SET stripe_customer_id = :customer
WHERE id = :user_id AND stripe_customer_id IS NULL AND {EVENT_CLAIMED}
  AND NOT EXISTS (SELECT 1 FROM users o WHERE o.stripe_customer_id = :customer)
"""
# The first paid top-up of a referred user: a bonus slot of the referrer's month, if one is left
# (`slot` is unique per referrer and month: two at once cannot both take the last one — the loser's
# transaction fails and Stripe's retry finds the cap reached).
CLAIM_REFERRAL = f"""
INSERT INTO referral_bonuses (referee_id, referrer_id, month, slot, payment_id, created_at)
SELECT u.id, u.referred_by, :month,
       (SELECT COUNT(*) FROM referral_bonuses b WHERE b.referrer_id = u.referred_by AND b.month = :month) + 1,
       :payment_id, :now
FROM users u
WHERE u.id = :user_id AND u.referred_by IS NOT NULL AND {EVENT_CLAIMED}
  AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.user_id = u.id)
  AND (SELECT COUNT(*) FROM referral_bonuses b WHERE b.referrer_id = u.referred_by AND b.month = :month) < :cap
ON CONFLICT (referee_id) DO NOTHING
"""
REFERRAL_PAID = (
    "EXISTS (SELECT 1 FROM referral_bonuses WHERE referee_id = :referee AND payment_id = :payment_id)"
)
APPLY_COUPON_BONUS = f"""
UPDATE coupon_redemptions SET status = 'applied', payment_id = :payment_id
WHERE id = :redemption_id AND status = 'pending' AND {EVENT_CLAIMED}
"""
COUPON_APPLIED = (
    "EXISTS (SELECT 1 FROM coupon_redemptions WHERE id = :redemption_id AND payment_id = :payment_id "
    "AND status = 'applied')"
)
PENDING_BONUS = """
SELECT r.id, c.code, c.bonus_percent FROM coupon_redemptions r JOIN coupons c ON c.code = r.code
WHERE r.user_id = :user_id AND r.status = 'pending' ORDER BY r.created_at, r.id LIMIT 1
"""
FREEZE = f"UPDATE users SET spend_frozen = :reason WHERE id = :user_id AND {EVENT_CLAIMED}"


async def create_checkout(rt: Runtime, user_id: str, amount: Decimal) -> dict[str, Any]:
    settings = rt.settings.payments
    if not settings.topup_min <= amount <= settings.topup_max:
        raise InvalidRequest(
            f"amount_usd must be between {settings.topup_min} and {settings.topup_max}.",
            param="amount_usd",
            code="amount_out_of_range",
        )
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise InvalidRequest("amount_usd must be a whole number of cents.", param="amount_usd")
    user = await rt.db.fetch_one(
        "SELECT email, stripe_customer_id FROM users WHERE id = :id", {"id": user_id}
    )
    assert user is not None
    meta = {USER_KEY: user_id, KIND_KEY: "topup"}
    params: dict[str, Any] = {
        "mode": "payment",
        "client_reference_id": user_id,
        "metadata": meta,
        "payment_intent_data": {"metadata": meta},
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": "usd",
                    "unit_amount": int(cents),
                    "product_data": {"name": "Gatewayz credits"},
                },
            }
        ],
        "success_url": settings.success_url,
        "cancel_url": settings.cancel_url,
    }
    if user["stripe_customer_id"]:
        params["customer"] = user["stripe_customer_id"]
    else:
        params["customer_email"] = user["email"]
        params["customer_creation"] = "always"  # so that the customer portal can find them later
    session = await call(lambda: client(rt).v1.checkout.sessions.create_async(params))
    return {"id": session.id, "url": session.url}


async def session_completed(rt: Runtime, session: dict[str, Any], event: dict[str, Any]) -> Plan:
    meta = metadata(session)
    kind, mode = meta.get(KIND_KEY), session.get("mode")
    if kind not in ("topup", "subscription"):
        return Plan(status="ignored")  # not a Gatewayz checkout
    user_id = await known_user(rt, text(meta.get(USER_KEY)) or text(session.get("client_reference_id")))
    plan = Plan(user_id=user_id)
    customer = ref_id(session.get("customer"))
    if customer:
        plan.steps.append((LINK_CUSTOMER, {"customer": customer, "user_id": user_id}))
    if kind == "subscription" or mode != "payment":
        return plan  # the allowance comes with invoice.paid, the plan with the subscription events
    if session.get("payment_status") != "paid":
        return plan  # an asynchronous payment: checkout.session.async_payment_succeeded grants it
    amount_total = session.get("amount_total")
    if session.get("currency") != "usd" or not isinstance(amount_total, int) or amount_total <= 0:
        plan.status = "ignored"
        return plan
    session_id = str(session.get("id"))
    payment_id = ref_id(session.get("payment_intent")) or session_id
    amount = from_pico(pico_of_cents(amount_total))
    plan.steps += await _purchase_steps(rt, user_id, session_id, payment_id, amount)
    plan.invalidate_keys = True  # a purchase may pay off debt and lift a freeze
    plan.after.append(lambda: notify.receipt(rt, user_id, amount, payment_id))
    return plan


async def _purchase_steps(
    rt: Runtime, user_id: str, session_id: str, payment_id: str, amount: Decimal
) -> list[Step]:
    settings = rt.settings.payments
    now = now_text()
    month = datetime.now(UTC).strftime("%Y-%m")
    base = {"payment_id": payment_id, "user_id": user_id, "now": now}
    referrer = await rt.db.fetch_one("SELECT referred_by FROM users WHERE id = :id", {"id": user_id})
    referrer_id = str(referrer["referred_by"]) if referrer is not None and referrer["referred_by"] else None
    steps: list[Step] = []
    if referrer_id is not None and rt.db.dialect == "postgres":
        # The referrer's monthly count is read under their row lock: concurrent first purchases of
        # their referees take turns, so the cap holds (SQLite serialises writers anyway).
        steps.append((LOCK_USER, {"user_id": referrer_id}))
    # Before the payment row: "first purchase" means no payment recorded yet.
    steps += [
        (CLAIM_REFERRAL, {**base, "month": month, "cap": settings.referral_cap}),
        (RECORD_PAYMENT, {**base, "session_id": session_id, "amount": pico_of_cents(int(amount * 100))}),
    ]
    purchase_tx, grant = credit_steps(
        user_id,
        amount,
        type="purchase",
        description="Stripe top-up",
        guard=EVENT_CLAIMED,
        guard_params={},
        idempotency_key=f"topup:{session_id}",
        payment_id=payment_id,
        metadata={"session_id": session_id},
        actor_type="stripe",
    )
    steps += grant
    pending = await rt.db.fetch_one(PENDING_BONUS, {"user_id": user_id})
    if pending is not None:
        bonus = (amount * int(pending["bonus_percent"]) / 100).quantize(Decimal("0.0001"))
        redemption = {"redemption_id": pending["id"], "payment_id": payment_id}
        steps.append((APPLY_COUPON_BONUS, redemption))
        steps += credit_steps(
            user_id,
            bonus,
            type="coupon",
            description=f"coupon {pending['code']}: {pending['bonus_percent']}% top-up bonus",
            guard=COUPON_APPLIED,
            guard_params=redemption,
            idempotency_key=f"coupon:{pending['id']}",
            payment_id=payment_id,
            actor_type="stripe",
        )[1]
    if referrer_id is not None and settings.referral_bonus > 0:
        guard = {"referee": user_id, "payment_id": payment_id}
        for who, key in ((user_id, "referee"), (referrer_id, "referrer")):
            steps += credit_steps(
                who,
                settings.referral_bonus,
                type="referral",
                description=f"referral bonus ({key})",
                guard=REFERRAL_PAID,
                guard_params=guard,
                idempotency_key=f"referral:{key}:{user_id}",
                payment_id=payment_id,
                metadata={"referee": user_id},
                actor_type="stripe",
            )[1]
    return steps + repay_steps(user_id, purchase_tx, payment_id)


async def charge_refunded(rt: Runtime, charge: dict[str, Any], event: dict[str, Any]) -> Plan:
    """Claw back what is newly refunded on a top-up's PaymentIntent (`amount_refunded` is the
    charge's running total: partial refunds each take their own part, a replay takes nothing)."""
    payment_id = ref_id(charge.get("payment_intent"))
    refunded = charge.get("amount_refunded")
    row = None
    if payment_id is not None:
        row = await rt.db.fetch_one("SELECT user_id FROM payments WHERE id = :id", {"id": payment_id})
    if row is None or not isinstance(refunded, int) or refunded < 0:
        return Plan(status="ignored")  # not a top-up of ours (a subscription's invoice, another product)
    user_id = str(row["user_id"])
    tx_id = new_id("txn")
    params = {
        "tx_id": tx_id,
        "user_id": user_id,
        "payment_id": payment_id,
        "refunded": pico_of_cents(refunded),
        "description": "Stripe refund",
        "metadata": None,
        "now": now_text(),
        "audit_id": new_id("aud"),
        "actor_type": "stripe",
        "actor_id": None,
        "action": "credits.refund",
        "details": orjson.dumps({"payment_id": payment_id, "refunded_cents": refunded}).decode(),
        "ip": None,
    }
    steps: list[Step] = [
        (CLAW_BACK_REFUND, params),
        (APPLY_REFUND, params),
        (MARK_REFUNDED, params),
        (AUDIT_IF_TX, params),
    ]
    return Plan(steps=steps, user_id=user_id, invalidate_keys=True)


async def dispute_created(rt: Runtime, dispute: dict[str, Any], event: dict[str, Any]) -> Plan:
    """A chargeback: freeze the account's spending until an operator looks (POST
    /admin/users/{id}/unfreeze)."""
    payment_id = ref_id(dispute.get("payment_intent"))
    row = None
    if payment_id is not None:
        row = await rt.db.fetch_one("SELECT user_id FROM payments WHERE id = :id", {"id": payment_id})
    if row is None:
        return Plan(status="ignored")
    user_id = str(row["user_id"])
    return Plan(
        steps=[(FREEZE, {"user_id": user_id, "reason": "dispute"})], user_id=user_id, invalidate_keys=True
    )
