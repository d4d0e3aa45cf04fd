"""SQLite failures that mean "the database cannot serve now" (issue 10, defect 6): a file another
process keeps locked past the busy timeout, a file that cannot be opened. Each is the typed
`DatabaseUnavailable` (rendered as a 503 with retry-after, like a PostgreSQL outage), never a raw
sqlite3 error (a 500) — and never a caller left waiting forever."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from shared.errors import status_of
from shared.store import DatabaseUnavailable
from shared.store.sqlite import SQLiteDatabase
from tests.store.support import migrate_url


async def test_a_file_locked_past_the_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "gatewayz.db"
    migrate_url(f"sqlite:///{path}")
    other = sqlite3.connect(path, isolation_level=None)  # another process's writer, say the CLI
    other.execute("BEGIN IMMEDIATE")
    db = SQLiteDatabase(str(path), busy_timeout=0.2)
    try:
        async with asyncio.timeout(5):
            with pytest.raises(DatabaseUnavailable) as caught:
                await db.fetch("SELECT COUNT(*) AS n FROM users")
        assert status_of(caught.value) == 503 and caught.value.headers["retry-after"]
        other.execute("ROLLBACK")
        assert (await db.fetch_one("SELECT COUNT(*) AS n FROM users")) == {"n": 0}  # and it recovers
    finally:
        other.close()
        await db.close()


async def test_a_file_that_cannot_be_opened_is_unavailable_at_once(tmp_path: Path) -> None:
    db = SQLiteDatabase(str(tmp_path))  # a directory: SQLITE_CANTOPEN
    try:
        async with asyncio.timeout(5):  # the flush failed before its callers were told: they hung
            with pytest.raises(DatabaseUnavailable):
                await db.fetch("SELECT 1")
    finally:
        await db.close()
