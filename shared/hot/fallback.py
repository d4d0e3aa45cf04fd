"""Keep serving when the shared hot-state store is down (SPEC §7).

Calls go to the remote store (Redis or Upstash) with a short timeout; when it fails, this
instance switches to its own memory store — limits become per-instance for a while, which is
said in a log line and in `status()` — and tries the remote store again every few seconds,
switching back by itself. A store that answers with a refusal (a wrong password, Redis Cluster)
takes the same path, logged as an error. A request that ends during an outage cannot free its
concurrency slot in the remote store: the release is kept and made when the store answers again.
Configured fail-closed, rate checks are refused instead (503).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from shared.hot import HotStore, HotStoreDown, MemoryHot
from shared.hot.breaker import BreakerConfig, Event, Snapshot
from shared.hot.gcra import Decision, Rule, Slot

log = logging.getLogger("gatewayz.hot")
T = TypeVar("T")
RETRY_EVERY = 5.0  # seconds between two attempts to reach a remote store that failed
_MAX_OWED = 10_000  # slot releases kept for a remote store that comes back


class FallbackHot(HotStore):
    def __init__(self, remote: HotStore, *, fail_closed: bool = False) -> None:
        self.remote = remote
        self.local = MemoryHot()
        self.fail_closed = fail_closed
        self.name = remote.name
        self.down_since: float | None = None
        self._next_try = 0.0
        self.fallbacks = 0  # calls served by the local store: a metric
        self._owed: list[Slot] = []

    @property
    def degraded(self) -> bool:
        return self.down_since is not None

    async def _use(self, remote_call: Callable[[HotStore], Awaitable[T]], *, limiting: bool = False) -> T:
        now = time.monotonic()
        if self.down_since is None or now >= self._next_try:
            try:
                await self._pay_back()
                result = await remote_call(self.remote)
            except HotStoreDown as exc:
                if self.down_since is None:
                    self.down_since = now
                    if exc.refused:  # a configuration error: it will not heal by itself
                        log.error(
                            "hot-state store %s refuses the gateway (%s): check its URL and "
                            "credentials; using per-instance limits meanwhile",
                            self.name,
                            exc,
                        )
                    else:
                        log.warning(
                            "hot-state store %s unreachable (%s): using per-instance limits", self.name, exc
                        )
                self._next_try = now + RETRY_EVERY
            else:
                if self.down_since is not None:
                    log.warning(
                        "hot-state store %s reachable again after %.1fs", self.name, now - self.down_since
                    )
                    self.down_since = None
                return result
        if limiting and self.fail_closed:
            raise HotStoreDown(f"{self.name} is unreachable and limits are configured fail-closed")
        self.fallbacks += 1
        return await remote_call(self.local)

    async def get(self, key: str) -> str | None:
        return await self._use(lambda s: s.get(key))

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        await self._use(lambda s: s.set(key, value, ttl))

    async def incr(self, key: str, ttl: float | None = None) -> int:
        return await self._use(lambda s: s.incr(key, ttl))

    async def rate(self, rules: list[Rule], slots: list[Slot] | None = None) -> Decision:
        return await self._use(lambda s: s.rate(rules, slots), limiting=True)

    async def release(self, slots: list[Slot]) -> None:
        await self.finish([], slots)

    async def breaker(self, cfg: BreakerConfig, events: list[Event], snapshot: bool) -> Snapshot:
        # During an outage breakers are this instance's own, like limits.
        return await self._use(lambda s: s.breaker(cfg, events, snapshot))

    async def finish(self, corrections: list[Rule], slots: list[Slot]) -> None:
        async def run(store: HotStore) -> bool:
            await store.finish(corrections, slots)
            return store is self.remote

        if not await self._use(run) and slots:
            self._owe(slots)
        await self.local.release(slots)  # a slot may have been taken locally during an outage

    def _owe(self, slots: list[Slot]) -> None:
        """Slots the remote store still holds for requests that ended while it was unreachable:
        released there first thing when it answers again, or the user would stay locked out for
        the slot's lease (~11 minutes) after the outage. Bounded: past it, leases expire them."""
        self._owed = [*self._owed, *slots][-_MAX_OWED:]

    async def _pay_back(self) -> None:
        if self._owed:
            owed, self._owed = self._owed, []
            try:
                await self.remote.release(owed)
            except HotStoreDown:
                self._owe(owed)
                raise

    async def close(self) -> None:
        await self.remote.close()
