"""The chat pipeline (SPEC §2.3): authenticate → (limit) → reserve → route → call with failover →
settle → record.

Every chat-shaped endpoint goes through `run_chat`; a `Shape` adapts the answer to the caller's
API (OpenAI chat, legacy completions). Authentication happened in the route's dependency; the key
arrives as the principal. Two database round trips per request: the reservation, and the
settlement with its request record.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from shared.auth import Principal
from shared.billing.meter import Meter, worst_case
from shared.billing.pricing import money
from shared.chat_request import check_chat, upstream_body
from shared.errors import GatewayError, PermissionDenied, status_of
from shared.failover import CHAT, RequestContext, Shape, complete, gateway_headers, price, usage_with_cost
from shared.routing import Candidate, parse_preferences
from shared.runtime import Runtime
from shared.streaming import stream_chat


def allowed(plan: list[Candidate], principal: Principal, requested: str) -> list[Candidate]:
    """Drop offers of models the key (or its plan) may not use; none left is a 403."""
    key = principal.key
    if key is None:
        return plan
    kept = [c for c in plan if key.model_allowed(c.model_id)]
    if not kept:
        raise PermissionDenied(f"This API key may not use the model '{requested}'.", code="model_not_allowed")
    return kept


async def run_chat(
    rt: Runtime,
    body: Any,
    ctx: RequestContext,
    principal: Principal,
    shape: Shape = CHAT,
    endpoint: str = "chat",
) -> Response:
    params = check_chat(body)
    prefs = parse_preferences(body.get("provider"), rt.endpoints)
    plan = allowed(rt.router.plan(body, params.needs, prefs), principal, str(body.get("model")))
    clean = upstream_body(body)
    assert principal.key is not None  # inference routes admit user keys only
    meter = Meter(rt, principal.key, ctx.request_id, endpoint, plan[0].model_id)
    await meter.reserve(worst_case(rt, plan, clean, params))
    if params.stream:
        return await stream_chat(rt, clean, params, plan, ctx, shape, meter)
    try:
        candidate, answer = await complete(rt, clean, params, plan, ctx)
    except GatewayError as exc:
        await meter.release(status_of(exc), [a.header() for a in ctx.attempts])
        raise
    except BaseException:
        await meter.release(500, [a.header() for a in ctx.attempts])
        raise
    cost = price(rt, candidate, answer.usage)
    await meter.settle(candidate, answer.usage, cost, [a.header() for a in ctx.attempts])
    out = answer.body
    merged = dict(out.get("usage") or {})
    merged.update(usage_with_cost(answer.usage, cost))
    out["usage"] = merged
    headers = gateway_headers(candidate, ctx, answer.translator)
    headers["x-gatewayz-cost"] = money(cost)
    return Response(orjson.dumps(shape.response(out)), headers=headers, media_type="application/json")
