"""Redis hot-state backend: one pipelined connection per process (`shared.hot.resp`), the limiter
as one Lua script (EVALSHA, loaded on first use). Any failure — no answer, or an error answer —
is `HotStoreDown`; a URL the client cannot honour is a `ConfigError` at start-up."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from shared.config import ConfigError
from shared.hot import HotStore, HotStoreDown
from shared.hot.breaker import LUA as BREAKER_LUA
from shared.hot.breaker import BreakerConfig, Event, Snapshot, lua_args, snapshot_from_lua
from shared.hot.gcra import FINISH_LUA, LUA, RELEASE_LUA, Decision, Rule, Slot, decision_from_lua
from shared.hot.resp import ReplyError, RespClient, Script

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
        try:
            self.client = RespClient(url, timeout=timeout, connect_timeout=connect_timeout)
        except ValueError as exc:
            raise ConfigError(f"GATEWAYZ_REDIS_URL: {exc}") from None
        self._scripts = {
            name: Script(src)
            for name, src in (
                ("rate", LUA),
                ("release", RELEASE_LUA),
                ("incr", INCR_LUA),
                ("finish", FINISH_LUA),
                ("breaker", BREAKER_LUA),
            )
        }

    @staticmethod
    async def _reach(reply: Awaitable[Any]) -> Any:
        try:
            return await reply
        except (ConnectionError, OSError, TimeoutError) as exc:
            raise HotStoreDown(f"redis unreachable: {type(exc).__name__}") from None
        except ReplyError as exc:
            # The server answered with an error: in the handshake (WRONGPASS, NOAUTH, a database it
            # does not have, Redis Cluster) or to a command (MOVED, CROSSSLOT, READONLY, LOADING, a
            # script error). None is the caller's doing: the store cannot serve, like when it is down.
            raise HotStoreDown(f"redis refused the call: {exc}", refused=True) from None

    async def _call(self, *args: str | int) -> Any:
        return await self._reach(self.client.call(*args))

    async def _script(self, name: str, keys: list[str], args: list[str | int]) -> Any:
        return await self._reach(self.client.run_script(self._scripts[name], keys, args))

    async def get(self, key: str) -> str | None:
        value = await self._call("GET", key)
        return None if value is None else str(value)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        if ttl:
            await self._call("SET", key, value, "PX", int(ttl * 1000))
        else:
            await self._call("SET", key, value)

    async def incr(self, key: str, ttl: float | None = None) -> int:
        return int(await self._script("incr", [key], [int(ttl * 1000) if ttl else 0]))

    async def rate(self, rules: list[Rule], slots: list[Slot] | None = None) -> Decision:
        keys, args = script_args(rules, slots or [])
        reply = await self._script("rate", keys, args)
        return decision_from_lua(rules, [int(x) for x in reply], slots or [])

    async def breaker(self, cfg: BreakerConfig, events: list[Event], snapshot: bool) -> Snapshot:
        return snapshot_from_lua(await self._script("breaker", cfg.keys(), lua_args(cfg, events, snapshot)))

    async def release(self, slots: list[Slot]) -> None:
        if slots:
            await self._script("release", [s.key for s in slots], [s.member for s in slots])

    async def finish(self, corrections: list[Rule], slots: list[Slot]) -> None:
        if not corrections and not slots:
            return
        keys, args = finish_args(corrections, slots)
        await self._script("finish", keys, args)

    async def close(self) -> None:
        await self.client.close()
