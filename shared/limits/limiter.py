"""Rate limits in three layers (SPEC §7) over the hot-state store.

1. Per IP, before authentication: requests per minute, and a much smaller budget of failed
   authentications (brute force). Velocity mode tightens layer 1 for a while when the error rate
   of the last minute passes a threshold.
2. Per key and user, after authentication: requests and tokens per minute and per day, and
   concurrent requests — the plan's limits for the user across all their keys, and a key's own
   (never above the plan) for the key. Tokens are taken from the request's estimate before the
   call and corrected with the real usage after it; the concurrency slot is released on every
   exit path and expires by itself if an instance dies.
3. Anonymous callers (only when enabled): free models only, a few requests per IP per day.

Each check is one atomic call to the store; a refusal consumes nothing and happens before any
credit is reserved. Refusals raise `RateLimited` with `retry-after` and the `x-ratelimit-*`
headers.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

from shared.accounts.keys import KeyRecord
from shared.config import LimitSettings
from shared.errors import DependencyUnavailable, InvalidRequest, RateLimited
from shared.hot import HotStore, HotStoreDown
from shared.hot.gcra import Decision, Rule, RuleState, Slot
from shared.limits.forecast import Forecast
from shared.limits.spares import MIN_CONCURRENCY, TOKEN_MARGIN, Spare, SpareAdmissions, spare_member
from shared.limits.velocity import Velocity

MINUTE = 60_000
DAY = 86_400_000
_PENDING = Decision(False, 0, ())  # a spare's decision before its admission is made


def duration(ms: int) -> str:
    """OpenAI's reset format: `20ms`, `1s`, `6m0s`, `1h2m3s`."""
    if ms < 1000:
        return f"{max(ms, 0)}ms"
    seconds = math.ceil(ms / 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def rate_headers(states: tuple[RuleState, ...]) -> dict[str, str]:
    """The `x-ratelimit-*` request and token headers from the tightest per-minute limits."""
    headers: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        minute = [s for s in states if s.rule.kind == kind and s.rule.period_ms == MINUTE]
        if not minute:
            continue
        tight = min(minute, key=lambda s: (s.remaining, -s.reset_ms))
        headers[f"x-ratelimit-limit-{kind}"] = str(tight.rule.limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(tight.remaining)
        headers[f"x-ratelimit-reset-{kind}"] = duration(tight.reset_ms)
    return headers


# The routes whose handler admits the request through `Limiter.admit` (the chat pipeline): for
# them, with a key this instance already knows, layer 1 joins that call instead of its own.
ADMITTING_PATHS = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/messages/count_tokens", "/v1/responses"}
)


def _refusal(decision: Decision, what: str) -> RateLimited:
    seconds = max(1, math.ceil(decision.retry_after_ms / 1000))
    headers = {"retry-after": str(seconds), **rate_headers(decision.states)}
    return RateLimited(f"Rate limit reached for {what}: retry in {seconds}s.", headers=headers)


@dataclass(slots=True)
class Admission:
    """What a request holds between admission and its end."""

    slots: list[Slot] = field(default_factory=list)
    token_rules: list[Rule] = field(default_factory=list)
    estimate: int = 0
    states: tuple[RuleState, ...] = ()
    finished: bool = False
    user_id: str | None = None  # a key's admission: its user has one more request in flight here
    # What a spare admission for the key's next request repeats (shared.limits.spares).
    key: KeyRecord | None = None
    ip: str | None = None  # layer 1 was checked with it, for this IP
    calls: int = 1
    spare: bool = False  # this admission was a spare

    def headers(self) -> dict[str, str]:
        return rate_headers(self.states)


def _check_calls(
    calls: int, request_limits: list[tuple[int, str]], slot_specs: list[tuple[str, int]]
) -> None:
    """A request of `calls` upstream calls that no limit could ever admit: a 400 naming `n`, not a
    429 whose retry-after would never come."""
    bounds = [(limit, name) for limit, name in request_limits]
    bounds += [(limit, "concurrent requests") for _, limit in slot_specs]
    for limit, name in bounds:
        if calls > limit:
            raise InvalidRequest(
                f"'n' of {calls} takes {calls} upstream calls with this model (its providers return one "
                f"choice per call), more than the {name} limit of {limit}.",
                param="n",
            )


class Limiter:
    def __init__(self, hot: HotStore, settings: LimitSettings) -> None:
        self.hot = hot
        self.settings = settings
        self.velocity = Velocity(settings)
        self.forecast = Forecast()
        self.spares = SpareAdmissions(hot, settings.spare_seconds)
        self.rejections: dict[str, int] = {"ip": 0, "auth_failures": 0, "key": 0, "anonymous": 0}

    async def _rate(self, rules: list[Rule], slots: list[Slot] | None = None) -> Decision:
        try:
            return await self.hot.rate(rules, slots)
        except HotStoreDown as exc:  # only when configured fail-closed
            raise DependencyUnavailable(f"Rate limiting is unavailable: {exc}") from None

    # --- layer 1 ----------------------------------------------------------------------------
    def _ip_rules(self, ip: str, factor: float) -> list[Rule]:
        rpm = max(1, int(self.settings.ip_rpm * factor))
        failures = max(1, int(self.settings.ip_auth_failures * factor))
        return [
            Rule(f"rl:ip:{ip}:rpm", rpm, MINUTE, 1, name="ip requests per minute"),
            # A peek: a request from an IP that spent its failed-authentication budget is refused.
            Rule(f"rl:ip:{ip}:authfail", failures, MINUTE, 1, name="failed authentications", mode="peek"),
        ]

    async def ip_rules(self, ip: str) -> list[Rule]:
        factor = self.settings.velocity_factor if await self.velocity.active(self.hot) else 1.0
        return self._ip_rules(ip, factor)

    def _refuse_ip(self, decision: Decision) -> RateLimited:
        kind = "auth_failures" if decision.refused_by == "failed authentications" else "ip"
        self.rejections[kind] += 1
        return _refusal(
            decision, "this IP address" if kind == "ip" else "failed authentications from this IP"
        )

    async def check_ip(self, ip: str) -> None:
        decision = await self._rate(await self.ip_rules(ip))
        if not decision.allowed:
            raise self._refuse_ip(decision)

    async def count_ip(self, ip: str) -> None:
        """Count a request whose layer-1 check was deferred to its admission, which it never
        reached (it failed before): consumed, never refused (the answer is already an error)."""
        rule = (await self.ip_rules(ip))[0]
        try:
            await self.hot.rate([Rule(rule.key, rule.limit, rule.period_ms, 1, name=rule.name, mode="force")])
        except HotStoreDown:
            pass

    async def auth_failed(self, ip: str) -> None:
        failures = self.settings.ip_auth_failures
        if await self.velocity.active(self.hot):
            failures = max(1, int(failures * self.settings.velocity_factor))
        await self._rate([Rule(f"rl:ip:{ip}:authfail", failures, MINUTE, 1, name="failed authentications")])

    async def record_response(self, status: int, ip: str) -> None:
        """Velocity: authentication failures and server errors are the signals of abuse/overload."""
        if self.velocity.record(status == 401 or status >= 500, ip):
            await self.velocity.trigger(self.hot)

    # --- layer 2 ----------------------------------------------------------------------------
    def _key_limits(
        self, key: KeyRecord
    ) -> tuple[list[tuple[str, str, int, int, str]], list[tuple[str, int]]]:
        plan = key.plan
        own = key.rate_limits
        pairs = [
            ("rpm", "requests_per_minute", MINUTE, "requests"),
            ("rpd", "requests_per_day", DAY, "requests"),
            ("tpm", "tokens_per_minute", MINUTE, "tokens"),
            ("tpd", "tokens_per_day", DAY, "tokens"),
        ]
        rules: list[tuple[str, str, int, int, str]] = []
        for short, name, period, kind in pairs:
            plan_limit = getattr(plan, name)
            if plan_limit:
                rules.append((f"rl:user:{key.user_id}:{short}", f"plan {name}", plan_limit, period, kind))
            key_limit = own.get(name)
            if key_limit:
                bounded = min(int(key_limit), plan_limit) if plan_limit else int(key_limit)
                rules.append((f"rl:key:{key.budget_id}:{short}", f"key {name}", bounded, period, kind))
        slots = []
        if plan.concurrency:
            slots.append((f"rl:user:{key.user_id}:conc", plan.concurrency))
        if own.get("concurrency"):
            bound = (
                min(int(own["concurrency"]), plan.concurrency)
                if plan.concurrency
                else int(own["concurrency"])
            )
            slots.append((f"rl:key:{key.budget_id}:conc", bound))
        return rules, slots

    def likely_admits(self, key: KeyRecord, estimate_tokens: int, calls: int = 1) -> bool:
        """Whether `admit` will all but surely let this request through (see `forecast`): only
        ever for a remote store, whose answer takes a round trip worth overlapping."""
        if self.hot.in_process:
            return False
        concurrency = [c for c in (key.plan.concurrency, key.rate_limits.get("concurrency")) if c]
        bound = min(int(c) for c in concurrency) if concurrency else None
        return self.forecast.admits(key.budget_id, key.user_id, calls, estimate_tokens, bound)

    def _layer2(
        self, key: KeyRecord, members: list[str], estimate_tokens: int, calls: int
    ) -> tuple[list[Rule], list[Slot]]:
        """The key's rules at this request's costs, and its slots (one per member)."""
        specs, slot_specs = self._key_limits(key)
        if calls > 1:
            _check_calls(
                calls, [(limit, name) for _, name, limit, _, kind in specs if kind == "requests"], slot_specs
            )
        rules = [
            Rule(rkey, limit, period, calls if kind == "requests" else estimate_tokens, kind=kind, name=name)
            for rkey, name, limit, period, kind in specs
        ]
        slots = [
            Slot(skey, member, limit, self.settings.lease_ms)
            for skey, limit in slot_specs
            for member in members
        ]
        return rules, slots

    async def admit(
        self, key: KeyRecord, request_id: str, estimate_tokens: int, ip: str | None = None, calls: int = 1
    ) -> Admission:
        """Layer 2 for a request; with `ip`, layer 1 for it too, in the same atomic call (the
        gateway defers layer 1 here when the key was already known: one round trip less).

        `calls`: the upstream calls the request may make at once — `n` of them when its choices
        are fanned out to a provider that returns one per call. Each counts as a request and holds
        a concurrency slot of its own; more than a limit could ever admit is the caller's 400.

        A spare admission of the key that this request may take (shared.limits.spares) admits it
        without a call to the store."""
        spare, declined = self.spares.claim(key, estimate_tokens, ip, calls)
        if spare is not None:
            self.forecast.admitted(key.budget_id, key.user_id, spare.decision)
            return spare.admission
        # Members are unique per request (the billing id is server-generated), one per call.
        members = [request_id] + [f"{request_id}#{i}" for i in range(1, calls)]
        rules, slots = self._layer2(key, members, estimate_tokens, calls)
        ip_rules = await self.ip_rules(ip) if ip is not None else []
        if declined is not None:  # its units first: at a limit's edge they are this request's
            await self.spares.undo(declined)
        decision = await self._rate(ip_rules + rules, slots)
        self.forecast.admitted(key.budget_id, key.user_id, decision)
        if not decision.allowed:
            if decision.refused_by in {r.name for r in ip_rules}:
                raise self._refuse_ip(decision)
            self.rejections["key"] += 1
            what = "concurrent requests" if decision.refused_by == "concurrency" else decision.refused_by
            raise _refusal(decision, what)
        return Admission(
            slots=slots,
            token_rules=[r for r in rules if r.kind == "tokens"],
            estimate=estimate_tokens,
            states=decision.states[len(ip_rules) :],  # the headers speak of the key's limits
            user_id=key.user_id,
            key=key,
            ip=ip,
            calls=calls,
        )

    async def finish(self, admission: Admission, actual_tokens: int | None) -> None:
        """Release the slots and correct the token budgets by (actual − estimate). Idempotent.
        The end of a busy key's request also admits the key's next one (a spare, see
        shared.limits.spares), pipelined with the release: the same round trip."""
        if admission.finished:
            return
        admission.finished = True
        alone = False
        if admission.user_id is not None:
            alone = self.forecast.alone(admission.user_id)
            self.forecast.finished(admission.user_id)
        delta = (actual_tokens - admission.estimate) if actual_tokens is not None else 0
        # The tokens were spent whatever the budget says: a correction never refuses.
        corrections = (
            [
                Rule(r.key, r.limit, r.period_ms, delta, r.kind, r.name, mode="force")
                for r in admission.token_rules
            ]
            if delta
            else []
        )
        try:
            wanted = actual_tokens is not None and self.spares.wanted(admission, alone)
            ahead = await self._ahead(admission) if wanted else None
            if ahead is None:
                await self.hot.finish(corrections, admission.slots)
                return
            # One write: the store runs the release before the admission (a slot freed for it).
            outcomes = await asyncio.gather(
                self.hot.finish(corrections, admission.slots),
                self.hot.rate(ahead.rules, ahead.slots),
                return_exceptions=True,
            )
        except HotStoreDown:
            return  # the slots expire by themselves; the budgets heal with time
        decision = outcomes[1]
        if isinstance(decision, Decision):  # kept (or given back) whatever the release did
            ahead.decision = decision
            ahead.admission.states = decision.states[ahead.layer1 :]  # the key's limits, as in `admit`
            self.spares.admitted(ahead)
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, HotStoreDown):
                raise outcome

    async def _ahead(self, admission: Admission) -> Spare | None:
        """The spare admission to make for the key's next request: `admission`'s checks again."""
        key = admission.key
        assert key is not None
        estimate = admission.estimate * TOKEN_MARGIN
        rules, slots = self._layer2(key, [spare_member()], estimate, 1)
        if any(slot.limit < MIN_CONCURRENCY for slot in slots):
            return None
        ip_rules = await self.ip_rules(admission.ip) if admission.ip is not None else []
        next_admission = Admission(
            slots=slots,
            token_rules=[r for r in rules if r.kind == "tokens"],
            estimate=estimate,
            user_id=key.user_id,
            key=key,
            ip=admission.ip,
            spare=True,
        )
        return Spare(
            key,
            admission.ip,
            estimate,
            ip_rules + rules,
            slots,
            _PENDING,
            next_admission,
            len(ip_rules),
        )

    # --- layer 3 ----------------------------------------------------------------------------
    async def admit_anonymous(self, ip: str, calls: int = 1) -> Admission:
        limit = self.settings.anonymous_per_day
        if calls > 1:
            _check_calls(calls, [(limit, "anonymous requests per day")], [])
        rule = Rule(f"rl:anon:{ip}:rpd", limit, DAY, calls, name="anonymous requests per day")
        decision = await self._rate([rule])
        if not decision.allowed:
            self.rejections["anonymous"] += 1
            raise _refusal(decision, "anonymous requests from this IP today")
        return Admission(states=decision.states)
