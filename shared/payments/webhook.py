"""`POST /webhooks/stripe` (SPEC §6): verify, then apply each event exactly once.

- The signature (`Stripe-Signature: t=…,v1=…`, HMAC-SHA256 of `t.payload` with
  STRIPE_WEBHOOK_SECRET) is checked by the `stripe` library with a 300 s tolerance; a missing or
  bad one is a 400 and nothing is written.
- The event's row in `stripe_events` and everything the event changes (ledger rows, balance,
  plan, freeze) are one transaction: a replay finds the row and changes nothing (200); a failure
  (the database cut mid-way) leaves nothing and answers 5xx, so Stripe delivers it again.
- An event type not handled here is stored as `ignored` (200), so operators can count them
  (`GET /admin/stripe/events`).

Which user an event is about comes from the metadata contract of SPEC §6
(`metadata.gatewayz_user_id`, copied into the PaymentIntent and the Subscription), or from what
earlier events recorded (the PaymentIntent's payment row, the customer id).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import orjson

from shared.errors import DependencyUnavailable, InvalidRequest
from shared.payments import subscriptions, topups
from shared.payments.effects import Handler, Plan
from shared.payments.ledger_steps import CLAIM_EVENT, EVENT_RESULT, lock_steps
from shared.runtime import Runtime
from shared.store import Step, now_text

log = logging.getLogger("gatewayz.payments")
TOLERANCE_S = 300


def verify(rt: Runtime, payload: bytes, signature: str | None) -> dict[str, Any]:
    secret = rt.settings.payments.webhook_secret
    if not signature:
        raise InvalidRequest("Missing Stripe-Signature header.", code="missing_signature")
    if not secret:
        raise DependencyUnavailable("Stripe webhooks are not configured (STRIPE_WEBHOOK_SECRET).")
    import stripe

    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(text, signature, secret, TOLERANCE_S)
    except (UnicodeDecodeError, stripe.SignatureVerificationError):
        raise InvalidRequest("Invalid Stripe signature.", code="invalid_signature") from None
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The event is not valid JSON.") from None
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
        or not isinstance((event.get("data") or {}).get("object"), dict)
    ):
        raise InvalidRequest("Not a Stripe event (id, type, data.object).")
    return event


async def _ignore(rt: Runtime, obj: dict[str, Any], event: dict[str, Any]) -> Plan:
    return Plan(status="ignored")


async def _acknowledge(rt: Runtime, obj: dict[str, Any], event: dict[str, Any]) -> Plan:
    """Handled by another event (a PaymentIntent's money arrives with its Checkout Session)."""
    return Plan()


HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": topups.session_completed,
    "checkout.session.async_payment_succeeded": topups.session_completed,
    "checkout.session.async_payment_failed": _acknowledge,
    "charge.refunded": topups.charge_refunded,
    "charge.dispute.created": topups.dispute_created,
    "payment_intent.succeeded": _acknowledge,
    "payment_intent.payment_failed": _acknowledge,
    "invoice.paid": subscriptions.invoice_paid,
    "invoice.payment_failed": subscriptions.invoice_payment_failed,
    "customer.subscription.created": subscriptions.subscription_changed,
    "customer.subscription.updated": subscriptions.subscription_changed,
    "customer.subscription.deleted": subscriptions.subscription_changed,
}


async def handle(rt: Runtime, payload: bytes, signature: str | None) -> dict[str, Any]:
    event = verify(rt, payload, signature)
    event_id, kind = event["id"], event["type"]
    seen = await rt.db.fetch_one("SELECT status FROM stripe_events WHERE id = :id", {"id": event_id})
    if seen is not None:  # a replay: the usual case needs no transaction at all
        return {"received": True, "id": event_id, "type": kind, "status": "duplicate"}
    handler = HANDLERS.get(kind, _ignore)
    plan = await handler(rt, event["data"]["object"], event)
    claim = os.urandom(16).hex()
    created = event.get("created")
    claim_params = {
        "event_id": event_id,
        "type": kind[:200],
        "status": plan.status,
        "claim": claim,
        "user_id": plan.user_id,
        "livemode": bool(event.get("livemode")),
        "created": created if isinstance(created, int) else 0,
        "payload": payload.decode("utf-8"),
        "now": now_text(),
    }
    steps: list[Step] = []
    if plan.user_id is not None:
        steps += lock_steps(rt.db.dialect, plan.user_id)
    guard = {"event_id": event_id, "claim": claim}
    steps.append((CLAIM_EVENT, claim_params))
    steps += [(sql, {**params, **guard}) for sql, params in plan.steps]
    steps.append((EVENT_RESULT, guard))
    rows = (await rt.db.transaction(steps))[-1]
    applied = bool(rows) and rows[0]["claim"] == claim
    if not applied:
        return {"received": True, "id": event_id, "type": kind, "status": "duplicate"}
    if plan.invalidate_keys:
        await rt.keys.invalidate()
    for notify in plan.after:
        await notify()
    if plan.status == "ignored":
        log.info("stripe event %s of type %s ignored (not handled)", event_id, kind)
    return {"received": True, "id": event_id, "type": kind, "status": plan.status}


__all__ = ["HANDLERS", "handle", "verify"]
