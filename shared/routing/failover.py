"""Calling upstreams: one attempt's request (`prepare`), the failover walk (`failover`) and the
non-streamed call (`complete`), plus the helpers the streamed half shares.

Per attempt, `prepare` applies the declarative parameter rules (feature gates, provider and offer
quirks) and the dialect's translator. `failover` tries the planned offers in order and stops at
the first answer, or at the first error that is the caller's own (SPEC §3).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import orjson

from shared.billing import money
from shared.billing.pricing import cost_of
from shared.catalog import ResolvedOffer
from shared.pipeline.request import ChatParams
from shared.dialects import translator_class
from shared.dialects.base import ChatTranslator, UpstreamError, Usage
from shared.errors import (
    GatewayError,
    LoopDetected,
    RateLimited,
    UpstreamFailed,
    UpstreamTimeout,
    error_for_status,
)
from shared.routing.plan import Candidate
from shared.runtime import Runtime
from shared.tokens import estimate_prompt
from shared.transport.upstream import read_body

T = TypeVar("T")
LOOP_HINT = (
    "The upstream answered 508 Loop Detected: its base URL leads back to this gateway (check the "
    "<ID>_BASE_URL settings; OPENAI_BASE_URL is also the OpenAI SDK's variable)."
)

# Parameters that exist only when the provider's API has the feature (providers.toml `supports`).
FEATURE_PARAMS: dict[str, tuple[str, ...]] = {
    "logprobs": ("logprobs", "top_logprobs"),
    "service_tier": ("service_tier",),
    "reasoning_effort": ("reasoning_effort",),
}


@dataclass(slots=True)
class Attempt:
    provider: str
    model: str
    status: str
    ms: int

    def header(self) -> str:
        return f"{self.provider}:{self.status}:{self.ms}"


@dataclass(slots=True)
class RequestContext:
    request_id: str  # echoed to the caller (theirs if they sent a sane one)
    started: float = field(default_factory=time.perf_counter)  # perf_counter at arrival
    billing_id: str = ""  # always server-generated: the key of holds, charges and records
    attempts: list[Attempt] = field(default_factory=list)
    upstream_s: float = 0.0  # time spent waiting on upstreams, for x-gatewayz-overhead-ms
    # The request's ASGI state: the gateway middleware leaves `deferred_ip` there when layer 1
    # is to be checked with the admission (`Limiter.admit`).
    state: dict[str, Any] | None = None

    def take_deferred_ip(self) -> str | None:
        return self.state.pop("deferred_ip", None) if self.state is not None else None

    def incoming_via(self) -> str | None:
        """The request's own `via` (it came through proxies), which upstream calls pass on."""
        return self.state.get("via") if self.state is not None else None

    def overhead_ms(self) -> str:
        return f"{max(0.0, (time.perf_counter() - self.started - self.upstream_s) * 1000):.2f}"

    def __post_init__(self) -> None:
        if not self.billing_id:
            self.billing_id = self.request_id

    def attempts_header(self) -> str:
        return ", ".join(self.attempt_headers())

    def attempt_headers(self) -> list[str]:
        return [a.header() for a in self.attempts]


class Shape:
    """The caller's API: OpenAI chat completions. Subclasses reshape answers for other APIs."""

    def response(self, out: dict[str, Any]) -> dict[str, Any]:
        return out

    def chunk(self, chunk: dict[str, Any]) -> dict[str, Any]:
        return chunk


CHAT = Shape()


@dataclass(slots=True)
class Prepared:
    translator: ChatTranslator
    url: str
    headers: dict[str, str]
    body: bytes


def prepare(
    candidate: Candidate, body: dict[str, Any], stream: bool, fan_out: bool, via: str | None = None
) -> Prepared:
    """One attempt's upstream request: feature gates, quirks, then the dialect's translator.
    `via`: the header to send when the request came through proxies (else the client's own)."""
    offer: ResolvedOffer = candidate.offer
    provider = candidate.endpoint.provider
    supports = provider.supports
    tr = translator_class(provider.dialect)(
        model_id=offer.model.id,
        native_id=offer.offer.native_id,
        supports=supports,
        max_output_tokens=offer.max_output_tokens,
    )
    out = dict(body)
    for feature, names in FEATURE_PARAMS.items():
        if feature not in supports:
            for name in names:
                if name in out:
                    del out[name]
                    tr.drop(name)
    if "reasoning_effort" in out and "reasoning" not in offer.capabilities:
        del out["reasoning_effort"]
        tr.drop("reasoning_effort")
    if "developer_role" not in supports and any(m.get("role") == "developer" for m in out["messages"]):
        # Most OpenAI-compatible servers reject the `developer` role; `system` is its meaning there.
        out["messages"] = [
            {**m, "role": "system"} if m.get("role") == "developer" else m for m in out["messages"]
        ]
        tr.adjusted.append("developer_role")
    if provider.dialect != "openai":
        out.pop("stream_options", None)  # consumed here: usage is always captured, then shown on request
    if fan_out:
        out.pop("n", None)
    offer.quirks.apply(out, tr.dropped, tr.adjusted)
    vendor = tr.request(out, stream)
    headers = {**candidate.endpoint.headers, "content-type": "application/json", **tr.extra_headers}
    if stream:
        headers["accept"] = "text/event-stream"
    if via is not None:
        headers["via"] = via
    return Prepared(tr, candidate.endpoint.base_url + tr.path(stream), headers, orjson.dumps(vendor))


def _redact(message: str, candidate: Candidate) -> str:
    key = candidate.endpoint.api_key
    return message.replace(key, "***") if key and key in message else message


def caller_error(err: UpstreamError, candidate: Candidate, ctx: RequestContext) -> GatewayError:
    """An upstream 4xx that is the caller's own mistake, returned as it is (SPEC §3)."""
    status = err.status or 400
    message = f"{candidate.provider_id}: {_redact(err.message, candidate)}"
    gw = error_for_status(status, message, param=err.param)
    gw.headers["x-gatewayz-attempts"] = ctx.attempts_header()
    return gw


def exhausted(errors: list[UpstreamError], model: str, ctx: RequestContext) -> GatewayError:
    tried = ", ".join(f"{a.provider} ({a.status})" for a in ctx.attempts) or "none in time"
    message = f"No provider could serve '{model}': {tried}"
    headers = {"x-gatewayz-attempts": ctx.attempts_header()}
    if errors and all(e.status == 429 for e in errors):
        waits = [e.retry_after for e in errors if e.retry_after is not None]
        if waits:
            headers["retry-after"] = str(max(1, int(min(waits) + 0.999)))
        return RateLimited(message, code="upstream_rate_limited", headers=headers)
    if not errors or all(e.kind == "timeout" for e in errors):
        return UpstreamTimeout(message, headers=headers)
    if all(e.status == 508 for e in errors):  # each offer led back to a gateway already on the way
        return LoopDetected(f"{message}. {LOOP_HINT}", headers=headers)
    return UpstreamFailed(message, headers=headers)


async def failover(
    rt: Runtime,
    plan: list[Candidate],
    ctx: RequestContext,
    attempt: Callable[[Candidate], Awaitable[T]],
) -> tuple[Candidate, T]:
    """Try each planned offer until one answers. Caller errors stop the walk at once."""
    timeouts = rt.settings.timeouts
    deadline = ctx.started + timeouts.deadline
    errors: list[UpstreamError] = []
    for candidate in plan:
        retried = False
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise exhausted(errors, plan[0].model_id, ctx)
            t0 = time.perf_counter()
            try:
                # Each attempt bounds itself with the upstream client's timers (what is left of the
                # deadline for a whole call; the idle timeout for each read of a stream).
                result = await attempt(candidate)
            except UpstreamError as exc:
                err = exc
            else:
                elapsed = time.perf_counter() - t0
                ctx.upstream_s += elapsed
                ctx.attempts.append(
                    Attempt(candidate.provider_id, candidate.model_id, "200", int(elapsed * 1000))
                )
                rt.health.success(candidate.provider_id, candidate.model_id, elapsed * 1000)
                return candidate, result
            elapsed = time.perf_counter() - t0
            ctx.upstream_s += elapsed
            ctx.attempts.append(
                Attempt(candidate.provider_id, candidate.model_id, err.label(), int(elapsed * 1000))
            )
            if not err.failover:
                raise caller_error(err, candidate, ctx)
            rt.health.failure(candidate.provider_id, candidate.model_id)
            errors.append(err)
            wait = err.retry_after
            if (
                err.status == 429
                and not retried
                and wait is not None
                and wait <= timeouts.retry_after_max
                and deadline - time.perf_counter() > wait
            ):
                retried = True
                await asyncio.sleep(wait)
                continue
            break
    raise exhausted(errors, plan[0].model_id, ctx)


@dataclass(slots=True)
class Answer:
    """A finished upstream answer in OpenAI shape, with what billing needs."""

    body: dict[str, Any]
    usage: Usage
    translator: ChatTranslator


async def _call_once(
    rt: Runtime, candidate: Candidate, body: dict[str, Any], fan_out: bool, ctx: RequestContext
) -> Answer:
    prep = prepare(candidate, body, False, fan_out, rt.http.forwarded_via(ctx.incoming_via()))
    tr = prep.translator
    remaining = ctx.started + rt.settings.timeouts.deadline - time.perf_counter()
    resp = await rt.http.post(prep.url, prep.headers, prep.body, limits=rt.http.call_timeout(remaining))
    raw = await read_body(resp)
    if resp.status >= 300:
        raise tr.error(resp.status, resp.headers, raw)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamError(502, "the upstream answered with malformed JSON", kind="protocol") from None
    if not isinstance(data, dict):
        raise UpstreamError(502, "the upstream answered with an unexpected body", kind="protocol")
    out = tr.response(data)
    return Answer(out, tr.usage or Usage(), tr)


def merge_answers(answers: list[Answer]) -> Answer:
    """n single-choice answers (a fan-out for providers without `n`) → one answer with n choices."""
    first = answers[0]
    usage = Usage()
    choices: list[dict[str, Any]] = []
    for i, answer in enumerate(answers):
        usage.add(answer.usage)
        for choice in answer.body.get("choices") or ():
            choices.append({**choice, "index": i})
    body = {**first.body, "choices": choices, "usage": usage.openai()}
    return Answer(body, usage, first.translator)


def fan_out_count(candidate: Candidate, params: ChatParams) -> int:
    return params.n if params.n > 1 and "n" not in candidate.endpoint.provider.supports else 0


async def complete(
    rt: Runtime, body: dict[str, Any], params: ChatParams, plan: list[Candidate], ctx: RequestContext
) -> tuple[Candidate, Answer]:
    async def attempt(candidate: Candidate) -> Answer:
        copies = fan_out_count(candidate, params)
        if not copies:
            return await _call_once(rt, candidate, body, False, ctx)
        results = await asyncio.gather(
            *(_call_once(rt, candidate, body, True, ctx) for _ in range(copies)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return merge_answers([r for r in results if isinstance(r, Answer)])

    return await failover(rt, plan, ctx, attempt)


def gateway_headers(candidate: Candidate, ctx: RequestContext, tr: ChatTranslator) -> dict[str, str]:
    headers = {
        "x-gatewayz-provider": candidate.provider_id,
        "x-gatewayz-model": candidate.model_id,
        "x-gatewayz-attempts": ctx.attempts_header(),
        "x-gatewayz-overhead-ms": ctx.overhead_ms(),
    }
    if tr.dropped:
        headers["x-gatewayz-dropped-params"] = ", ".join(dict.fromkeys(tr.dropped))
    if tr.adjusted:
        headers["x-gatewayz-adjusted-params"] = ", ".join(dict.fromkeys(tr.adjusted))
    return headers


def markup_for(rt: Runtime, candidate: Candidate) -> Decimal:
    """The multiplier over upstream cost: the markup, or only the BYOK fee's share of it."""
    markup = rt.settings.markup
    return markup * rt.settings.byok_fee if candidate.byok else markup


def price(rt: Runtime, candidate: Candidate, usage: Usage) -> Decimal:
    return cost_of(usage, candidate.offer.pricing, markup_for(rt, candidate))


def usage_with_cost(usage: Usage, cost: Decimal) -> dict[str, Any]:
    out = usage.openai()
    # A JSON number written from the exact decimal (as OpenRouter does), never via a float.
    out["cost"] = orjson.Fragment(money(cost).encode())
    return out


def estimate_usage(body: dict[str, Any], output_chars: int) -> Usage:
    return Usage(input_tokens=estimate_prompt(body), output_tokens=-(-output_chars // 4), estimated=True)
