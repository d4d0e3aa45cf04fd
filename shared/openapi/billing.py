"""Schemas of the billing and webhook routes (SPEC §6) for the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from shared.openapi.base import Shape


class CheckoutSession(Shape):
    id: str = Field(description="Stripe's session id (cs_…, or bps_… for the portal)")
    url: str = Field(description="Where to send the user")


class StripeEvent(Shape):
    id: str
    object: str = "event"
    type: str
    created: int
    data: dict[str, Any]


class WebhookAck(Shape):
    received: bool
    id: str
    type: str
    status: str = Field(description="processed, ignored (type not handled) or duplicate (a replay)")


class EventCount(Shape):
    type: str
    status: str
    count: int


class EventCounts(Shape):
    data: list[EventCount]


class FreezeState(Shape):
    user_id: str
    frozen: str | None = None
    debt: str


class JobResult(Shape):
    downgraded: int
    expired_trials: int


class Redemption(Shape):
    code: str
    kind: str
    status: str = Field(description="applied (credits granted) or pending (a bonus on the next top-up)")
    credits: str | None = None
    bonus_percent: int | None = None


class Coupon(Shape):
    code: str
    kind: str
    credits: str
    bonus_percent: int | None = None
    max_redemptions: int | None = None
    per_user: int
    redemptions: int
    plans: list[str] | None = None
    expires_at: str | None = None
    disabled: bool
    created_at: str


class CouponList(Shape):
    data: list[Coupon]


class Trial(Shape):
    plan: str
    credits: str
    expires_at: str
    allowed_models: list[str] | None = None


class Referrals(Shape):
    code: str
    referred: int
    bonuses: int
    bonuses_this_month: int
    monthly_cap: int
    bonus: str
    earned: str


class ReferralApplied(Shape):
    referred_by: str
