"""Plans bought through Stripe subscriptions (SPEC §5-§6).

- `POST /v1/billing/subscribe {plan}`: a Checkout Session in mode `subscription` for the plan's
  price (`STRIPE_PRICE_<PLAN>`), with the metadata contract copied into `subscription_data`.
- `customer.subscription.created/updated/deleted`: the user's plan follows the subscription as
  Stripe states it (an upgrade or downgrade takes effect when Stripe applies it: at once, or at the
  period end when it was scheduled so); `cancel_at_period_end` keeps the plan until `deleted`.
  Events may arrive out of order: a subscription row only moves forward in event time.
- `invoice.paid`: the plan's monthly allowance, once per invoice (its idempotency key); clears a
  payment failure's grace.
- `invoice.payment_failed`: a grace period (GATEWAYZ_BILLING_GRACE_DAYS) after which the
  scheduled billing job moves the user to Free unless an invoice was paid meanwhile.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.billing import from_pico
from shared.errors import InvalidRequest, NotFound
from shared.payments.effects import (
    KIND_KEY,
    USER_KEY,
    Plan,
    event_time,
    known_user,
    metadata,
    ref_id,
    text,
    user_by_customer,
)
from shared.payments.ledger_steps import EVENT_CLAIMED, credit_steps, repay_steps
from shared.payments.stripe_api import call, client
from shared.runtime import Runtime
from shared.store import Step, now_text

# Stripe statuses in which the plan is paid for (or in Stripe's own trial).
PAID = frozenset({"active", "trialing"})
# In which the plan is over at once. `past_due` keeps it: our grace period decides.
ENDED = frozenset({"canceled", "unpaid", "incomplete_expired", "paused"})

UPSERT = f"""
INSERT INTO subscriptions (id, user_id, customer_id, plan_id, status, current_period_end,
                           cancel_at_period_end, grace_until, updated_at)
SELECT :sub_id, :user_id, :customer, :plan_id, :status, :period_end, :cancel_at_end, NULL, :event_time
WHERE {EVENT_CLAIMED}
ON CONFLICT (id) DO UPDATE SET plan_id = excluded.plan_id, status = excluded.status,
    current_period_end = excluded.current_period_end, cancel_at_period_end = excluded.cancel_at_period_end,
    customer_id = excluded.customer_id, updated_at = excluded.updated_at
WHERE subscriptions.updated_at <= excluded.updated_at
"""
# The user's plan follows the subscription, if this event was the newest word on it.
SET_PLAN = f"""
UPDATE users SET plan_id = :user_plan
WHERE id = :user_id AND {EVENT_CLAIMED}
  AND EXISTS (SELECT 1 FROM subscriptions WHERE id = :sub_id AND updated_at = :event_time)
"""
AUDIT_PLAN = f"""
INSERT INTO audit_log (id, actor_type, actor_id, action, target_type, target_id, details, ip, created_at)
SELECT :audit_id, 'stripe', :sub_id, 'user.plan', 'user', :user_id, :details, NULL, :now
WHERE {EVENT_CLAIMED} AND EXISTS (SELECT 1 FROM subscriptions WHERE id = :sub_id AND updated_at = :event_time)
"""
INVOICE_PAID = f"""
UPDATE subscriptions SET grace_until = NULL, status = 'active'
WHERE id = :sub_id AND {EVENT_CLAIMED}
"""
RESTORE_PLAN = f"UPDATE users SET plan_id = :plan_id WHERE id = :user_id AND {EVENT_CLAIMED}"
PAYMENT_FAILED = f"""
UPDATE subscriptions SET grace_until = COALESCE(grace_until, :grace_until), status = 'past_due'
WHERE id = :sub_id AND {EVENT_CLAIMED}
"""


def price_for(rt: Runtime, plan_id: str) -> str:
    price = rt.settings.payments.prices.get(plan_id)
    if price is None:
        raise InvalidRequest(
            f"The plan {plan_id!r} cannot be bought here.", param="plan", code="unknown_plan"
        )
    return price


def plan_of_price(rt: Runtime, price: str | None) -> str | None:
    for plan_id, candidate in rt.settings.payments.prices.items():
        if candidate == price:
            return plan_id
    return None


async def create_subscription_checkout(rt: Runtime, user_id: str, plan_id: str) -> dict[str, Any]:
    price = price_for(rt, plan_id)
    if await rt.db.fetch_one("SELECT id FROM plans WHERE id = :id", {"id": plan_id}) is None:
        raise InvalidRequest(f"No plan {plan_id!r}.", param="plan", code="unknown_plan")
    user = await rt.db.fetch_one(
        "SELECT email, stripe_customer_id FROM users WHERE id = :id", {"id": user_id}
    )
    assert user is not None
    meta = {USER_KEY: user_id, KIND_KEY: "subscription", "gatewayz_plan": plan_id}
    settings = rt.settings.payments
    params: dict[str, Any] = {
        "mode": "subscription",
        "client_reference_id": user_id,
        "metadata": meta,
        "subscription_data": {"metadata": meta},
        "line_items": [{"price": price, "quantity": 1}],
        "success_url": settings.success_url,
        "cancel_url": settings.cancel_url,
    }
    if user["stripe_customer_id"]:
        params["customer"] = user["stripe_customer_id"]
    else:
        params["customer_email"] = user["email"]
    session = await call(lambda: client(rt).v1.checkout.sessions.create_async(params))
    return {"id": session.id, "url": session.url}


async def portal(rt: Runtime, user_id: str) -> dict[str, Any]:
    row = await rt.db.fetch_one("SELECT stripe_customer_id FROM users WHERE id = :id", {"id": user_id})
    customer = row["stripe_customer_id"] if row else None
    if not customer:
        raise NotFound("You have no Stripe customer yet: make a purchase first.", code="no_customer")
    params = {"customer": customer, "return_url": rt.settings.payments.portal_return_url}
    session = await call(lambda: client(rt).v1.billing_portal.sessions.create_async(params))
    return {"id": session.id, "url": session.url}


def _period_end(sub: dict[str, Any]) -> str | None:
    """`current_period_end`: on the subscription (older API versions) or on its items (newer)."""
    end = sub.get("current_period_end")
    if not isinstance(end, int):
        items = (sub.get("items") or {}).get("data") or []
        end = items[0].get("current_period_end") if items and isinstance(items[0], dict) else None
    return now_text(datetime.fromtimestamp(end, UTC)) if isinstance(end, int) else None


def _price(sub: dict[str, Any]) -> str | None:
    items = (sub.get("items") or {}).get("data") or []
    return ref_id(items[0].get("price")) if items and isinstance(items[0], dict) else None


async def subscription_changed(rt: Runtime, sub: dict[str, Any], event: dict[str, Any]) -> Plan:
    customer = ref_id(sub.get("customer"))
    user_id = text(metadata(sub).get(USER_KEY)) or await user_by_customer(rt, customer)
    if user_id is None:
        return Plan(status="ignored")  # not a Gatewayz subscription
    await known_user(rt, user_id)
    plan_id = plan_of_price(rt, _price(sub)) or text(metadata(sub).get("gatewayz_plan"))
    if plan_id is None:
        return Plan(status="ignored", user_id=user_id)
    status = str(sub.get("status") or "")
    if event["type"] == "customer.subscription.deleted":
        status = "canceled"
    if status in PAID:
        user_plan = plan_id
    elif status in ENDED:
        user_plan = "free"
    else:
        user_plan = None  # past_due (grace), incomplete: the plan stays as it is
    params = {
        "sub_id": str(sub.get("id")),
        "user_id": user_id,
        "customer": customer,
        "plan_id": plan_id,
        "status": status,
        "period_end": _period_end(sub),
        "cancel_at_end": bool(sub.get("cancel_at_period_end")),
        "event_time": event_time(event),
        "user_plan": user_plan,
        "audit_id": f"aud_{event['id']}",
        "details": orjson.dumps({"plan": user_plan, "status": status}).decode(),
        "now": now_text(),
    }
    steps: list[Step] = [(UPSERT, params)]
    if user_plan is not None:
        steps += [(SET_PLAN, params), (AUDIT_PLAN, params)]
    return Plan(steps=steps, user_id=user_id, invalidate_keys=True)


def _invoice_subscription(invoice: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The invoice's subscription id and its metadata: under `parent.subscription_details` in
    current API versions, `subscription` / `subscription_details` in older ones."""
    details = (invoice.get("parent") or {}).get("subscription_details") or invoice.get("subscription_details")
    details = details if isinstance(details, dict) else {}
    sub_id = ref_id(details.get("subscription")) or ref_id(invoice.get("subscription"))
    meta = details.get("metadata")
    return sub_id, meta if isinstance(meta, dict) else {}


def _invoice_price(invoice: dict[str, Any]) -> str | None:
    lines = (invoice.get("lines") or {}).get("data") or []
    for line in lines:
        if not isinstance(line, dict):
            continue
        details = (line.get("pricing") or {}).get("price_details") or {}
        price = ref_id(details.get("price")) or ref_id(line.get("price"))
        if price:
            return price
    return None


async def _subscription_user(
    rt: Runtime, invoice: dict[str, Any]
) -> tuple[str | None, str | None, dict[str, Any]]:
    sub_id, meta = _invoice_subscription(invoice)
    user_id = text(meta.get(USER_KEY))
    if user_id is None and sub_id is not None:
        row = await rt.db.fetch_one("SELECT user_id FROM subscriptions WHERE id = :id", {"id": sub_id})
        user_id = None if row is None else str(row["user_id"])
    if user_id is None:
        user_id = await user_by_customer(rt, ref_id(invoice.get("customer")))
    return user_id, sub_id, meta


async def invoice_paid(rt: Runtime, invoice: dict[str, Any], event: dict[str, Any]) -> Plan:
    user_id, sub_id, meta = await _subscription_user(rt, invoice)
    if user_id is None or sub_id is None:
        return Plan(status="ignored")
    await known_user(rt, user_id)
    plan_id = plan_of_price(rt, _invoice_price(invoice)) or text(meta.get("gatewayz_plan"))
    row = None
    if plan_id is not None:
        row = await rt.db.fetch_one("SELECT monthly_credits_pico FROM plans WHERE id = :id", {"id": plan_id})
    if plan_id is None or row is None:
        return Plan(status="ignored", user_id=user_id)
    invoice_id = str(invoice.get("id"))
    allowance = from_pico(int(row["monthly_credits_pico"]))
    plan = Plan(user_id=user_id, invalidate_keys=True)
    base = {"sub_id": sub_id, "user_id": user_id, "plan_id": plan_id}
    plan.steps += [(INVOICE_PAID, base), (RESTORE_PLAN, base)]
    if allowance > 0:
        tx_id, grant = credit_steps(
            user_id,
            allowance,
            type="allowance",
            description=f"{plan_id} plan: monthly allowance",
            guard=EVENT_CLAIMED,
            guard_params={},
            idempotency_key=f"allowance:{invoice_id}",
            payment_id=invoice_id,
            metadata={"subscription": sub_id, "plan": plan_id},
            actor_type="stripe",
        )
        plan.steps += grant + repay_steps(user_id, tx_id, invoice_id)
    return plan


async def invoice_payment_failed(rt: Runtime, invoice: dict[str, Any], event: dict[str, Any]) -> Plan:
    user_id, sub_id, _ = await _subscription_user(rt, invoice)
    if user_id is None or sub_id is None:
        return Plan(status="ignored")
    grace = datetime.now(UTC) + timedelta(days=rt.settings.payments.grace_days)
    params = {"sub_id": sub_id, "grace_until": now_text(grace)}
    return Plan(steps=[(PAYMENT_FAILED, params)], user_id=user_id)


LAPSED = """
SELECT s.id, s.user_id FROM subscriptions s
WHERE s.grace_until IS NOT NULL AND s.grace_until <= :now
"""
DOWNGRADE = """
UPDATE subscriptions SET grace_until = NULL, status = 'lapsed' WHERE id = :sub_id AND grace_until <= :now
"""
DOWNGRADE_USER = """
UPDATE users SET plan_id = 'free'
WHERE id = :user_id AND EXISTS (SELECT 1 FROM subscriptions WHERE id = :sub_id AND status = 'lapsed')
"""
AUDIT_DOWNGRADE = """
INSERT INTO audit_log (id, actor_type, actor_id, action, target_type, target_id, details, ip, created_at)
SELECT :audit_id, 'system', 'billing-jobs', 'user.plan', 'user', :user_id,
       '{"plan": "free", "reason": "payment failed, grace over"}', NULL, :now
WHERE EXISTS (SELECT 1 FROM subscriptions WHERE id = :sub_id AND status = 'lapsed')
"""


async def downgrade_lapsed(rt: Runtime) -> int:
    """Move to Free the users whose renewal failed and stayed unpaid past the grace period."""
    from shared.billing.ledger import new_id

    now = now_text()
    count = 0
    for row in await rt.db.fetch(LAPSED, {"now": now}):
        params = {"sub_id": row["id"], "user_id": row["user_id"], "now": now, "audit_id": new_id("aud")}
        await rt.db.transaction([(DOWNGRADE, params), (DOWNGRADE_USER, params), (AUDIT_DOWNGRADE, params)])
        count += 1
    if count:
        await rt.keys.invalidate()
    return count
