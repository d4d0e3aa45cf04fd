"""Bodies of the billing routes (strict: unknown fields are a 400, like every Gatewayz body)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from shared.accounts.requests import FutureTime, Money, NonNegativeMoney, PlanId, _Body


class CheckoutIn(_Body):
    amount_usd: Money


class SubscribeIn(_Body):
    plan: Annotated[PlanId, Field(description="A plan with a Stripe price (STRIPE_PRICE_<PLAN>)")]


class CouponCreate(_Body):
    code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{3,40}$")]
    kind: Literal["credits", "topup_bonus"]
    credits: NonNegativeMoney | None = Field(default=None, description="USD granted at once (kind credits)")
    bonus_percent: Annotated[int, Field(ge=1, le=1000)] | None = Field(
        default=None, description="Bonus on the next paid top-up, in per cent (kind topup_bonus)"
    )
    max_redemptions: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    per_user: Annotated[int, Field(ge=1, le=1000)] = 1
    expires_at: FutureTime | None = None
    plans: Annotated[list[PlanId], Field(min_length=1, max_length=20)] | None = None

    @model_validator(mode="after")
    def _value(self) -> CouponCreate:
        if self.kind == "credits" and not self.credits:
            raise ValueError("a credits coupon needs credits > 0")
        if self.kind == "topup_bonus" and self.bonus_percent is None:
            raise ValueError("a topup_bonus coupon needs bonus_percent")
        return self


class RedeemIn(_Body):
    code: Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]


class ReferralIn(_Body):
    code: Annotated[str, StringConstraints(min_length=4, max_length=40, pattern=r"^[A-Za-z0-9]+$")]
