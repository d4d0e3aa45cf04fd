"""The lean Redis client (shared.hot.resp) against the real Redis: replies reach the right
callers when many commands share the connection, the database in the URL is used, a script
survives SCRIPT FLUSH, and a server that stops answering is noticed within the reply timeout."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest

from shared.hot import HotStoreDown
from shared.hot.redis import RedisHot
from shared.hot.resp import ReplyError, RespClient, Script
from tests.limits.conftest import CONTRACT_DB, redis_client, redis_url


def client(db: int = CONTRACT_DB) -> RespClient:
    return RespClient(redis_url(db), timeout=1.0, connect_timeout=0.25)


async def test_concurrent_commands_on_one_connection_get_their_own_replies(real_redis: str) -> None:
    c = client()
    prefix = "resp-test:" + os.urandom(4).hex()
    try:
        await asyncio.gather(*(c.call("SET", f"{prefix}:{i}", f"value-{i}", "PX", 60000) for i in range(300)))
        values = await asyncio.gather(*(c.call("GET", f"{prefix}:{i}") for i in range(300)))
        assert values == [f"value-{i}" for i in range(300)]
        with pytest.raises(ReplyError, match="WRONGTYPE"):
            await c.call("LPUSH", f"{prefix}:0", "x")  # an error reply fails that caller alone...
        assert await c.call("GET", f"{prefix}:1") == "value-1"  # ...and the connection goes on
    finally:
        await c.close()


async def test_the_url_selects_the_database(real_redis: str) -> None:
    key = "resp-test-db:" + os.urandom(4).hex()
    c = client(CONTRACT_DB)
    try:
        await c.call("SET", key, "here", "PX", 60000)
    finally:
        await c.close()
    plain = redis_client(CONTRACT_DB)
    other = redis_client(0)
    try:
        assert plain.get(key) == b"here" and other.get(key) is None
    finally:
        plain.close()
        other.close()


async def test_a_script_runs_again_after_the_server_forgets_it(real_redis: str) -> None:
    c = client()
    script = Script("return tonumber(ARGV[1]) + " + str(int.from_bytes(os.urandom(2), "big")))
    try:
        first = await c.run_script(script, [], [1])
        await c.call("SCRIPT", "FLUSH")
        assert await c.run_script(script, [], [1]) == first  # NOSCRIPT → EVAL, which caches it
    finally:
        await c.close()


async def test_a_server_that_stops_answering_is_an_outage_within_the_timeout() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts connections (the kernel does), never answers a command
    port = silent.getsockname()[1]
    hot = RedisHot(f"redis://127.0.0.1:{port}/0", timeout=0.3, connect_timeout=0.25)
    try:
        started = time.monotonic()
        with pytest.raises(HotStoreDown):
            await hot.get("anything")
        assert time.monotonic() - started < 1.5
        with pytest.raises(HotStoreDown):  # and again: the dead connection is not reused forever
            await hot.get("anything")
    finally:
        await hot.close()
        silent.close()


async def test_nothing_listening_is_an_outage_at_once() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connecting is refused
    hot = RedisHot(f"redis://127.0.0.1:{port}/0")
    try:
        with pytest.raises(HotStoreDown):
            await hot.rate([])
    finally:
        await hot.close()
