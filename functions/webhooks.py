"""The Stripe webhook function (SPEC §6): `POST /webhooks/stripe`, authenticated by its signature
only (no API key). The work is in `shared.payments.webhook`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from shared.app import function_app, runtime_of
from shared.observe.lambda_handler import lambda_handler
from shared.openapi import documented
from shared.payments import webhook

router = APIRouter()


@router.post("/webhooks/stripe")
@documented(
    "Stripe's webhook: a signed event, applied exactly once (a replay is a 200 no-op)",
    request="billing.StripeEvent",
    response="billing.WebhookAck",
    errors=(400, 500, 503),
    tag="billing",
)
async def stripe_webhook(request: Request) -> dict[str, Any]:
    payload = await request.body()
    return await webhook.handle(runtime_of(request), payload, request.headers.get("stripe-signature"))


app = function_app([router], title="Gatewayz webhooks")
handler = lambda_handler(app, "webhooks")
