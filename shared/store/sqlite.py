"""SQLite backend: one connection owned by one thread, so the event loop never blocks on disk.

A transaction is one hop to that thread (`BEGIN IMMEDIATE` … `COMMIT`), which also serialises
writers inside the process; WAL mode lets other processes (the CLI next to a running server) read
and wait their turn to write.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shared.store import Database, Row, Step


class SQLiteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gatewayz-sqlite")
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def from_url(cls, url: str) -> SQLiteDatabase:
        path = sqlite_path(url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return cls(path)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._conn = conn
        return self._conn

    def _run(self, steps: Sequence[Step]) -> list[list[Row]]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            results = []
            for sql, params in steps:
                cur = conn.execute(sql, dict(params))
                results.append([dict(r) for r in cur.fetchall()] if cur.description else [])
            conn.execute("COMMIT")
            return results
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def transaction(self, steps: Sequence[Step]) -> list[list[Row]]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, steps)

    def _script(self, script: str) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in split_statements(script):
                conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def execute_script(self, script: str) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._script, script)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)


def sqlite_path(url: str) -> str:
    """sqlite:///relative/path.db, sqlite:////absolute/path.db, sqlite:///:memory: → the path."""
    path = url.split("sqlite://", 1)[1]
    return path[1:] if path.startswith("/") else path


def split_statements(script: str) -> list[str]:
    """Split a migration on `;` at line ends (the migrations keep one statement per `;`)."""
    statements, current = [], []
    for line in script.splitlines():
        stripped = line.strip()
        if stripped.startswith("--") or not stripped:
            continue
        current.append(line)
        if stripped.endswith(";"):
            statements.append("\n".join(current))
            current = []
    if current:
        statements.append("\n".join(current))
    return statements
