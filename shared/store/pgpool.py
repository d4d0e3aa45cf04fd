"""A small pool of psycopg connections for one process.

psycopg_pool's AsyncConnectionPool did the job, but its checkout is built for generality
(a condition variable, `asyncio.wait_for` and a task per waiting caller, statistics, a
scheduler): at 50 concurrent requests it was a tenth of the gateway's CPU on PostgreSQL. Here a
checkout is a list pop, a busy pool hands connections to waiting callers in arrival order, and a
connection that comes back broken or mid-transaction is closed instead of reused.

A pooled connection can die while it sits idle: a PostgreSQL restart (or a pooler's) terminates
it, a NAT or load balancer forgets it. Lending it would fail the caller's statement — after it was
sent, when nobody can tell whether it ran. So an idle connection is checked before it is lent, and
one that fails the check is dropped and the caller served by the next (the retry happens before
anything of the caller's was sent):
- always, for free: a connection whose socket is readable while idle holds the server's goodbye
  (a restart's FATAL message, or the end of the stream) — one zero-timeout poll;
- after `check_after_s` idle, a round trip (an empty query) bounded by `ping_timeout_s`: a
  connection dropped silently on the way gives no sign otherwise.
"""

from __future__ import annotations

import asyncio
import select
import time
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import psycopg
from psycopg import AsyncConnection, generators
from psycopg.pq import TransactionStatus

Connect = Callable[[], Awaitable[AsyncConnection[Any]]]


class PoolTimeout(TimeoutError):
    """No connection came free within the wait limit."""


class ConnectionPool:
    def __init__(
        self,
        connect: Connect,
        *,
        max_size: int = 10,
        wait_s: float = 30.0,
        max_lifetime_s: float = 3600.0,
        check_after_s: float = 5.0,
        ping_timeout_s: float = 2.0,
    ) -> None:
        self._connect = connect
        self.max_size = max_size
        self.wait_s = wait_s
        self.max_lifetime_s = max_lifetime_s
        self.check_after_s = check_after_s
        self.ping_timeout_s = ping_timeout_s
        self.size = 0  # open connections, idle or lent
        self.dropped_idle = 0  # idle connections found dead when about to be lent: a metric
        self._idle: list[AsyncConnection[Any]] = []
        self._born: dict[int, float] = {}  # id(connection) → when it was opened
        self._idle_since: dict[int, float] = {}  # id(connection) → when it last came back
        self._waiters: deque[asyncio.Future[AsyncConnection[Any]]] = deque()
        self._opening: set[asyncio.Task[None]] = set()
        self._closed = False

    async def acquire(self) -> AsyncConnection[Any]:
        while self._idle:
            conn = self._idle.pop()  # the most recently used: warm caches, the rest can age out
            if await self._alive(conn):
                return conn
            self.dropped_idle += 1
            self._discard(conn)
        if self._closed:
            raise RuntimeError("the connection pool is closed")
        if self.size < self.max_size:
            self.size += 1
            try:
                conn = await self._connect()
            except BaseException:
                self.size -= 1
                self._hand_over_slot()
                raise
            self._born[id(conn)] = time.monotonic()
            return conn
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[AsyncConnection[Any]] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(self.wait_s, _expire, waiter, self.wait_s)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())  # handed over just as the caller gave up
            raise
        finally:
            timer.cancel()

    async def _alive(self, conn: AsyncConnection[Any]) -> bool:
        """Whether an idle connection may be lent (see the module's docstring)."""
        idle = time.monotonic() - self._idle_since.get(id(conn), 0.0)
        try:
            poller = select.poll()
            poller.register(conn.pgconn.socket, select.POLLIN)
            if conn.closed or poller.poll(0):
                return False
            if idle > self.check_after_s:
                # The empty query, bounded by the wait itself: a cancelled psycopg call would try
                # to cancel on the server first, for seconds, through the same dead path.
                conn.pgconn.send_query(b"")
                await conn.wait(generators.execute(conn.pgconn), timeout=self.ping_timeout_s)
        except (OSError, psycopg.Error):  # psycopg.Error: a timed-out wait too
            return False
        return True

    def release(self, conn: AsyncConnection[Any]) -> None:
        if (
            conn.closed
            or conn.info.transaction_status != TransactionStatus.IDLE
            or time.monotonic() - self._born.get(id(conn), 0.0) > self.max_lifetime_s
            or self._closed
        ):
            self._discard(conn)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle_since[id(conn)] = time.monotonic()
        self._idle.append(conn)

    def connection(self) -> _Lease:
        """`async with pool.connection() as conn:` — acquire, and release whatever happens."""
        return _Lease(self)

    def _discard(self, conn: AsyncConnection[Any]) -> None:
        self.size -= 1
        self._born.pop(id(conn), None)
        self._idle_since.pop(id(conn), None)
        if not conn.closed:
            task = asyncio.ensure_future(conn.close())
            task.add_done_callback(_quiet)
        self._hand_over_slot()

    def _hand_over_slot(self) -> None:
        """A slot came free while callers wait: open a connection in it for them."""
        if self._waiters and not self._closed and self.size < self.max_size:
            self.size += 1
            task = asyncio.ensure_future(self._open_for_waiters())
            self._opening.add(task)
            task.add_done_callback(self._opening.discard)

    async def _open_for_waiters(self) -> None:
        try:
            conn = await self._connect()
        except Exception as exc:
            self.size -= 1
            while self._waiters:  # the first waiter learns why (the database is down, say)
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(exc)
                    break
            self._hand_over_slot()
            return
        self._born[id(conn)] = time.monotonic()
        self.release(conn)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            self.size -= 1
            await conn.close()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(RuntimeError("the connection pool is closed"))


class _Lease:
    __slots__ = ("conn", "pool")

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.conn: AsyncConnection[Any] | None = None

    async def __aenter__(self) -> AsyncConnection[Any]:
        self.conn = await self.pool.acquire()
        return self.conn

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.conn is not None:
            self.pool.release(self.conn)
            self.conn = None


def _expire(waiter: asyncio.Future[Any], seconds: float) -> None:
    if not waiter.done():
        waiter.set_exception(PoolTimeout(f"no database connection came free within {seconds:g} s"))


def _quiet(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # a failed close of a connection we were dropping anyway
