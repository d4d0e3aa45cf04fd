"""The chat pipeline (SPEC §2.3): validate → route → call with failover → price → respond.

Every chat-shaped endpoint goes through `run_chat`; a `Shape` adapts the answer to the caller's
API (OpenAI chat, legacy completions). Accounts, limits and credits hook in here when they land.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from shared.billing.pricing import money
from shared.chat_request import check_chat, upstream_body
from shared.failover import CHAT, RequestContext, Shape, complete, gateway_headers, price, usage_with_cost
from shared.routing import parse_preferences
from shared.runtime import Runtime
from shared.streaming import stream_chat


async def run_chat(rt: Runtime, body: Any, ctx: RequestContext, shape: Shape = CHAT) -> Response:
    params = check_chat(body)
    prefs = parse_preferences(body.get("provider"), rt.endpoints)
    plan = rt.router.plan(body, params.needs, prefs)
    clean = upstream_body(body)
    if params.stream:
        return await stream_chat(rt, clean, params, plan, ctx, shape)
    candidate, answer = await complete(rt, clean, params, plan, ctx)
    cost = price(rt, candidate, answer.usage)
    out = answer.body
    merged = dict(out.get("usage") or {})
    merged.update(usage_with_cost(answer.usage, cost))
    out["usage"] = merged
    headers = gateway_headers(candidate, ctx, answer.translator)
    headers["x-gatewayz-cost"] = money(cost)
    return Response(orjson.dumps(shape.response(out)), headers=headers, media_type="application/json")
