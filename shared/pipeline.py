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
from shared.billing import money
from shared.billing.meter import Meter, worst_case
from shared.chat_request import check_chat, upstream_body
from shared.errors import AuthenticationFailed, GatewayError, NoProviderAvailable, PermissionDenied, status_of
from shared.failover import CHAT, RequestContext, Shape, complete, gateway_headers, price, usage_with_cost
from shared.limits.limiter import Admission
from shared.providers import bind
from shared.routing import Candidate, parse_preferences
from shared.runtime import Runtime
from shared.streaming import stream_chat
from shared.tokens import estimate_prompt


def allowed(plan: list[Candidate], principal: Principal, requested: str) -> list[Candidate]:
    """Drop offers of models the key (or its plan) may not use; none left is a 403."""
    key = principal.key
    if key is None:
        return plan
    kept = [c for c in plan if key.model_allowed(c.model_id)]
    if not kept:
        raise PermissionDenied(f"This API key may not use the model '{requested}'.", code="model_not_allowed")
    return kept


async def with_own_keys(rt: Runtime, plan: list[Candidate], principal: Principal) -> list[Candidate]:
    """Serve offers of providers the caller holds a key for with that key (BYOK, SPEC §4)."""
    from shared.accounts.byok import byok_key  # loads cryptography: only for callers with own keys

    assert principal.key is not None
    out = []
    for candidate in plan:
        provider = candidate.endpoint.provider
        key = (
            await byok_key(rt, principal.key.user_id, provider.id)
            if provider.id in principal.key.byok_providers
            else None
        )
        if key is not None:
            out.append(Candidate(candidate.offer, bind(provider, rt.settings, key=key), byok=True))
        elif candidate.endpoint.configured:
            out.append(candidate)
    if not out:
        raise NoProviderAvailable(
            "No provider can serve this request: your provider key was removed meanwhile."
        )
    return out


def free_only(plan: list[Candidate], requested: str) -> list[Candidate]:
    """Anonymous callers (layer 3) reach free offers only."""
    kept = [c for c in plan if c.offer.pricing.is_free]
    if not kept:
        raise AuthenticationFailed(
            f"An API key is required for '{requested}': anonymous access covers free models only.",
            code="missing_api_key",
        )
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
    requested = str(body.get("model"))
    byok = principal.key.byok_providers if principal.key else frozenset()
    plan = rt.router.plan(body, params.needs, prefs, byok)
    if byok:
        plan = await with_own_keys(rt, plan, principal)
    if principal.kind == "anonymous":
        plan = free_only(plan, requested)
        admission = await rt.limiter.admit_anonymous(principal.ip or "unknown")
    else:
        plan = allowed(plan, principal, requested)
        assert principal.key is not None  # inference routes admit user keys only
        estimate = estimate_prompt(body) + (params.max_output or 0) * params.n
        admission = await rt.limiter.admit(principal.key, ctx.billing_id, estimate, ctx.take_deferred_ip())
    clean = upstream_body(body)
    meter = Meter(rt, principal.key, ctx, endpoint, plan[0].model_id) if principal.key else None
    try:
        if meter is not None:
            await meter.reserve(worst_case(rt, plan, clean, params))
        if params.stream:
            return await stream_chat(rt, clean, params, plan, ctx, shape, meter, admission)
        return await _complete(rt, clean, params, plan, ctx, shape, meter, admission)
    except BaseException as exc:
        # The slot first: releasing the hold is a database call that fails in an outage, and a
        # slot left behind would lock the user out until its lease expires (~11 minutes).
        await rt.limiter.finish(admission, None)
        if meter is not None:
            await meter.release(
                status_of(exc) if isinstance(exc, GatewayError) else 500, ctx.attempt_headers()
            )
        raise


async def _complete(
    rt: Runtime,
    body: dict[str, Any],
    params: Any,
    plan: list[Candidate],
    ctx: RequestContext,
    shape: Shape,
    meter: Meter | None,
    admission: Admission,
) -> Response:
    candidate, answer = await complete(rt, body, params, plan, ctx)
    cost = price(rt, candidate, answer.usage)
    if meter is not None:
        await meter.settle(candidate, answer.usage, cost, ctx.attempt_headers())
    await rt.limiter.finish(admission, answer.usage.prompt_tokens + answer.usage.output_tokens)
    out = answer.body
    merged = dict(out.get("usage") or {})
    merged.update(usage_with_cost(answer.usage, cost))
    out["usage"] = merged
    headers = gateway_headers(candidate, ctx, answer.translator)
    headers["x-gatewayz-cost"] = money(cost)
    headers.update(admission.headers())
    return Response(orjson.dumps(shape.response(out)), headers=headers, media_type="application/json")
