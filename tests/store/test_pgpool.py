"""The PostgreSQL connection pool (`shared.store.pgpool`) against the real server: bounded size,
waiting callers served in turn, broken and mid-transaction connections never handed out again, and
idle connections that died (a restart, a silent drop) replaced before they are lent."""

from __future__ import annotations

import asyncio
import select
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection

from shared.store.pgpool import ConnectionPool, PoolTimeout
from tests.faults.proxy import postgres_proxy, proxied
from tests.services import postgres_url


def pool(max_size: int, **kw: Any) -> tuple[ConnectionPool, list[AsyncConnection[Any]]]:
    opened: list[AsyncConnection[Any]] = []

    async def connect() -> AsyncConnection[Any]:
        conn = await AsyncConnection.connect(postgres_url(), autocommit=True)
        opened.append(conn)
        return conn

    return ConnectionPool(connect, max_size=max_size, **kw), opened


async def test_many_callers_share_at_most_max_size_connections() -> None:
    p, opened = pool(3)
    busy = peak = 0

    async def work(i: int) -> int:
        nonlocal busy, peak
        async with p.connection() as conn:
            busy += 1
            peak = max(peak, busy)
            row = await (await conn.execute("SELECT %s::int, pg_sleep(0.01)", (i,))).fetchone()
            busy -= 1
            assert row is not None
            return int(row[0])

    assert await asyncio.gather(*(work(i) for i in range(40))) == list(range(40))
    assert len(opened) == 3 and peak == 3 and p.size == 3
    await p.close()


async def test_a_connection_the_server_terminated_while_idle_is_replaced_before_it_is_lent() -> None:
    """What a PostgreSQL restart does to every pooled connection (FATAL 57P01, then the end of the
    stream): the next caller gets a live connection, not the dead one's error."""
    p, opened = pool(1)
    async with p.connection() as conn:
        pid = conn.info.backend_pid
    with psycopg.connect(postgres_url(), autocommit=True) as admin:  # the server drops it (a restart)
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    deadline = asyncio.get_running_loop().time() + 5
    while not opened[0].pgconn.socket or not _readable(opened[0]):  # the goodbye has arrived
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    async with p.connection() as conn:  # a new connection, not the dead one
        assert conn.info.backend_pid != pid
        await conn.execute("SELECT 1")
    assert len(opened) == 2 and p.size == 1 and p.dropped_idle == 1
    await p.close()


async def test_a_connection_dropped_silently_on_the_way_is_pinged_and_replaced() -> None:
    """A NAT or load balancer that forgets an idle connection gives no sign: past `check_after_s`
    idle, a connection is pinged (bounded) before it is lent, so a statement never hangs on it."""
    proxy = postgres_proxy()
    url = proxied(postgres_url(), proxy)
    try:
        p = ConnectionPool(
            lambda: AsyncConnection.connect(url, autocommit=True),
            max_size=2,
            check_after_s=0.1,
            ping_timeout_s=0.3,
        )
        async with p.connection() as conn:
            await conn.execute("SELECT 1")
        proxy.blackhole()
        await asyncio.sleep(0.2)
        async with asyncio.timeout(3), p.connection() as conn:
            assert (await (await conn.execute("SELECT 1")).fetchone()) == (1,)
        assert p.dropped_idle == 1 and proxy.connections == 2
        await p.close()
    finally:
        proxy.stop()


def _readable(conn: AsyncConnection[Any]) -> bool:
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN)
    return bool(poller.poll(0))


async def test_a_connection_left_in_a_transaction_is_not_handed_out() -> None:
    p, opened = pool(1)
    async with p.connection() as conn:
        await conn.execute("BEGIN")
        await conn.execute("CREATE TEMP TABLE leftover (x int)")
    async with p.connection() as conn:
        assert conn is not opened[0]  # the open transaction went with its connection
        assert (await (await conn.execute("SELECT to_regclass('pg_temp.leftover')")).fetchone()) == (None,)
    await p.close()


async def test_a_waiter_that_gives_up_does_not_take_a_connection_with_it() -> None:
    p, opened = pool(1, wait_s=0.2)
    async with p.connection():
        waiting = asyncio.ensure_future(p.acquire())
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        with pytest.raises(PoolTimeout):
            await p.acquire()  # nothing came free within the wait limit
    async with p.connection() as conn:  # the one connection is back, and it is the same one
        assert conn is opened[0]
    await p.close()


async def test_a_database_that_refuses_connections_fails_the_caller_at_once() -> None:
    async def refused() -> AsyncConnection[Any]:
        return await AsyncConnection.connect("postgresql://postgres@127.0.0.1:1/none", connect_timeout=2)

    p = ConnectionPool(refused, max_size=2)
    with pytest.raises(psycopg.OperationalError):
        await p.acquire()
    assert p.size == 0
    await p.close()
