"""PostgreSQL backend (any Postgres, Supabase through its transaction pooler included).

psycopg 3 with a small async pool created once per process. Supavisor in transaction mode cannot
keep server-side prepared statements, so they are off (`prepare_threshold=None`). A transaction's
statements are pipelined: BEGIN, every statement and COMMIT leave in one network round trip.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from shared.store import Database, Row, Step, normalise

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")


def to_psycopg(sql: str) -> str:
    """`:name` → `%(name)s`, and a literal `%` doubled."""
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))


class PostgresDatabase(Database):
    dialect = "postgres"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.url = url
        self.min_size = min_size
        self.max_size = max_size
        self._pool = None
        self._sql_cache: dict[str, str] = {}

    def _sql(self, sql: str) -> str:
        converted = self._sql_cache.get(sql)
        if converted is None:
            converted = self._sql_cache[sql] = to_psycopg(sql)
        return converted

    async def _get_pool(self):  # type: ignore[no-untyped-def]
        if self._pool is None:
            from psycopg.rows import dict_row
            from psycopg_pool import AsyncConnectionPool

            pool = AsyncConnectionPool(
                self.url,
                min_size=self.min_size,
                max_size=self.max_size,
                kwargs={"prepare_threshold": None, "row_factory": dict_row, "autocommit": True},
                open=False,
            )
            await pool.open(wait=True, timeout=30)
            self._pool = pool
        return self._pool

    async def transaction(self, steps: Sequence[Step]) -> list[list[Row]]:
        pool = await self._get_pool()
        async with pool.connection() as conn:
            cursors = []
            async with conn.transaction(), conn.pipeline():
                for sql, params in steps:
                    cur = conn.cursor()
                    await cur.execute(self._sql(sql), dict(params))
                    cursors.append(cur)
            results = []
            for cur in cursors:
                rows = await cur.fetchall() if cur.description else []
                results.append([normalise(r) for r in rows])
            return results

    async def execute_script(self, script: str) -> None:
        pool = await self._get_pool()
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(script)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
