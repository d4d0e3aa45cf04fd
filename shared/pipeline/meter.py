"""Metering one inference request: reserve the worst case before the upstream call, then settle
the real cost (or release when nothing billable happened) — two database round trips in all.

The worst case is what the most expensive planned offer could charge: the prompt counted
generously (two characters a token, an upper bound for most text) and the whole output budget
(`max_tokens`, else the offer's output ceiling), times `n`. A reservation that does not fit is a
402 (or a 403 for a key's spend limit) before any upstream is called.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import anyio

from shared.accounts.keys import KeyRecord
from shared.billing import money
from shared.billing.ledger import RequestRecord
from shared.billing.pricing import cost_of
from shared.dialects.base import Usage
from shared.errors import InsufficientCredits, PermissionDenied
from shared.pipeline.request import ChatParams
from shared.routing.context import RequestContext
from shared.routing.plan import Candidate
from shared.runtime import Runtime
from shared.tokens import estimate_prompt, prompt_chars

_DEFAULT_OUTPUT = 4096  # when neither the request nor the catalog bounds the output


def markup_for(rt: Runtime, candidate: Candidate) -> Decimal:
    """The multiplier over upstream cost: the markup, or only the BYOK fee's share of it."""
    markup = rt.settings.markup
    return markup * rt.settings.byok_fee if candidate.byok else markup


def price(rt: Runtime, candidate: Candidate, usage: Usage) -> Decimal:
    return cost_of(usage, candidate.offer.pricing, markup_for(rt, candidate))


def estimate_usage(body: dict[str, Any], output_chars: int) -> Usage:
    """Usage of a stream whose upstream reported none: estimated, and marked so (SPEC §4)."""
    return Usage(input_tokens=estimate_prompt(body), output_tokens=-(-output_chars // 4), estimated=True)


def worst_case(rt: Runtime, plan: list[Candidate], body: dict[str, object], params: ChatParams) -> Decimal:
    input_tokens = prompt_chars(body) // 2 + 64
    worst = Decimal(0)
    for candidate in plan:
        output = params.max_output or candidate.offer.max_output_tokens or _DEFAULT_OUTPUT
        usage = Usage(input_tokens=input_tokens, output_tokens=output)
        worst = max(worst, cost_of(usage, candidate.offer.pricing, markup_for(rt, candidate)))
    return worst * params.n


class Meter:
    def __init__(self, rt: Runtime, key: KeyRecord, ctx: RequestContext, endpoint: str, model: str) -> None:
        self.rt = rt
        self.key = key
        self.request_id = ctx.billing_id
        self.client_request_id = ctx.request_id if ctx.request_id != ctx.billing_id else None
        self.endpoint = endpoint
        self.model = model
        self.started = time.perf_counter()
        self.held = False
        self.closed = False

    @property
    def tracks_spend(self) -> bool:
        limits = self.key.spend_limits
        return not (limits.day is None and limits.month is None and limits.total is None)

    async def reserve(self, amount: Decimal) -> None:
        limits = self.key.spend_limits
        if amount <= 0 and not self.tracks_spend:
            return  # a free request needs no hold: one round trip saved
        refusal = await self.rt.ledger.reserve(
            user_id=self.key.user_id,
            key_id=self.key.key_id,
            request_id=self.request_id,
            amount=amount,
            limits=limits,
        )
        if refusal is None:
            self.held = True
            return
        if refusal.reason.startswith("spend_limit_"):
            period = refusal.reason.removeprefix("spend_limit_")
            raise PermissionDenied(
                f"This API key's {period} spend limit would be exceeded by this request.",
                code="key_spend_limit_exceeded",
            )
        if refusal.reason == "inactive":
            raise PermissionDenied("This account is suspended.", code="account_suspended")
        raise InsufficientCredits(
            f"Insufficient credits: this request may cost up to ${money(amount)} and "
            f"${money(refusal.available)} is available. Add credits or lower max_tokens."
        )

    def record(self, **fields: object) -> RequestRecord:
        record = RequestRecord(
            request_id=self.request_id,
            user_id=self.key.user_id,
            key_id=self.key.key_id,
            model=self.model,
            endpoint=self.endpoint,
            client_request_id=self.client_request_id,
            latency_ms=int((time.perf_counter() - self.started) * 1000),
            track_spend=self.tracks_spend,
            touch_key=self.rt.keys.should_touch(self.key.key_id),
        )
        for name, value in fields.items():
            setattr(record, name, value)
        return record

    async def settle(
        self, candidate: Candidate, usage: Usage, cost: Decimal, attempts: list[str], status: str = "ok"
    ) -> None:
        if self.closed:
            return
        self.closed = True
        record = self.record(
            model=candidate.model_id,
            provider=candidate.provider_id,
            status=status,
            input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            output_tokens=usage.output_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            estimated=usage.estimated,
            byok=candidate.byok,
            attempts=attempts,
        )
        # Shielded: a caller who hangs up mid-stream is still billed for what was generated.
        with anyio.CancelScope(shield=True):
            await self.rt.ledger.settle(record, cost)

    async def release(self, http_status: int, attempts: list[str]) -> None:
        """Nothing billable happened (every provider failed, or the caller erred): charge nothing."""
        if self.closed:
            return
        self.closed = True
        record = self.record(status="error", http_status=http_status, attempts=attempts)
        with anyio.CancelScope(shield=True):
            await self.rt.ledger.release(record)
