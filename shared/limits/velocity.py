"""Velocity mode (SPEC §7, layer 1): when the error rate of the last minute spikes — failed
authentications and server errors, the signs of abuse or overload — layer 1 tightens on every
instance for a while.

Each instance measures its own responses; crossing the threshold sets a flag in the hot-state
store (read at most once a second), so that every instance tightens, whatever the backend.

One client must not be able to switch it on for everyone: each source — an IPv4 /24 or an IPv6
/64, so that one client's neighbouring addresses are one source — counts for at most
`velocity_min_requests // velocity_min_sources` responses in any minute, errors included. The
volume the rate needs (`velocity_min_requests`) therefore comes from at least
`velocity_min_sources` sources, and one source's flood can neither make the rate nor drown it.
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from functools import lru_cache
from typing import Any

from shared.config import LimitSettings
from shared.hot import HotStore, HotStoreDown

VELOCITY_KEY = "gw:velocity"
WINDOW_S = 60
# Sources tracked at once. Past this many in a minute the traffic is no single client: further
# sources are counted without a cap (and memory stays bounded).
MAX_SOURCES = 100_000


@lru_cache(maxsize=4096)
def source_of(ip: str) -> str:
    """The network an address belongs to, for velocity: its /24 (IPv4) or /64 (IPv6)."""
    if ":" not in ip:
        head, dot, _ = ip.rpartition(".")
        return f"{head}.0/24" if dot else ip
    try:
        address = ipaddress.IPv6Address(ip)
    except ValueError:
        return ip
    if address.ipv4_mapped is not None:
        return source_of(str(address.ipv4_mapped))
    return str(ipaddress.IPv6Network((address, 64), strict=False))


class Velocity:
    def __init__(self, settings: LimitSettings) -> None:
        self.settings = settings
        self.cap = max(1, settings.velocity_min_requests // settings.velocity_min_sources)
        # Per-second buckets [second, counted responses, counted errors] over the last minute, with
        # running sums: recording a response is O(1) whatever the traffic.
        self._buckets: deque[list[int]] = deque()
        self._total = 0
        self._errors = 0
        # Per source, the times of its counted responses in the last minute (at most `cap`).
        self._sources: dict[str, list[float]] = {}
        self._swept = 0.0
        self._active_until = 0.0
        self._checked = 0.0

    def _expire(self, second: int) -> None:
        while self._buckets and self._buckets[0][0] <= second - WINDOW_S:
            _, total, errors = self._buckets.popleft()
            self._total -= total
            self._errors -= errors

    def _counts(self, ip: str, now: float) -> bool:
        """Whether this response of `ip` counts: its source is under its cap for the minute."""
        cutoff = now - WINDOW_S
        if now - self._swept >= WINDOW_S:  # forget the sources of a minute ago, once a minute
            self._swept = now
            self._sources = {s: t for s, t in self._sources.items() if t[-1] > cutoff}
        source = source_of(ip)
        times = self._sources.get(source)
        if times is None:
            if len(self._sources) < MAX_SOURCES:
                self._sources[source] = [now]
            return True
        while times and times[0] <= cutoff:
            del times[0]
        if len(times) >= self.cap:
            return False
        times.append(now)
        return True

    def record(self, error: bool, ip: str) -> bool:
        """Note one response; True when this instance just crossed the threshold."""
        now = time.monotonic()
        if not self._counts(ip, now):
            return False
        second = int(now)
        self._expire(second)
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
        bucket = self._buckets[-1]
        bucket[1] += 1
        self._total += 1
        if error:
            bucket[2] += 1
            self._errors += 1
        if self._total < self.settings.velocity_min_requests or self._active_until > time.time():
            return False
        return self._errors / self._total >= self.settings.velocity_error_rate

    async def active(self, hot: HotStore) -> bool:
        now = time.monotonic()
        if now - self._checked >= 1.0:
            self._checked = now
            try:
                until = await hot.get(VELOCITY_KEY)
            except HotStoreDown:
                until = None
            self._active_until = max(self._active_until, float(until)) if until else self._active_until
        return self._active_until > time.time()

    async def trigger(self, hot: HotStore) -> None:
        until = time.time() + self.settings.velocity_seconds
        self._active_until = until
        try:
            await hot.set(VELOCITY_KEY, str(until), ttl=self.settings.velocity_seconds)
        except HotStoreDown:
            pass

    def state(self) -> dict[str, Any]:
        self._expire(int(time.monotonic()))
        return {
            "active": self._active_until > time.time(),
            "active_until": self._active_until if self._active_until > time.time() else None,
            "requests_last_minute": self._total,  # as counted: at most `per_source_cap` a source
            "error_rate_last_minute": round(self._errors / self._total, 4) if self._total else 0.0,
            "threshold": self.settings.velocity_error_rate,
            "min_sources": self.settings.velocity_min_sources,
            "per_source_cap": self.cap,
        }
