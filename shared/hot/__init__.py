"""The hot-state store: small, fast, shared state — rate-limit cells, concurrency slots, cache
invalidation epochs — in-process memory on the embedded default, Redis (redis-py) or Upstash (its
REST protocol) in production (SPEC §1, §7).

Every backend offers the same operations with the same meaning; the limiter's decision is one
atomic step on each (a Lua script on Redis and Upstash). A remote backend that cannot be reached
raises `HotStoreDown` — so does one that answers with an error (a wrong password, Redis Cluster):
every failure of the shared store takes one path. `FallbackHot` turns that into per-instance
memory limits (or a refusal, when configured fail-closed) and goes back to the remote store when
it answers again.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod

from shared.hot.breaker import BreakerConfig, Event, Snapshot, apply
from shared.hot.gcra import Decision, Rule, Slot, check


class HotStoreDown(Exception):
    """The remote store cannot serve this call. `refused`: it answered, but with an error that will
    not heal by itself (a wrong password, Redis Cluster, a bad database number): a configuration
    error, which the fallback reports loudly."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class HotStore(ABC):
    name: str
    in_process = False  # True: a call is answered from this process's memory, no round trip

    @property
    def degraded(self) -> bool:
        """True while the shared store is unreachable and this instance serves from its own memory
        (FallbackHot): what it reads then says nothing about other instances' writes."""
        return False

    @abstractmethod
    async def get(self, key: str) -> str | None: ...

    @abstractmethod
    async def set(self, key: str, value: str, ttl: float | None = None) -> None: ...

    @abstractmethod
    async def incr(self, key: str, ttl: float | None = None) -> int:
        """Add one; a new key expires after `ttl` seconds."""

    @abstractmethod
    async def rate(self, rules: list[Rule], slots: list[Slot] | None = None) -> Decision:
        """Check every rule (and take the slot) atomically: all consumed, or nothing."""

    @abstractmethod
    async def release(self, slots: list[Slot]) -> None: ...

    @abstractmethod
    async def breaker(self, cfg: BreakerConfig, events: list[Event], snapshot: bool) -> Snapshot:
        """Apply breaker and latency events atomically; with `snapshot`, return every breaker that
        is not plainly closed and the latency table (`shared.hot.breaker`)."""

    async def finish(self, corrections: list[Rule], slots: list[Slot]) -> None:
        """A request's end: forced token corrections and slot releases (remote stores: one call)."""
        if corrections:
            await self.rate(corrections)
        if slots:
            await self.release(slots)

    async def close(self) -> None:
        return None


class MemoryHot(HotStore):
    """One process's memory: exact for one instance, which is what the embedded default is."""

    name = "memory"
    in_process = True

    def __init__(self) -> None:
        self._data: dict[str, tuple[str, float | None]] = {}
        self._tats: dict[str, float] = {}
        self._slots: dict[str, dict[str, float]] = {}
        self._health: dict[str, tuple[dict[str, str], dict[str, str]]] = {}  # prefix → the two tables
        self._lock = threading.Lock()  # Lambda and tests may share a store across threads

    def _live(self, key: str) -> str | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= time.monotonic():
            del self._data[key]
            return None
        return value

    async def get(self, key: str) -> str | None:
        return self._live(key)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self._data[key] = (value, time.monotonic() + ttl if ttl else None)

    async def incr(self, key: str, ttl: float | None = None) -> int:
        with self._lock:
            current = self._live(key)
            value = int(current or 0) + 1
            expires = self._data[key][1] if current is not None else (time.monotonic() + ttl if ttl else None)
            self._data[key] = (str(value), expires)
            return value

    async def rate(self, rules: list[Rule], slots: list[Slot] | None = None) -> Decision:
        with self._lock:
            decision = check(self._tats, self._slots, rules, slots or [], time.time() * 1000)
            if len(self._tats) > 100_000:
                self._sweep()
            return decision

    async def breaker(self, cfg: BreakerConfig, events: list[Event], snapshot: bool) -> Snapshot:
        with self._lock:
            tables = self._health.setdefault(cfg.prefix, ({}, {}))
            return apply(tables[0], tables[1], cfg, events, snapshot, time.time() * 1000)

    def forget_health(self) -> None:
        """Close every breaker and forget latencies (tests start each case from a clean book)."""
        with self._lock:
            self._health.clear()

    def _sweep(self) -> None:
        now = time.time() * 1000
        for key in [k for k, tat in self._tats.items() if tat <= now]:
            del self._tats[key]

    async def release(self, slots: list[Slot]) -> None:
        with self._lock:
            for slot in slots:
                self._slots.get(slot.key, {}).pop(slot.member, None)


def open_hot_store(
    redis_url: str | None,
    upstash_url: str | None = None,
    upstash_token: str | None = None,
    *,
    fail_closed: bool = False,
) -> HotStore:
    if redis_url:
        from shared.hot.fallback import FallbackHot
        from shared.hot.redis import RedisHot

        return FallbackHot(RedisHot(redis_url), fail_closed=fail_closed)
    if upstash_url and upstash_token:
        from shared.hot.fallback import FallbackHot
        from shared.hot.upstash import UpstashHot

        return FallbackHot(UpstashHot(upstash_url, upstash_token), fail_closed=fail_closed)
    return MemoryHot()
