"""Metering one inference request: reserve the worst case before the upstream call, then settle
the real cost (or release when nothing billable happened) — two database round trips in all, or
one when the request takes a spare hold its key's previous settlement wrote (shared.billing.spares).

The worst case is what the most expensive planned offer could charge: the prompt counted
generously (two characters a token, an upper bound for most text) and the whole output budget
(`max_tokens`, else the offer's output ceiling), times `n`. A reservation that does not fit is a
402 (or a 403 for a key's spend limit) before any upstream is called; the 402 says what was
reserved, what is available, and the largest `max_tokens` that would fit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal
from typing import Any

from shared import observe
from shared.accounts.keys import KeyRecord
from shared.billing import money
from shared.billing.ledger import RequestRecord, ReserveRefusal, Spare
from shared.billing.pricing import cost_of
from shared.dialects.base import Usage
from shared.errors import DependencyUnavailable, InsufficientCredits, PermissionDenied
from shared.limits.limiter import Admission
from shared.pipeline.request import ChatParams
from shared.routing.context import RequestContext
from shared.routing.plan import Candidate
from shared.runtime import Runtime
from shared.tokens import estimate_prompt, prompt_chars

log = logging.getLogger("gatewayz.billing")
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


def prompt_bound(body: dict[str, object]) -> int:
    """The prompt's tokens, counted generously (two characters a token, plus a margin)."""
    return prompt_chars(body) // 2 + 64


def output_bound(candidate: Candidate, params: ChatParams) -> int:
    if params.max_output is not None:
        return params.max_output  # 0 for an endpoint without output tokens (embeddings)
    return candidate.offer.max_output_tokens or _DEFAULT_OUTPUT


def worst_case(
    rt: Runtime, plan: list[Candidate], input_tokens: int, params: ChatParams, max_output: int | None = None
) -> Decimal:
    """The most the request could cost on any planned offer; `max_output` stands in for the
    request's own output budget (what a smaller `max_tokens` would reserve)."""
    worst = Decimal(0)
    for candidate in plan:
        output = output_bound(candidate, params) if max_output is None else max_output
        usage = Usage(input_tokens=input_tokens, output_tokens=output)
        if params.images:  # one image's worst case (its tokens, or its price), times the images
            usage.images, usage.image_kind = 1, params.image_kind
        worst = max(worst, cost_of(usage, candidate.offer.pricing, markup_for(rt, candidate)))
    return worst * params.n * max(params.images, 1)


def largest_fitting_output(
    rt: Runtime, plan: list[Candidate], input_tokens: int, params: ChatParams, available: Decimal
) -> int:
    """The largest `max_tokens` whose worst case fits in `available` (0 when not even one token
    does). A binary search over the same computation as the reservation, so the advice is exact;
    it runs on the refusal path only."""
    low, high = 0, max(output_bound(c, params) for c in plan)
    while low < high:
        middle = (low + high + 1) // 2
        if worst_case(rt, plan, input_tokens, params, middle) <= available:
            low = middle
        else:
            high = middle - 1
    return low


def insufficient(
    rt: Runtime,
    plan: list[Candidate],
    input_tokens: int,
    params: ChatParams,
    amount: Decimal,
    available: Decimal,
) -> InsufficientCredits:
    """The 402: what was reserved and why, what is available, and what the caller can change."""
    if params.images:
        return InsufficientCredits(
            f"Insufficient credits: generating {params.images} image(s) may cost up to ${money(amount)} "
            f"at the dearest eligible provider's price and ${money(available)} is available. Add "
            "credits, or ask for fewer images (n) or a smaller size or quality."
        )
    if params.max_output == 0:  # input tokens only (embeddings): nothing to shorten but the input
        return InsufficientCredits(
            f"Insufficient credits: this request may cost up to ${money(amount)} (an input of up to "
            f"{input_tokens} tokens at the dearest eligible provider's price) and ${money(available)} "
            "is available. Add credits, or send less input."
        )
    if params.max_output:
        budget = f"max_tokens={params.max_output}"
    else:
        ceiling = max(output_bound(c, params) for c in plan)
        budget = f"no max_tokens, so the model's output limit of {ceiling} tokens"
    copies = f", times n={params.n}" if params.n > 1 else ""
    fits = largest_fitting_output(rt, plan, input_tokens, params, available)
    advice = (
        f"Add credits, or set max_tokens to {fits} or less."
        if fits
        else "Add credits: not even max_tokens=1 fits in what is available."
    )
    return InsufficientCredits(
        f"Insufficient credits: this request may cost up to ${money(amount)} (a prompt of up to "
        f"{input_tokens} tokens and {budget}{copies}, at the dearest eligible provider's price) and "
        f"${money(available)} is available. {advice}"
    )


class Meter:
    def __init__(self, rt: Runtime, key: KeyRecord, ctx: RequestContext, endpoint: str, model: str) -> None:
        self.rt = rt
        self.key = key
        self.ctx = ctx  # its attempts and upstream time, for the observability seam
        self.stream = False  # set by the pipeline for a streamed request
        self.request_id = ctx.billing_id
        self.client_request_id = ctx.request_id if ctx.request_id != ctx.billing_id else None
        self.endpoint = endpoint
        self.model = model
        self.started = time.perf_counter()
        self.held = False
        self.closed = False
        self.amount = Decimal(0)  # what its hold holds
        self.spare: Spare | None = None  # the spare hold it took (shared.billing.spares)

    @property
    def tracks_spend(self) -> bool:
        return self.key.has_spend_limits

    def take_spare(self, plan: list[Candidate], body: dict[str, object], params: ChatParams) -> bool:
        """Hold the request's worst case with the key's spare, when one is waiting that covers it:
        then no reservation is sent."""
        if not self.rt.spares.waits_for(self.key):
            return False  # (the worst case is computed once, by the reservation)
        amount = worst_case(self.rt, plan, prompt_bound(body), params)
        self.spare = self.rt.spares.take_for(self.key, amount) if amount > 0 else None
        if self.spare is None:
            return False
        self.held, self.amount = True, amount
        return True

    async def reserve(self, plan: list[Candidate], body: dict[str, object], params: ChatParams) -> None:
        """Hold the request's worst case; a 402 or 403 when it does not fit."""
        input_tokens = prompt_bound(body)
        amount = worst_case(self.rt, plan, input_tokens, params)
        if amount <= 0 and not self.tracks_spend:
            return  # a free request needs no hold: one round trip saved
        refusal = await self._reserve(amount)
        short = refusal is not None and refusal.reason == "insufficient_credits"
        if short and await self.rt.spares.drop_user(self.key.user_id):  # this instance's spares held it
            refusal = await self._reserve(amount)
        if refusal is None:
            self.held, self.amount = True, amount
            return
        if refusal.reason.startswith("spend_limit_"):
            period = refusal.reason.removeprefix("spend_limit_")
            raise PermissionDenied(
                f"This API key's {period} spend limit would be exceeded by this request.",
                code="key_spend_limit_exceeded",
            )
        if refusal.reason == "frozen":
            raise PermissionDenied(
                "Spending on this account is frozen (a refund left a balance owed, or a payment is "
                "disputed): a top-up pays what is owed.",
                code="account_frozen",
            )
        if refusal.reason == "inactive":
            raise PermissionDenied("This account is suspended.", code="account_suspended")
        raise insufficient(self.rt, plan, input_tokens, params, amount, refusal.available)

    async def _reserve(self, amount: Decimal) -> ReserveRefusal | None:
        return await self.rt.ledger.reserve(
            user_id=self.key.user_id,
            key_id=self.key.budget_id,  # its spend limits count the spend of the keys sharing them
            request_id=self.request_id,
            amount=amount,
            limits=self.key.spend_limits,
        )

    def reserve_now(
        self, plan: list[Candidate], body: dict[str, object], params: ChatParams
    ) -> asyncio.Future[None]:
        """The reservation, started now and awaited later: sent alongside the rate-limit admission
        (`Limiter.likely_admits`). Its refusal (a 402 or 403) is raised where it is awaited."""
        reserving = asyncio.ensure_future(self.reserve(plan, body, params))
        # A reservation nobody awaits (its admission was refused, and `abandon` met an outage)
        # would log "exception never retrieved": it is retrieved here.
        reserving.add_done_callback(lambda f: f.cancelled() or f.exception())
        return reserving

    async def abandon(self, reserving: asyncio.Future[None] | None) -> None:
        """The admission refused a request whose reservation was sent alongside it (`reserving`)
        or that took a spare: drop the hold, if one was written, or give the spare back. The
        request never ran: nothing is recorded, nothing charged. Runs to its end even if the
        caller is cancelled meanwhile (a hold left behind would keep the user's credit out of
        reach until it expires)."""
        self.closed = True
        if reserving is None:
            if self.spare is not None:
                self.rt.spares.put_back(self.spare)  # the key's again, for the rest of its time
            return

        async def undo() -> None:
            try:
                await reserving
            except Exception:  # refused, or the database is out: no hold was written
                return
            except asyncio.CancelledError:
                pass  # it may have landed before the cancel: dropped all the same
            try:
                await self.rt.ledger.drop_hold(self.key.user_id, self.request_id)
            except DependencyUnavailable:  # the refusal stands; the hold expires by itself
                log.warning("a refused request's hold stays until it expires: the database is out")

        task = asyncio.ensure_future(undo())
        _finishing.add(task)
        task.add_done_callback(_finishing.discard)
        await asyncio.shield(task)

    def record(self, **fields: object) -> RequestRecord:
        record = RequestRecord(
            request_id=self.request_id,
            user_id=self.key.user_id,
            key_id=self.key.key_id,
            spend_key_id=self.key.budget_id,
            model=self.model,
            endpoint=self.endpoint,
            client_request_id=self.client_request_id,
            hold_request_id=self.spare.request_id if self.spare is not None else None,
            latency_ms=int((time.perf_counter() - self.started) * 1000),
            track_spend=self.tracks_spend,
            touch_key=self.rt.keys.should_touch(self.key.key_id),
        )
        for name, value in fields.items():
            setattr(record, name, value)
        return record

    async def settle(
        self, candidate: Candidate, usage: Usage, cost: Decimal, attempts: list[str], status: str = "ok"
    ) -> Decimal:
        """Charge the request's cost; returns what was charged — less than `cost` when it overran
        the hold and the balance could not cover it — which is what the caller must be told."""
        if self.closed:
            return cost
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
        # A caller who hangs up mid-stream is still billed for what was generated: the ledger
        # finishes a settlement even if this task is cancelled.
        alone = self.rt.limiter.forecast.alone(self.key.user_id)
        spare = self.rt.spares.offer(self.key, self.amount, self.spare, alone) if self.held else None
        try:
            charged = await self.rt.ledger.settle(record, cost, spare)
        except BaseException:
            if spare is not None:
                self.rt.spares.unknown(spare)
            raise
        if spare is not None:
            self.rt.spares.settled(spare)
        charged = cost if charged is None else charged  # None: settled before (not through this meter)
        observe.request_finished(self.ctx, record, charged, 200, self.stream)
        return charged

    async def release(self, http_status: int, attempts: list[str]) -> None:
        """Nothing billable happened (every provider failed, or the caller erred): charge nothing."""
        if self.closed:
            return
        self.closed = True
        record = self.record(status="error", http_status=http_status, attempts=attempts)
        try:
            await self.rt.ledger.release(record)
        finally:  # observed even when the release fails (a database outage is worth seeing)
            observe.request_finished(self.ctx, record, Decimal(0), http_status, self.stream)


_finishing: set[asyncio.Task[None]] = set()  # slot releases under way (a reference keeps each alive)


async def settle_and_finish(
    rt: Runtime,
    meter: Meter | None,
    admission: Admission,
    candidate: Candidate,
    usage: Usage,
    cost: Decimal,
    attempts: list[str],
    status: str = "ok",
) -> Decimal:
    """Charge the request and release its rate-limit slot (correcting the token budgets) at once:
    the database and the hot store are independent, so their round trips overlap instead of
    following each other (measured: one hot-store round trip less before the answer). Returns what
    was charged. The slot is released whatever the settlement does, even if the caller is
    cancelled meanwhile; a settlement that fails raises after it."""
    task = asyncio.ensure_future(rt.limiter.finish(admission, usage.prompt_tokens + usage.output_tokens))
    _finishing.add(task)
    task.add_done_callback(_finishing.discard)
    try:
        if meter is not None:
            cost = await meter.settle(candidate, usage, cost, attempts, status=status)
    finally:
        await asyncio.shield(task)
    return cost
