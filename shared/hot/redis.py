"""Redis hot-state backend: redis-py asyncio, one connection pool per process, the limiter as one
Lua script (EVALSHA, loaded on first use)."""

from __future__ import annotations

from typing import Any

from shared.hot import HotStore, HotStoreDown
from shared.limits.gcra import FINISH_LUA, LUA, RELEASE_LUA, Decision, Rule, Slot, decision_from_lua

INCR_LUA = """
local v = redis.call('INCR', KEYS[1])
if v == 1 and tonumber(ARGV[1]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return v
"""


def finish_args(rules: list[Rule], slots: list[Slot]) -> tuple[list[str], list[str | int]]:
    args: list[str | int] = [len(rules)]
    for r in rules:
        args += [r.limit, r.period_ms, r.cost]
    return [r.key for r in rules] + [s.key for s in slots], args + [s.member for s in slots]


def script_args(rules: list[Rule], slots: list[Slot]) -> tuple[list[str], list[str | int]]:
    keys = [r.key for r in rules] + [s.key for s in slots]
    args: list[str | int] = [len(rules)]
    for r in rules:
        args += [r.limit, r.period_ms, r.cost, {"take": 0, "peek": 1, "force": 2}[r.mode]]
    args.append(len(slots))
    for s in slots:
        args += [s.member, s.limit, s.lease_ms]
    return keys, args


class RedisHot(HotStore):
    name = "redis"

    # Connecting must be quick to notice an outage; a reply may wait for a busy event loop (a burst
    # of requests) without that being mistaken for one, which would make limits per-instance.
    def __init__(self, url: str, *, timeout: float = 1.0, connect_timeout: float = 0.25) -> None:
        self.url = url
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._client: Any = None
        self._scripts: dict[str, Any] = {}

    def client(self) -> Any:
        if self._client is None:
            import redis.asyncio as redis

            self._client = redis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.connect_timeout,
                decode_responses=True,
                retry_on_timeout=False,
            )
            self._scripts = {
                name: self._client.register_script(src)
                for name, src in (
                    ("rate", LUA),
                    ("release", RELEASE_LUA),
                    ("incr", INCR_LUA),
                    ("finish", FINISH_LUA),
                )
            }
        return self._client

    async def _run(self, coro_factory: Any) -> Any:
        import redis

        try:
            return await coro_factory()
        except (redis.ConnectionError, redis.TimeoutError, OSError, TimeoutError) as exc:
            raise HotStoreDown(f"redis unreachable: {type(exc).__name__}") from None

    async def get(self, key: str) -> str | None:
        value = await self._run(lambda: self.client().get(key))
        return None if value is None else str(value)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        await self._run(lambda: self.client().set(key, value, px=int(ttl * 1000) if ttl else None))

    async def incr(self, key: str, ttl: float | None = None) -> int:
        self.client()
        ms = int(ttl * 1000) if ttl else 0
        return int(await self._run(lambda: self._scripts["incr"](keys=[key], args=[ms])))

    async def rate(self, rules: list[Rule], slots: list[Slot] | None = None) -> Decision:
        self.client()
        keys, args = script_args(rules, slots or [])
        reply = await self._run(lambda: self._scripts["rate"](keys=keys, args=args))
        return decision_from_lua(rules, [int(x) for x in reply], slots or [])

    async def release(self, slots: list[Slot]) -> None:
        self.client()
        if slots:
            keys, members = [s.key for s in slots], [s.member for s in slots]
            await self._run(lambda: self._scripts["release"](keys=keys, args=members))

    async def finish(self, corrections: list[Rule], slots: list[Slot]) -> None:
        if not corrections and not slots:
            return
        self.client()
        keys, args = finish_args(corrections, slots)
        await self._run(lambda: self._scripts["finish"](keys=keys, args=args))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
