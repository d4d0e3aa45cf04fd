"""Bodies of the billing routes (strict: unknown fields are a 400, like every Gatewayz body)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.accounts.requests import Money, PlanId, _Body


class CheckoutIn(_Body):
    amount_usd: Money


class SubscribeIn(_Body):
    plan: Annotated[PlanId, Field(description="A plan with a Stripe price (STRIPE_PRICE_<PLAN>)")]
