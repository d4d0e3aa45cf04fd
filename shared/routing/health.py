"""Health from real traffic, shared by every instance through the hot-state store (SPEC §3, §8).

This is one process's view of the shared breakers and latencies (`shared.hot.breaker`): a copy
refreshed at most once a second (`refresh`, awaited before a request is planned: one round trip
per second per process, not per request), plus what this process saw since and has not sent yet.
Successes wait for the next refresh; a failure, a 429 and a request for a half-open trial are sent
at once, so that another instance avoids a failing offer within a second. Routing reads the copy
synchronously: `state` (closed / open / half-open, the offer's or its provider's, whichever is
worse), `latency` and `throughput` (EWMAs of every instance's traffic).

When the store cannot be reached the copy is kept and the events wait (bounded); with the usual
`FallbackHot`, breakers then become this instance's own until it answers again.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from shared.hot import HotStore, HotStoreDown, MemoryHot
from shared.hot.breaker import CLOSED, HALF_OPEN, OPEN, STATE_NAMES, BreakerConfig, Event, Snapshot

log = logging.getLogger("gatewayz.health")
_MAX_PENDING = 1000  # events kept for a store that does not answer


@dataclass(slots=True)
class _Pending:
    provider: str
    count: int = 0
    ttfb_ms: float = 0.0
    tps_sum: float = 0.0
    tps_n: int = 0


def breaker_config(env: Mapping[str, str]) -> tuple[BreakerConfig, float]:
    """`GATEWAYZ_BREAKER_*` and `GATEWAYZ_HEALTH_REFRESH` (seconds between two reads of the store)."""
    from shared.config import ConfigError

    def number(name: str, default: float, low: float, high: float = math.inf) -> float:
        raw = env.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {raw!r}")
        return value

    cfg = BreakerConfig(
        window_ms=int(number("GATEWAYZ_BREAKER_WINDOW", 60, 1) * 1000),
        min_requests=int(number("GATEWAYZ_BREAKER_MIN_REQUESTS", 5, 1)),
        failure_permille=int(number("GATEWAYZ_BREAKER_FAILURE_RATE", 0.5, 0.001, 1) * 1000),
        cooldown_ms=int(number("GATEWAYZ_BREAKER_COOLDOWN", 30, 0.1) * 1000),
        trials=int(number("GATEWAYZ_BREAKER_TRIALS", 1, 1)),
    )
    return cfg, number("GATEWAYZ_HEALTH_REFRESH", 1.0, 0, 1.0)


class HealthBook:
    def __init__(
        self, hot: HotStore | None = None, cfg: BreakerConfig | None = None, refresh_s: float = 1.0
    ) -> None:
        self.hot = hot if hot is not None else MemoryHot()
        self.cfg = cfg or BreakerConfig()
        self.refresh_s = refresh_s
        self._at = -math.inf  # monotonic time of the last read
        self._offset = 0.0  # the store's clock minus ours, in ms
        self._snap = Snapshot(0, [], {}, {})
        self._pending: dict[str, _Pending] = {}
        self._events: list[Event] = []  # failures and 429s that could not be sent yet

    def reset(self) -> None:
        """Forget everything (tests): this copy, and the breakers themselves on a memory store."""
        self._at = -math.inf
        self._snap = Snapshot(0, [], {}, {})
        self._pending.clear()
        self._events.clear()
        if isinstance(self.hot, MemoryHot):
            self.hot.forget_health()

    # --- talking to the store -------------------------------------------------------------------
    async def refresh(self, force: bool = False) -> None:
        """The copy, at most `refresh_s` old (awaited before planning a request)."""
        if force or time.monotonic() - self._at >= self.refresh_s:
            self._at = time.monotonic()  # requests arriving meanwhile use this copy, not a read each
            await self._sync([])

    async def _sync(self, extra: list[Event]) -> Snapshot | None:
        events = self._events + [
            Event("ok", offer, p.provider, p.count, p.ttfb_ms, p.tps_sum, p.tps_n)
            for offer, p in self._pending.items()
        ]
        self._events, self._pending = [], {}
        try:
            snap = await self.hot.breaker(self.cfg, events + extra, True)
        except HotStoreDown as exc:
            # Keep routing on the last copy; failures wait for the store (successes are dropped:
            # they only move averages and close half-open breakers, which a later success redoes).
            self._events = [e for e in events if e.kind != "ok"][-_MAX_PENDING:]
            self._at = time.monotonic()
            log.warning("health: the hot-state store cannot be reached (%s); using the last view", exc)
            return None
        self._at = time.monotonic()
        self._offset = snap.now_ms - time.time() * 1000
        before = self._snap.breakers
        self._snap = snap
        for key, value in snap.breakers.items():
            if value[0] == OPEN and (key not in before or before[key][0] != OPEN):
                log.warning(
                    "health: breaker %s is open (last failure %d ms ago)", key, snap.now_ms - value[2]
                )
        return snap

    async def success(
        self, provider: str, model: str, latency_ms: float, output_tokens: int = 0, seconds: float = 0.0
    ) -> None:
        offer = f"{provider}|{model}"
        p = self._pending.get(offer)
        if p is None:
            p = self._pending[offer] = _Pending(provider)
        p.count += 1
        p.ttfb_ms += latency_ms
        if output_tokens and seconds > 0:
            p.tps_sum += output_tokens / seconds
            p.tps_n += 1
        if self.state(provider, model) != CLOSED:
            await self._sync([])  # a trial that succeeded closes the breaker for everyone now

    def tokens(self, provider: str, model: str, output_tokens: int, seconds: float) -> None:
        """A finished answer's throughput (tokens/s), sent with the next refresh."""
        if output_tokens <= 0 or seconds <= 0:
            return
        offer = f"{provider}|{model}"
        p = self._pending.get(offer)
        if p is None:
            p = self._pending[offer] = _Pending(provider)
        p.tps_sum += output_tokens / seconds
        p.tps_n += 1

    async def failure(self, provider: str, model: str) -> None:
        await self._sync([Event("fail", f"{provider}|{model}", provider)])

    async def saturated(self, provider: str, model: str, retry_after_s: float | None) -> None:
        await self._sync([Event("sat", f"{provider}|{model}", provider, a=(retry_after_s or 1.0) * 1000)])

    async def trial(self, provider: str, model: str) -> bool:
        """May this instance send one call to a half-open offer? The store counts the trials."""
        snap = await self._sync([Event("trial", f"{provider}|{model}", provider)])
        return bool(snap and snap.results[-1])

    # --- reading the copy -----------------------------------------------------------------------
    def _now(self) -> float:
        return time.time() * 1000 + self._offset

    def _breaker(self, key: str, now: float) -> int:
        b = self._snap.breakers.get(key)
        if b is None or b[0] == CLOSED:
            return CLOSED
        return HALF_OPEN if now >= b[1] else OPEN

    def state(self, provider: str, model: str) -> int:
        now = self._now()
        return max(
            self._breaker(f"o:{provider}|{model}", now), self._breaker(f"p:{provider}", now), key=_rank
        )

    def provider_state(self, provider: str) -> int:
        return self._breaker(f"p:{provider}", self._now())

    def is_down(self, provider: str, model: str) -> bool:
        return self.state(provider, model) != CLOSED

    def is_saturated(self, provider: str, model: str) -> bool:
        b = self._snap.breakers.get(f"o:{provider}|{model}")
        return b is not None and b[3] > self._now()

    def last_failure(self, provider: str, model: str) -> int:
        return max(
            (
                self._snap.breakers.get(k, (0, 0, 0, 0, 0))[2]
                for k in (f"o:{provider}|{model}", f"p:{provider}")
            ),
        )

    def latency(self, provider: str, model: str) -> float:
        m = self._snap.latency.get(f"{provider}|{model}")
        return m[0] if m and m[2] else math.inf

    def throughput(self, provider: str, model: str) -> float:
        m = self._snap.latency.get(f"{provider}|{model}")
        return m[1] if m else 0.0

    def measured(self, provider: str, model: str) -> dict[str, float | int] | None:
        """What `/v1/models` shows of an offer: its EWMA latency and throughput, and sample count."""
        m = self._snap.latency.get(f"{provider}|{model}")
        if m is None:
            return None
        return {"latency_ms": round(m[0], 1), "tokens_per_s": round(m[1], 1), "samples": m[2]}

    def breakers(self) -> list[dict[str, object]]:
        """Every breaker that is not plainly closed, as `/v1/status` shows them."""
        now = self._now()
        out: list[dict[str, object]] = []
        for key, (_, until, last, sat, opened) in sorted(self._snap.breakers.items()):
            kind, _, name = key.partition(":")
            provider, _, model = name.partition("|")
            st = self._breaker(key, now)
            out.append(
                {
                    "scope": "offer" if kind == "o" else "provider",
                    "provider": provider,
                    "model": model or None,
                    "state": STATE_NAMES[st] if st != CLOSED or sat <= now else "saturated",
                    "open_since_ms": opened or None,
                    "last_failure_ms": last or None,
                    "retry_in_ms": max(0, int(until - now)) if st == OPEN else 0,
                }
            )
        return out

    def snapshot(self) -> list[dict[str, object]]:
        """Per offer with traffic: status, latency, throughput (`/v1/status`'s models)."""
        return [
            {
                "provider": offer.partition("|")[0],
                "model": offer.partition("|")[2],
                "status": "down" if self.is_down(*offer.split("|", 1)) else "up",
                "breaker": STATE_NAMES[self.state(*offer.split("|", 1))],
                "latency_ms": round(ttfb, 1),
                "tokens_per_s": round(tps, 1),
                "samples": n,
            }
            for offer, (ttfb, tps, n) in sorted(self._snap.latency.items())
        ]


def _rank(state: int) -> int:
    return {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}[state]
