"""SQLite group commit: transactions asked for together share one COMMIT, each in its own
savepoint — one that fails is undone alone and its caller gets the error; the others commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from shared.store.sqlite import SQLiteDatabase


@pytest.fixture
async def db(tmp_path: Path) -> SQLiteDatabase:
    database = SQLiteDatabase(str(tmp_path / "g.db"))
    await database.execute_script("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL);")
    return database


async def test_a_batch_commits_together_and_a_failing_unit_alone_is_undone(db: SQLiteDatabase) -> None:
    db.load = lambda: 10  # busy: the first transaction waits for company
    insert = "INSERT INTO t (id, n) VALUES (:id, :n)"
    results = await asyncio.gather(
        db.transaction([(insert, {"id": "a", "n": 1}), (insert, {"id": "b", "n": 2})]),
        db.transaction([(insert, {"id": "c", "n": 3}), (insert, {"id": "a", "n": 9})]),  # duplicate: fails
        db.transaction([(insert, {"id": "d", "n": 4}), ("SELECT COUNT(*) AS k FROM t", {})]),
        return_exceptions=True,
    )
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert results[2] == [[], [{"k": 3}]]  # a, b and d: c was undone with the failing unit
    rows = await db.fetch("SELECT id FROM t ORDER BY id")
    assert [r["id"] for r in rows] == ["a", "b", "d"]
    await db.close()


async def test_a_lone_failing_transaction_rolls_back(db: SQLiteDatabase) -> None:
    insert = "INSERT INTO t (id, n) VALUES (:id, :n)"
    with pytest.raises(sqlite3.IntegrityError):
        await db.transaction([(insert, {"id": "x", "n": 1}), (insert, {"id": "x", "n": 2})])
    assert await db.fetch("SELECT id FROM t") == []
    await db.transaction([(insert, {"id": "y", "n": 1})])  # the connection is usable again
    assert [r["id"] for r in await db.fetch("SELECT id FROM t")] == ["y"]
    await db.close()


async def test_a_write_lock_held_elsewhere_is_waited_for_off_the_loop(
    db: SQLiteDatabase, tmp_path: Path
) -> None:
    other = sqlite3.connect(str(tmp_path / "g.db"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process (the CLI, say) holds the write lock
    pending = asyncio.ensure_future(db.transaction([("INSERT INTO t (id, n) VALUES ('z', 1)", {})]))
    await asyncio.sleep(0.2)
    assert not pending.done()  # waiting on the thread; the loop keeps running
    other.execute("COMMIT")
    await asyncio.wait_for(pending, 10)
    assert [r["id"] for r in await db.fetch("SELECT id FROM t")] == ["z"]
    other.close()
    await db.close()


async def test_the_wal_stays_bounded_under_steady_writes(db: SQLiteDatabase, tmp_path: Path) -> None:
    # Checkpoints run beside the writes; without the closing checkpoint a WAL written to without
    # pause is never restarted: it grows by a page or two a commit (10,000 commits of one row: 85 MB,
    # measured). With it the file is written again from its start and stops growing; where it stops
    # depends on how many commits a checkpoint cycle lets by (12.7 MB on a fast machine, after 2,000).
    insert = "INSERT INTO t (id, n) VALUES (:id, :n)"
    wal = tmp_path / "g.db-wal"
    sizes = []
    for n in range(10_000):
        await db.transaction([(insert, {"id": f"row-{n:05d}", "n": n})])
        if n % 1000 == 999:
            sizes.append(wal.stat().st_size)
    assert sizes[-1] < 30 * 1024 * 1024
    assert sizes[-1] <= sizes[5] * 1.1  # the last 4,000 commits did not grow it
    assert (await db.fetch_one("SELECT COUNT(*) AS k FROM t")) == {"k": 10_000}  # nothing lost meanwhile
    await db.close()
