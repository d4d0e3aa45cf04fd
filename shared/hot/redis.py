"""Redis hot-state backend (redis-py asyncio, one connection pool per process)."""

from __future__ import annotations

from typing import Any

from shared.hot import HotStore, HotStoreDown


class RedisHot(HotStore):
    name = "redis"

    def __init__(self, url: str, *, timeout: float = 0.5) -> None:
        self.url = url
        self.timeout = timeout
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            import redis.asyncio as redis

            self._client = redis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                decode_responses=True,
            )
        return self._client

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        import redis

        try:
            return await getattr(self.client(), method)(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise HotStoreDown(f"redis unreachable: {type(exc).__name__}") from None

    async def get(self, key: str) -> str | None:
        value = await self._call("get", key)
        return None if value is None else str(value)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        await self._call("set", key, value, px=int(ttl * 1000) if ttl else None)

    async def incr(self, key: str) -> int:
        return int(await self._call("incr", key))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
