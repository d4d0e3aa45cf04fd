"""Keep serving when the shared hot-state store is down (SPEC §7).

Calls go to the remote store (Redis or Upstash) with a short timeout; when it fails, this
instance switches to its own memory store — limits become per-instance for a while, which is
said in a log line and in `status()` — and tries the remote store again every few seconds,
switching back by itself. Configured fail-closed, rate checks are refused instead (503).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from shared.hot import HotStore, HotStoreDown, MemoryHot
from shared.hot.gcra import Decision, Rule, Slot

log = logging.getLogger("gatewayz.hot")
T = TypeVar("T")
RETRY_EVERY = 5.0  # seconds between two attempts to reach a remote store that failed


class FallbackHot(HotStore):
    def __init__(self, remote: HotStore, *, fail_closed: bool = False) -> None:
        self.remote = remote
        self.local = MemoryHot()
        self.fail_closed = fail_closed
        self.name = remote.name
        self.down_since: float | None = None
        self._next_try = 0.0
        self.fallbacks = 0  # calls served by the local store: a metric

    @property
    def degraded(self) -> bool:
        return self.down_since is not None

    async def _use(self, remote_call: Callable[[HotStore], Awaitable[T]], *, limiting: bool = False) -> T:
        now = time.monotonic()
        if self.down_since is None or now >= self._next_try:
            try:
                result = await remote_call(self.remote)
            except HotStoreDown as exc:
                if self.down_since is None:
                    self.down_since = now
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
        # Release on both: the slot may have been taken on either side of an outage.
        await self._use(lambda s: s.release(slots))
        await self.local.release(slots)

    async def finish(self, corrections: list[Rule], slots: list[Slot]) -> None:
        await self._use(lambda s: s.finish(corrections, slots))
        await self.local.release(slots)  # a slot may have been taken locally during an outage

    async def close(self) -> None:
        await self.remote.close()
