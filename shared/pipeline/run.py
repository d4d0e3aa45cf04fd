"""The inference pipeline (SPEC §2.3): authenticate → (limit) → reserve → route → call with
failover → settle (and release the rate-limit slot, overlapped) → record. When the limiter will
all but surely admit the request, the reservation is sent alongside the admission
(`shared.limits.forecast`).

Every inference endpoint goes through `run`; its front end (`shared.frontends`) turns the caller's
request into the pivot, OpenAI chat, and renders the answer in the caller's API. Authentication
happened in the route; the key arrives as the principal. Two database round trips per request:
the reservation, and the settlement with its request record — one when the request takes the
spare hold its key's previous settlement wrote (`shared.billing.spares`). Likewise the admission
costs no round trip when the key's previous request's end made it (`shared.limits.spares`).
"""

from __future__ import annotations

import asyncio

import orjson
from starlette.responses import Response

from shared.auth import Principal
from shared.billing import money
from shared.dialects import native_translator_class
from shared.errors import (
    AuthenticationFailed,
    GatewayError,
    InvalidRequest,
    NoProviderAvailable,
    PermissionDenied,
    status_of,
)
from shared.history.recorder import RecordedResponse, Recorder, recorder_for
from shared.limits.limiter import Admission
from shared.pipeline.call import Call, complete, fan_out_count, gateway_headers
from shared.pipeline.frontend import FrontEnd, Inbound
from shared.pipeline.meter import Meter, price, settle_and_finish
from shared.pipeline.request import upstream_body
from shared.pipeline.streaming import stream_chat
from shared.providers import bind
from shared.routing.context import RequestContext
from shared.routing.plan import Candidate, parse_preferences
from shared.runtime import Runtime
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


def native_offers(plan: list[Candidate], front: FrontEnd, why: str) -> list[Candidate]:
    """Offers that speak the caller's API, for a request the pivot cannot carry."""
    kept = [
        c
        for c in plan
        if native_translator_class(front.api, c.endpoint.provider.dialect, c.endpoint.provider.supports)
    ]
    if not kept:
        raise InvalidRequest(f"This request uses {why}, which only {front.native_offers} can serve.")
    return kept


def of_modality(plan: list[Candidate], front: FrontEnd, requested: str) -> list[Candidate]:
    """Offers of models this endpoint serves: an embedding model on chat (or a chat model on
    /v1/embeddings) is the caller's mistake, a 400 that says where the model is served."""
    wanted = front.modality
    kept = [c for c in plan if wanted in c.offer.model.output_modalities]
    if not kept:
        outputs = plan[0].offer.model.output_modalities
        where = next((front.elsewhere[m] for m in outputs if m in front.elsewhere), "a chat endpoint")
        raise InvalidRequest(
            f"The model '{requested}' does not produce {wanted} output here: it is served on {where}.",
            param="model",
            code="model_not_supported",
        )
    return kept


def free_only(plan: list[Candidate], requested: str) -> list[Candidate]:
    """Anonymous callers (layer 3) reach free offers only."""
    kept = [c for c in plan if c.offer.pricing.is_free]
    if not kept:
        raise AuthenticationFailed(
            f"An API key is required for '{requested}': anonymous access covers free models only.",
            code="missing_api_key",
        )
    return kept


async def run(
    rt: Runtime, inbound: Inbound, ctx: RequestContext, principal: Principal, front: FrontEnd
) -> Response:
    body = inbound.body
    params = front.check(body, rt.settings.limits.max_n)
    recorder = recorder_for(rt, principal, ctx, front, body)  # None unless history was asked for
    prefs = parse_preferences(body.get("provider"), rt.endpoints)
    requested = str(body.get("model"))
    byok = principal.key.byok_providers if principal.key else frozenset()
    await rt.health.refresh()  # the shared breakers and latencies, at most a second old
    plan = of_modality(rt.router.plan(body, params.needs, prefs, byok), front, requested)
    if inbound.native_only is not None:
        plan = native_offers(plan, front, inbound.native_only)
    if byok:
        plan = await with_own_keys(rt, plan, principal)
    native = upstream_body(inbound.native, front.consumed) if inbound.native is not None else None
    call = Call(upstream_body(body), params, front.api, native, inbound.headers, inbound.dropped)
    call.via = rt.http.forwarded_via(ctx.incoming_via())
    meter: Meter | None = None
    reserving: asyncio.Future[None] | None = None  # the reservation, when alongside the admission
    if principal.kind == "anonymous":
        plan = free_only(plan, requested)
        calls = max(fan_out_count(c, params) for c in plan) or 1
        admission = await rt.limiter.admit_anonymous(principal.ip or "unknown", calls)
    else:
        plan = allowed(plan, principal, requested)
        key = principal.key
        assert key is not None  # inference routes admit user keys only
        # A fanned-out `n` is n calls, each with the whole prompt: each counts (SPEC §7).
        calls = max(fan_out_count(c, params) for c in plan) or 1
        estimate = estimate_prompt(body) * calls + (params.max_output or 0) * params.n
        meter = Meter(rt, key, ctx, front.endpoint, plan[0].model_id)
        meter.stream = params.stream
        # A request that takes its key's spare hold (shared.billing.spares) sends no reservation.
        if not meter.take_spare(plan, call.body, params) and rt.limiter.likely_admits(key, estimate, calls):
            reserving = meter.reserve_now(plan, call.body, params)
        try:
            admission = await rt.limiter.admit(key, ctx.billing_id, estimate, ctx.take_deferred_ip(), calls)
        except BaseException:
            if reserving is not None or meter.held:  # a refusal (or an outage) of the limiter wins
                await meter.abandon(reserving)
            raise
    try:
        if reserving is not None:
            await reserving
        elif meter is not None and not meter.held:
            await meter.reserve(plan, call.body, params)
        if params.stream:
            return await stream_chat(rt, call, plan, ctx, front, meter, admission, recorder)
        return await _complete(rt, call, plan, ctx, front, meter, admission, recorder)
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
    call: Call,
    plan: list[Candidate],
    ctx: RequestContext,
    front: FrontEnd,
    meter: Meter | None,
    admission: Admission,
    recorder: Recorder | None,
) -> Response:
    candidate, answer = await complete(rt, call, plan, ctx)
    if ctx.attempts:
        rt.health.tokens(
            candidate.provider_id, candidate.model_id, answer.usage.output_tokens, ctx.attempts[-1].ms / 1000
        )
    cost = price(rt, candidate, answer.usage)
    cost = await settle_and_finish(  # as charged
        rt, meter, admission, candidate, answer.usage, cost, ctx.attempt_headers()
    )
    if recorder is not None:  # read before the front end renders (and may reshape) the answer
        recorder.whole(answer.translator.source, candidate.model_id, answer.body)
    out = front.response(answer.body, answer.translator, answer.usage, cost)
    headers = gateway_headers(candidate, ctx, answer.translator)
    headers["x-gatewayz-cost"] = money(cost)
    headers.update(admission.headers())
    if recorder is not None:
        headers["x-gatewayz-session-id"] = recorder.session_id
        return RecordedResponse(orjson.dumps(out), headers, recorder)
    return Response(orjson.dumps(out), headers=headers, media_type="application/json")
