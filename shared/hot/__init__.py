"""The hot-state store: small, fast, shared state (caches' invalidation epochs, later limits and
breakers) — in-process memory on the embedded default, Redis in production (SPEC §1).

The same interface on every backend; a backend that cannot be reached raises `HotStoreDown`, and
callers decide what that means for them (the key cache just keeps its short local TTL).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod


class HotStoreDown(Exception):
    pass


class HotStore(ABC):
    name: str

    @abstractmethod
    async def get(self, key: str) -> str | None: ...

    @abstractmethod
    async def set(self, key: str, value: str, ttl: float | None = None) -> None: ...

    @abstractmethod
    async def incr(self, key: str) -> int: ...

    async def close(self) -> None:
        return None


class MemoryHot(HotStore):
    """One process's memory: exact for one instance, which is what the embedded default is."""

    name = "memory"

    def __init__(self) -> None:
        self._data: dict[str, tuple[str, float | None]] = {}

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

    async def incr(self, key: str) -> int:
        value = int(self._live(key) or 0) + 1
        expires = self._data.get(key, ("", None))[1]
        self._data[key] = (str(value), expires)
        return value


def open_hot_store(redis_url: str | None) -> HotStore:
    if redis_url:
        from shared.hot.redis import RedisHot

        return RedisHot(redis_url)
    return MemoryHot()
