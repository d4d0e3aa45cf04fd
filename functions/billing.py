"""The billing function (SPEC §6): Stripe Checkout for top-ups and plans, the customer portal, and
the operator's view of Stripe events and frozen accounts.

User routes need a key with the `billing` scope; credits are never granted here, only by the
webhook (functions.webhooks). The work is in `shared.payments`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from shared.accounts.requests import parse_body
from shared.app import function_app, runtime_of
from shared.auth import Admin, Billing, Reader
from shared.observe.lambda_handler import lambda_handler
from shared.openapi import documented
from shared.payments import admin as payments_admin
from shared.payments import coupons, promotions, subscriptions, topups
from shared.payments.requests import CheckoutIn, CouponCreate, RedeemIn, ReferralIn, SubscribeIn

router = APIRouter()


@router.post("/v1/billing/checkout")
@documented(
    "A Stripe Checkout Session for a credit top-up; the webhook grants the credits once paid",
    request=CheckoutIn,
    response="billing.CheckoutSession",
    errors=(400, 401, 403, 502, 503),
    tag="billing",
)
async def checkout(request: Request, principal: Billing) -> dict[str, Any]:
    body = await parse_body(request, CheckoutIn)
    assert principal.user_id is not None
    return await topups.create_checkout(runtime_of(request), principal.user_id, body.amount_usd)


@router.post("/v1/billing/subscribe")
@documented(
    "A Stripe Checkout Session for a plan subscription",
    request=SubscribeIn,
    response="billing.CheckoutSession",
    errors=(400, 401, 403, 502, 503),
    tag="billing",
)
async def subscribe(request: Request, principal: Billing) -> dict[str, Any]:
    body = await parse_body(request, SubscribeIn)
    assert principal.user_id is not None
    return await subscriptions.create_subscription_checkout(runtime_of(request), principal.user_id, body.plan)


@router.get("/v1/billing/portal")
@documented(
    "A Stripe customer portal session (manage the subscription, cards, invoices)",
    response="billing.CheckoutSession",
    errors=(401, 403, 404, 502, 503),
    tag="billing",
)
async def portal(request: Request, principal: Billing) -> dict[str, Any]:
    assert principal.user_id is not None
    return await subscriptions.portal(runtime_of(request), principal.user_id)


@router.post("/v1/billing/redeem")
@documented(
    "Redeem a coupon: credits at once, or a bonus on your next top-up (once per user)",
    request=RedeemIn,
    response="billing.Redemption",
    errors=(400, 401, 403, 404, 409),
    tag="billing",
)
async def redeem(request: Request, principal: Billing) -> dict[str, Any]:
    body = await parse_body(request, RedeemIn)
    assert principal.user_id is not None
    return await coupons.redeem(runtime_of(request), principal.user_id, body.code)


@router.post("/v1/billing/trial")
@documented(
    "Start your one trial: trial credits that expire, on the trial plan's limits and models",
    response="billing.Trial",
    errors=(401, 403, 409, 429),
    tag="billing",
)
async def trial(request: Request, principal: Billing) -> dict[str, Any]:
    assert principal.user_id is not None
    return await promotions.start_trial(runtime_of(request), principal.user_id, principal.ip)


@router.get("/v1/referrals")
@documented(
    "Your referral code and what it earned (scope read)",
    response="billing.Referrals",
    errors=(401, 403),
    tag="billing",
)
async def referrals(request: Request, principal: Reader) -> dict[str, Any]:
    assert principal.user_id is not None
    return await promotions.referrals(runtime_of(request), principal.user_id)


@router.post("/v1/referrals/apply")
@documented(
    "Apply a referral code to your new account: your first top-up pays both of you a bonus",
    request=ReferralIn,
    response="billing.ReferralApplied",
    errors=(400, 401, 403, 404, 409),
    tag="billing",
)
async def apply_referral(request: Request, principal: Billing) -> dict[str, Any]:
    body = await parse_body(request, ReferralIn)
    assert principal.user_id is not None
    return await promotions.apply_referral(runtime_of(request), principal.user_id, body.code)


@router.post("/admin/coupons")
@documented(
    "Create a coupon code",
    request=CouponCreate,
    response="billing.Coupon",
    errors=(400, 401, 403, 409),
    tag="admin",
)
async def create_coupon(request: Request, principal: Admin) -> dict[str, Any]:
    body = await parse_body(request, CouponCreate)
    return await coupons.create(runtime_of(request), principal, body)


@router.get("/admin/coupons")
@documented(
    "Coupons, newest first, with their redemption counts",
    response="billing.CouponList",
    errors=(401, 403),
    tag="admin",
)
async def list_coupons(request: Request, principal: Admin) -> dict[str, Any]:
    return await coupons.list_all(runtime_of(request))


@router.get("/admin/stripe/events")
@documented(
    "Stripe events received, counted by type and status (ignored: not handled)",
    response="billing.EventCounts",
    errors=(401, 403),
    tag="admin",
)
async def stripe_events(request: Request, principal: Admin) -> dict[str, Any]:
    return await payments_admin.event_counts(runtime_of(request))


@router.post("/admin/users/{user_id}/unfreeze")
@documented(
    "Lift a dispute freeze on a user's spending (a debt freeze lifts when the debt is paid)",
    response="billing.FreezeState",
    errors=(401, 403, 404, 409),
    tag="admin",
)
async def unfreeze(request: Request, principal: Admin, user_id: str) -> dict[str, Any]:
    return await payments_admin.unfreeze(runtime_of(request), principal, user_id)


app = function_app([router], title="Gatewayz billing")
handler = lambda_handler(app, "billing")
