"""PostgreSQL backend (any Postgres, Supabase through its transaction pooler included).

psycopg 3 with a small async pool (`shared.store.pgpool`) created once per process. Supavisor in
transaction mode cannot keep server-side prepared statements, so none are used. A transaction's
statements are bound on the client (psycopg's own quoting, `mogrify`) and sent as one simple-query
message — `BEGIN; …; COMMIT` — one network round trip, and far less client work per statement
than the extended protocol's pipeline mode (measured: that machinery was a third of the gateway's
CPU).
Statements sent as text are planned on every run, so the hot path's transactions are routines:
functions created on first use (`run`), whose plans the server caches per connection.

A database that cannot be reached or drops the connection raises `DatabaseUnavailable` (a 503);
a routine whose installation met an outage is installed on a later call, not given up on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from shared.store import (
    PARAM,
    Database,
    DatabaseUnavailable,
    Params,
    Row,
    Step,
    check_steps,
    check_values,
    normalise,
)
from shared.store.pgpool import ConnectionPool, PoolTimeout
from shared.store.routines import Routine

log = logging.getLogger("gatewayz.store")


def to_psycopg(sql: str) -> str:
    """`:name` → `%(name)s`, and a literal `%` doubled."""
    return PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))


@contextmanager
def reachable() -> Iterator[None]:
    """Connection-level failures become `DatabaseUnavailable`: psycopg's OperationalError covers
    a refused or timed-out connection, a connection the server dropped or terminated (a restart:
    SQLSTATE 57P01), and the server's transient refusals (too many connections, a deadlock); no
    free connection within the pool's wait is one too."""
    try:
        yield
    except (psycopg.OperationalError, PoolTimeout) as exc:
        raise DatabaseUnavailable(exc) from exc


class PostgresDatabase(Database):
    dialect = "postgres"

    def __init__(self, url: str, *, max_size: int = 10) -> None:
        self.url = url
        self.max_size = max_size
        self._pool: ConnectionPool | None = None
        self._sql_cache: dict[str, str] = {}
        self._routines: dict[str, asyncio.Future[bool]] = {}  # function name → installed?

    def _sql(self, sql: str) -> str:
        converted = self._sql_cache.get(sql)
        if converted is None:
            converted = self._sql_cache[sql] = to_psycopg(sql)
        return converted

    async def _get_pool(self) -> ConnectionPool:
        if self._pool is None:
            from psycopg import AsyncConnection
            from psycopg.rows import dict_row

            async def connect() -> AsyncConnection[Any]:
                return await AsyncConnection.connect(
                    self.url,
                    prepare_threshold=None,
                    row_factory=dict_row,
                    autocommit=True,
                    connect_timeout=10,
                )

            self._pool = ConnectionPool(connect, max_size=self.max_size)
        return self._pool

    async def transaction(self, steps: Sequence[Step]) -> list[list[Row]]:
        from psycopg import AsyncClientCursor
        from psycopg.pq import TransactionStatus
        from psycopg.rows import dict_row

        check_steps(steps)
        pool = await self._get_pool()
        with reachable():
            async with pool.connection() as conn:
                cur = AsyncClientCursor(conn, row_factory=dict_row)
                statements = [cur.mogrify(self._sql(sql), dict(params)) for sql, params in steps]
                alone = len(statements) == 1  # one statement is a transaction of its own
                script = statements[0] if alone else ";\n".join(["BEGIN", *statements, "COMMIT"])
                try:
                    await cur.execute(script)
                    results = []
                    for _ in steps:  # the result sets: BEGIN's, then one per statement, then COMMIT's
                        if not alone:
                            cur.nextset()
                        rows = await cur.fetchall() if cur.description else []
                        results.append([normalise(r) for r in rows])
                    return results
                except BaseException:
                    if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
                        await conn.execute("ROLLBACK")  # a failed statement left the block aborted
                    raise

    async def run(self, routine: Routine, values: Params) -> Any:
        check_values(values)
        installing = self._routines.get(routine.function)
        if installing is None:
            installing = self._routines[routine.function] = asyncio.ensure_future(self._install(routine))
        try:
            installed = await asyncio.shield(installing)
        except DatabaseUnavailable:
            if self._routines.get(routine.function) is installing:
                del self._routines[routine.function]  # the next call installs it
            raise
        if installed:
            return await self._call(routine, values)
        return await super().run(routine, values)

    async def _call(self, routine: Routine, values: Params) -> Any:
        """`SELECT fn(…)` straight on the connection: literals escaped by libpq, the one-cell
        answer read off the result (the cursor machinery measured at a fifth of the gateway's CPU
        on this path)."""
        from psycopg import errors, generators
        from psycopg.pq import Escaping, ExecStatus

        pool = await self._get_pool()
        with reachable():
            async with pool.connection() as conn, conn.lock:
                pgconn = conn.pgconn
                pgconn.send_query(routine.call(values, Escaping(pgconn).escape_literal))  # PQescapeLiteral
                result = (await conn.wait(generators.execute(pgconn)))[-1]
                if result.status != ExecStatus.TUPLES_OK:
                    raise errors.error_from_result(result, encoding="utf-8")
                return routine.decode([result.get_value(0, i) for i in range(routine.width)])

    async def _install(self, routine: Routine) -> bool:
        """Create the routine's function unless it exists; False (plain transactions) if we may not."""

        async def exists() -> bool:  # visible on this connection's search_path
            row = await self.fetch_one(
                "SELECT to_regproc(:name) IS NOT NULL AS found", {"name": routine.function}
            )
            return bool(row and row["found"])

        try:
            if not await exists():
                await self.execute_script(routine.create_sql)
            return True
        except DatabaseUnavailable:
            raise  # says nothing about the routine: try again on a later call
        except Exception as exc:  # a concurrent creation by another instance, or no CREATE privilege
            if await exists():
                return True
            log.warning("routine %s runs as plain statements: %s", routine.function, exc)
            return False

    async def execute_script(self, script: str) -> None:
        pool = await self._get_pool()
        with reachable():
            async with pool.connection() as conn, conn.transaction():
                await conn.execute(script)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
