"""One upstream call of the pipeline: the attempt's request (`prepare`), the non-streamed call with
failover (`complete`), and the headers every answer carries.

Per attempt, `prepare` picks the translator for the pair (the caller's API, the offer's dialect).
When the offer speaks the caller's API (an Anthropic caller, an Anthropic offer) the caller's own
body goes out as written, with the native model id; otherwise the request travels in the pivot,
OpenAI chat, through the declarative parameter rules (feature gates, provider and offer quirks)
and the dialect's translator.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.catalog import ResolvedOffer
from shared.dialects import native_translator_class, translator_class
from shared.dialects.base import ChatTranslator, Usage
from shared.pipeline.request import ChatParams
from shared.routing.context import RequestContext
from shared.routing.failover import failover
from shared.routing.plan import Candidate
from shared.runtime import Runtime
from shared.transport.errors import UpstreamError
from shared.transport.upstream import read_body

# Parameters that exist only when the provider's API has the feature (providers.toml `supports`).
FEATURE_PARAMS: dict[str, tuple[str, ...]] = {
    "logprobs": ("logprobs", "top_logprobs"),
    "service_tier": ("service_tier",),
    "reasoning_effort": ("reasoning_effort",),
    "top_k": ("top_k",),
}


@dataclass(slots=True)
class Call:
    """What every attempt of one request sends."""

    body: dict[str, Any]  # the pivot: an OpenAI chat request without the gateway's own fields
    params: ChatParams
    api: str = "openai"  # the API the caller speaks
    native: dict[str, Any] | None = None  # the caller's own body, for offers that speak its API
    headers: Mapping[str, str] = field(default_factory=dict)  # caller headers sent with `native`
    dropped: list[str] = field(default_factory=list)  # named when the pivot goes out
    via: str | None = None  # the request came through proxies: theirs and ours (else the client's own)


@dataclass(slots=True)
class Prepared:
    translator: ChatTranslator
    url: str
    headers: dict[str, str]
    body: bytes


def prepare(candidate: Candidate, call: Call, stream: bool, fan_out: bool) -> Prepared:
    """One attempt's upstream request."""
    offer: ResolvedOffer = candidate.offer
    provider = candidate.endpoint.provider
    supports = provider.supports
    kwargs: dict[str, Any] = {
        "model_id": offer.model.id,
        "native_id": offer.offer.native_id,
        "supports": supports,
        "max_output_tokens": offer.max_output_tokens,
    }
    native = (
        native_translator_class(call.api, provider.dialect, supports) if call.native is not None else None
    )
    if native is not None and call.native is not None:
        tr: ChatTranslator = native(**kwargs)
        body = call.native
        if tr.takes_quirks and offer.quirks:
            body = dict(body)
            offer.quirks.apply(body, tr.dropped, tr.adjusted)
        vendor = tr.request(body, stream)
        headers = {**candidate.endpoint.headers, **call.headers}
    else:
        tr = translator_class(provider.dialect)(**kwargs)
        for name in call.dropped:
            tr.drop(name)
        vendor = tr.request(_pivot_body(candidate, call.body, tr, fan_out), stream)
        headers = dict(candidate.endpoint.headers)
    headers["content-type"] = "application/json"
    headers.update(tr.extra_headers)
    if stream:
        headers["accept"] = "text/event-stream"
    if call.via is not None:
        headers["via"] = call.via
    return Prepared(tr, candidate.endpoint.base_url + tr.path(stream), headers, orjson.dumps(vendor))


def _pivot_body(
    candidate: Candidate, body: dict[str, Any], tr: ChatTranslator, fan_out: bool
) -> dict[str, Any]:
    """The pivot request as this offer may receive it: what the provider lacks is dropped and
    named, what it spells differently is adjusted (providers.toml)."""
    provider = candidate.endpoint.provider
    supports = provider.supports
    out = dict(body)
    for feature, names in FEATURE_PARAMS.items():
        if feature not in supports:
            for name in names:
                if name in out:
                    del out[name]
                    tr.drop(name)
    if "reasoning_effort" in out and "reasoning" not in candidate.offer.capabilities:
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
    candidate.offer.quirks.apply(out, tr.dropped, tr.adjusted)
    return out


@dataclass(slots=True)
class Answer:
    """A finished upstream answer (in the pivot's shape, or the caller's own for a native
    translator), with what billing needs."""

    body: dict[str, Any]
    usage: Usage
    translator: ChatTranslator


async def _call_once(
    rt: Runtime, candidate: Candidate, call: Call, fan_out: bool, ctx: RequestContext
) -> Answer:
    prep = prepare(candidate, call, stream=False, fan_out=fan_out)
    tr = prep.translator
    await rt.cloud.authorize(candidate.endpoint, prep.url, prep.headers, prep.body)
    remaining = ctx.started + rt.settings.timeouts.deadline - time.perf_counter()
    resp = await rt.http.post(prep.url, prep.headers, prep.body, limits=rt.http.call_timeout(remaining))
    raw = await read_body(resp)
    if resp.status >= 300:
        raise tr.error(resp.status, resp.headers, raw)
    passed = tr.raw_response(raw)
    if passed is not None:
        return Answer(passed, tr.usage or Usage(), tr)
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
    rt: Runtime, call: Call, plan: list[Candidate], ctx: RequestContext
) -> tuple[Candidate, Answer]:
    async def attempt(candidate: Candidate) -> Answer:
        copies = fan_out_count(candidate, call.params)
        if not copies:
            return await _call_once(rt, candidate, call, False, ctx)
        results = await asyncio.gather(
            *(_call_once(rt, candidate, call, True, ctx) for _ in range(copies)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return merge_answers([r for r in results if isinstance(r, Answer)])

    return await failover(plan, ctx, attempt, rt.settings.timeouts, rt.health)


def gateway_headers(candidate: Candidate, ctx: RequestContext, tr: ChatTranslator) -> dict[str, str]:
    headers = {
        "x-gatewayz-provider": candidate.provider_id,
        "x-gatewayz-model": candidate.model_id,
        "x-gatewayz-attempts": ctx.attempts_header(),
        "x-gatewayz-overhead-ms": ctx.overhead_ms(),
    }
    if ctx.breaker_note:
        headers["x-gatewayz-breaker"] = ctx.breaker_note
    if tr.dropped:
        headers["x-gatewayz-dropped-params"] = ", ".join(dict.fromkeys(tr.dropped))
    if tr.adjusted:
        headers["x-gatewayz-adjusted-params"] = ", ".join(dict.fromkeys(tr.adjusted))
    return headers
