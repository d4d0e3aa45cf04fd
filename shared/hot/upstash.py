"""Upstash hot-state backend: Upstash's REST protocol through the `upstash-redis` client, the
same Lua script as Redis (EVALSHA, falling back to EVAL when the script is not cached)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from shared.hot import HotStore, HotStoreDown
from shared.hot.breaker import LUA as BREAKER_LUA
from shared.hot.breaker import BreakerConfig, Event, Snapshot, lua_args, snapshot_from_lua
from shared.hot.gcra import FINISH_LUA, LUA, RELEASE_LUA, Decision, Rule, Slot, decision_from_lua
from shared.hot.redis import INCR_LUA, finish_args, script_args


class _NoScript(Exception):
    """EVALSHA of a script the server does not hold: send it whole (EVAL)."""


class UpstashHot(HotStore):
    name = "upstash"

    def __init__(self, url: str, token: str, *, timeout: float = 0.5) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            from upstash_redis.asyncio import Redis

            self._client = Redis(self.url, self.token, rest_retries=0, allow_telemetry=False)
        return self._client

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        import httpx
        from upstash_redis.errors import UpstashError

        try:
            async with asyncio.timeout(self.timeout):
                return await getattr(self.client(), method)(*args, **kwargs)
        except (TimeoutError, OSError, httpx.HTTPError, ValueError) as exc:  # ValueError: a non-JSON body
            raise HotStoreDown(f"upstash unreachable: {type(exc).__name__}") from None
        except UpstashError as exc:  # an error answer: a wrong token (Unauthorized), a script error
            if str(exc).startswith("NOSCRIPT"):
                raise _NoScript from None
            raise HotStoreDown(f"upstash refused the call: {exc}", refused=True) from None

    async def _script(self, source: str, keys: list[str], args: list[Any]) -> Any:
        sha = hashlib.sha1(source.encode()).hexdigest()
        str_args = [str(a) for a in args]
        try:
            return await self._call("evalsha", sha, keys, str_args)
        except _NoScript:
            return await self._call("eval", source, keys, str_args)

    async def get(self, key: str) -> str | None:
        value = await self._call("get", key)
        return None if value is None else str(value)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        await self._call("set", key, value, px=int(ttl * 1000) if ttl else None)

    async def incr(self, key: str, ttl: float | None = None) -> int:
        return int(await self._script(INCR_LUA, [key], [int(ttl * 1000) if ttl else 0]))

    async def rate(self, rules: list[Rule], slots: list[Slot] | None = None) -> Decision:
        keys, args = script_args(rules, slots or [])
        reply = await self._script(LUA, keys, args)
        return decision_from_lua(rules, [int(x) for x in reply], slots or [])

    async def breaker(self, cfg: BreakerConfig, events: list[Event], snapshot: bool) -> Snapshot:
        return snapshot_from_lua(await self._script(BREAKER_LUA, cfg.keys(), lua_args(cfg, events, snapshot)))

    async def release(self, slots: list[Slot]) -> None:
        if slots:
            await self._script(RELEASE_LUA, [s.key for s in slots], [s.member for s in slots])

    async def finish(self, corrections: list[Rule], slots: list[Slot]) -> None:
        if corrections or slots:
            keys, args = finish_args(corrections, slots)
            await self._script(FINISH_LUA, keys, args)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
