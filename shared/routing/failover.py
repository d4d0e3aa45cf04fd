"""The failover walk (SPEC §3): try the planned offers in order and stop at the first answer, or at
the first error that is the caller's own.

What one attempt does is the caller's (`attempt`): a whole call, or opening a stream up to its
first chunk. Each attempt is recorded in the request's context, and feeds passive health.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from shared.config import Timeouts
from shared.errors import (
    GatewayError,
    LoopDetected,
    RateLimited,
    UpstreamFailed,
    UpstreamTimeout,
    error_for_status,
)
from shared.hot.breaker import CLOSED, OPEN
from shared.routing.context import Attempt, RequestContext
from shared.routing.health import HealthBook
from shared.routing.plan import Candidate
from shared.transport.errors import UpstreamError

T = TypeVar("T")
log = logging.getLogger("gatewayz.routing")
LOOP_HINT = (
    "The upstream answered 508 Loop Detected: its base URL leads back to this gateway (check the "
    "<ID>_BASE_URL settings; OPENAI_BASE_URL is also the OpenAI SDK's variable)."
)


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
    if ctx.breaker_note:
        headers["x-gatewayz-breaker"] = ctx.breaker_note
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
    plan: list[Candidate],
    ctx: RequestContext,
    attempt: Callable[[Candidate], Awaitable[T]],
    timeouts: Timeouts,
    health: HealthBook,
) -> tuple[Candidate, T]:
    """Try each planned offer until one answers. Caller errors stop the walk at once.

    An offer whose breaker is open (or half-open with its trials taken) is skipped, shown in
    `x-gatewayz-attempts` as `provider:breaker-open:0`. When every offer was skipped, the one that
    failed longest ago is tried anyway (an outage of all is no reason to refuse without trying),
    said in `x-gatewayz-breaker` and in the log."""
    deadline = ctx.started + timeouts.deadline
    errors: list[UpstreamError] = []
    skipped: list[Candidate] = []
    for candidate in plan:
        if not await _admitted(candidate, health):
            skipped.append(candidate)
            ctx.attempts.append(Attempt(candidate.provider_id, candidate.model_id, "breaker-open", 0))
            continue
        done = await _walk(candidate, ctx, attempt, timeouts, health, deadline, errors)
        if done is not None:
            return candidate, done[0]
    if skipped and len(skipped) == len(plan):
        candidate = min(skipped, key=lambda c: health.last_failure(c.provider_id, c.model_id))
        ctx.breaker_note = f"all-open; tried {candidate.provider_id} (least recently failed)"
        log.warning(
            "every offer of %s has an open breaker: trying %s, the least recently failed",
            plan[0].model_id,
            candidate.provider_id,
        )
        done = await _walk(candidate, ctx, attempt, timeouts, health, deadline, errors)
        if done is not None:
            return candidate, done[0]
    raise exhausted(errors, plan[0].model_id, ctx)


async def _admitted(candidate: Candidate, health: HealthBook) -> bool:
    state = health.state(candidate.provider_id, candidate.model_id)
    if state == CLOSED:
        return True
    if state == OPEN:
        return False
    return await health.trial(candidate.provider_id, candidate.model_id)


async def _walk(
    candidate: Candidate,
    ctx: RequestContext,
    attempt: Callable[[Candidate], Awaitable[T]],
    timeouts: Timeouts,
    health: HealthBook,
    deadline: float,
    errors: list[UpstreamError],
) -> tuple[T] | None:
    """One offer: its call, and at most one wait-and-retry on a short 429. None: it failed over."""
    retried = False
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise exhausted(errors, candidate.model_id, ctx)
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
                Attempt(candidate.provider_id, candidate.model_id, "200", int(elapsed * 1000), t0)
            )
            await health.success(candidate.provider_id, candidate.model_id, elapsed * 1000)
            return (result,)
        elapsed = time.perf_counter() - t0
        ctx.upstream_s += elapsed
        ctx.attempts.append(
            Attempt(candidate.provider_id, candidate.model_id, err.label(), int(elapsed * 1000), t0)
        )
        if not err.failover:
            raise caller_error(err, candidate, ctx)
        if err.status == 429:  # the provider is busy, not broken: "saturated", not a failure
            await health.saturated(candidate.provider_id, candidate.model_id, err.retry_after)
        else:
            await health.failure(candidate.provider_id, candidate.model_id)
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
        return None
