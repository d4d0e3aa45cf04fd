"""SQLite backend (the embedded default).

Short transactions run inline on the event loop, and nothing that can block does. In WAL mode
with `synchronous=NORMAL` a commit appends to the write-ahead log in the page cache — no fsync —
and costs tens of microseconds: measured here, far less than handing the transaction to a thread
(the hop, and the GIL hand-over it forces under load, cost several times the transaction itself
and halved the gateway's throughput). What can block stays off the loop:
- checkpoints, which fsync, run on a background thread (`wal_autocheckpoint` is off on the loop's
  connection; the thread checkpoints every few hundred commits). A checkpoint that runs beside
  the writes never catches up with them, and SQLite restarts a WAL only once it is wholly copied:
  under steady load the file grew without bound (1.8 GB after 50,000 commits, measured, and every
  read of a page not in the WAL searched its whole index). So the concurrent (passive) checkpoint
  is followed by a short one while new transactions wait in the queue (~2 ms, measured): it
  copies what was appended meanwhile and restarts the WAL, whose file is then written again from
  its start;
- a transaction that finds the file locked by another process (the CLI next to a running server)
  is not waited for on the loop (`busy_timeout` 0 there): it is retried on the thread, which may
  wait its turn;
- DDL (migrations) runs on the thread.

Transactions asked for close together are committed together (group commit): each runs inside
its own savepoint — one failing rolls back alone — and one COMMIT writes them all, dividing the
cost of the commit (the larger part) between requests. When other requests may soon commit
(`load()`: the runtime counts those in flight and not waiting on their upstream), a transaction
waits up to `GROUP_WINDOW` for company; alone, it commits at once.

A file that stays locked past the busy timeout, cannot be opened, read or written (a full or
failing disk) makes the transaction raise `DatabaseUnavailable` (a 503); a NUL in a text value is
refused as on PostgreSQL (`UnstorableText`), so both backends accept the same data.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shared.store import Database, DatabaseUnavailable, Row, Step, check_steps

_CHECKPOINT_EVERY = 1000  # commits between two checkpoints (each pauses commits ~2 ms)
GROUP_WINDOW = 0.002  # seconds a transaction may wait for others while the gateway is busy
# Primary result codes that say "the database cannot serve now", not "this statement is wrong":
# BUSY, LOCKED, NOMEM, READONLY (a file system remounted read-only), IOERR, FULL, CANTOPEN, PROTOCOL.
# https://www.sqlite.org/rescode.html
_UNAVAILABLE = frozenset({5, 6, 7, 8, 10, 13, 14, 15})


def unavailable(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF in _UNAVAILABLE


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back what is open, if anything: after some errors (a full disk, an I/O error) SQLite
    has already rolled back, and a second ROLLBACK would raise inside the flush."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


class SQLiteDatabase(Database):
    dialect = "sqlite"
    row_locks = False

    def __init__(self, path: str, *, busy_timeout: float = 30.0) -> None:
        self.path = path
        self.memory = path == ":memory:"
        self.busy_ms = int(busy_timeout * 1000)  # how long the thread waits for another process's lock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gatewayz-sqlite")
        self._loop_conn: sqlite3.Connection | None = None  # used on the event loop only
        self._thread_conn: sqlite3.Connection | None = None  # used on the executor thread only
        self._commits = 0
        self._checkpointing = False
        self._paused = False  # True while the closing checkpoint runs: transactions queue up
        self._pending: list[tuple[Sequence[Step], asyncio.Future[list[list[Row]]]]] = []
        self._slow: set[asyncio.Future[None]] = set()  # batches waiting on the thread
        self.load: Callable[[], int] = lambda: 0  # requests that may soon commit (set by the runtime)
        self._batch_goal = 2
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def from_url(cls, url: str) -> SQLiteDatabase:
        path = sqlite_path(url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return cls(path)

    def _open(self, *, busy_ms: int, autocheckpoint: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=busy_ms / 1000
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={busy_ms}")
        if not autocheckpoint:
            conn.execute("PRAGMA wal_autocheckpoint=0")
        return conn

    def _loop_connection(self) -> sqlite3.Connection:
        if self._loop_conn is None:
            # In memory there is one database per connection: the loop's is the only one.
            self._loop_conn = self._open(
                busy_ms=0 if not self.memory else self.busy_ms, autocheckpoint=self.memory
            )
        return self._loop_conn

    def _thread_connection(self) -> sqlite3.Connection:
        if self.memory:
            return self._loop_connection()
        if self._thread_conn is None:
            self._thread_conn = self._open(busy_ms=self.busy_ms, autocheckpoint=True)
        return self._thread_conn

    @staticmethod
    def _run_on(conn: sqlite3.Connection, steps: Sequence[Step]) -> list[list[Row]]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            results = []
            for sql, params in steps:
                cur = conn.execute(sql, dict(params))
                results.append([dict(r) for r in cur.fetchall()] if cur.description else [])
            conn.execute("COMMIT")
            return results
        except BaseException:
            _rollback(conn)
            raise

    async def transaction(self, steps: Sequence[Step]) -> list[list[Row]]:
        check_steps(steps)
        try:
            return await self._queue(steps)
        except sqlite3.Error as exc:
            if unavailable(exc):
                raise DatabaseUnavailable(exc) from exc
            raise

    async def _queue(self, steps: Sequence[Step]) -> list[list[Row]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[list[Row]]] = loop.create_future()
        self._pending.append((steps, future))
        pending = len(self._pending)
        if self._paused:
            pass  # the checkpoint's end flushes the queue
        elif pending == 1:
            load = self.load()
            if load > 1:
                self._batch_goal = load  # everyone in flight has joined: no one else can come
                self._timer = loop.call_later(GROUP_WINDOW, self._flush)  # busy: others will join
            else:
                loop.call_soon(self._flush)
        elif pending >= self._batch_goal and self._timer is not None:
            self._timer.cancel()  # company enough: commit now rather than at the window's end
            self._timer = None
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._timer = None
        if self._paused:
            # The closing checkpoint holds the write lock: a flush scheduled before it began waits
            # for its end (which flushes the queue) rather than finding the file busy and sending
            # its batch to the thread one transaction at a time.
            return
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            conn = self._loop_connection()
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            locked = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF in (5, 6)  # BUSY, LOCKED
            if self.memory or self._loop_conn is None or not locked:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            # Another process holds the write lock: wait for it off the loop.
            task = asyncio.ensure_future(self._on_thread(batch))
            self._slow.add(task)
            task.add_done_callback(self._slow.discard)
            return
        outcomes: list[list[list[Row]] | BaseException] = []
        alone = len(batch) == 1  # no savepoint needed: a failure rolls the whole transaction back
        for steps, _ in batch:
            if not alone:
                conn.execute("SAVEPOINT unit")
            try:
                results = []
                for sql, params in steps:
                    cur = conn.execute(sql, params)
                    results.append([dict(r) for r in cur.fetchall()] if cur.description else [])
                if not alone:
                    conn.execute("RELEASE unit")
                outcomes.append(results)
            except Exception as exc:  # this unit alone is undone
                if alone or not conn.in_transaction:  # (an I/O error may have ended the batch's)
                    _rollback(conn)
                    for _, future in batch:  # the whole batch's work went with the transaction
                        if not future.done():
                            future.set_exception(exc)
                    return
                conn.execute("ROLLBACK TO unit")
                conn.execute("RELEASE unit")
                outcomes.append(exc)
        try:
            conn.execute("COMMIT")
        except Exception as exc:
            _rollback(conn)
            outcomes = [exc] * len(batch)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue  # its caller was cancelled meanwhile (the work is committed anyway)
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        self._commits += 1
        if self._commits % _CHECKPOINT_EVERY == 0 and not self.memory and not self._checkpointing:
            self._checkpointing = True
            task = asyncio.ensure_future(self._checkpoint_cycle())
            self._slow.add(task)
            task.add_done_callback(self._slow.discard)

    async def _on_thread(self, batch: list[tuple[Sequence[Step], asyncio.Future[list[list[Row]]]]]) -> None:
        loop = asyncio.get_running_loop()
        for steps, future in batch:
            try:
                result = await loop.run_in_executor(
                    self._executor, self._run_on, self._thread_connection(), steps
                )
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)

    async def _checkpoint_cycle(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            commits = self._commits
            await loop.run_in_executor(self._executor, self._checkpoint, "PASSIVE")
            if self._commits != commits:  # written meanwhile: the WAL cannot restart by itself
                self._paused = True
                await loop.run_in_executor(self._executor, self._checkpoint, "RESTART")
        finally:
            self._checkpointing = False
            self._paused = False
            if self._pending and self._timer is None:
                loop.call_soon(self._flush)

    def _checkpoint(self, mode: str) -> None:
        try:
            self._thread_connection().execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        except sqlite3.OperationalError:
            pass  # busy (another process checkpoints): the next cycle will do

    def _script(self, script: str) -> None:
        conn = self._thread_connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in split_statements(script):
                try:
                    conn.execute(statement)
                except sqlite3.OperationalError as exc:
                    # A re-run of `ALTER TABLE … ADD COLUMN` (written IF NOT EXISTS for PostgreSQL,
                    # see shared.store.migrate.for_dialect): the column is there already.
                    if " ADD COLUMN " in statement and str(exc).startswith("duplicate column name"):
                        continue
                    raise
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    async def execute_script(self, script: str) -> None:
        try:
            if self.memory:
                self._script(script)
                return
            await asyncio.get_running_loop().run_in_executor(self._executor, self._script, script)
        except sqlite3.Error as exc:
            if unavailable(exc):
                raise DatabaseUnavailable(exc) from exc
            raise

    def _close_thread(self) -> None:
        if self._thread_conn is not None:
            try:
                self._thread_conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.OperationalError:
                pass
            self._thread_conn.close()
            self._thread_conn = None

    async def close(self) -> None:
        if not self.memory:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close_thread)
        self._executor.shutdown(wait=False)
        if self._loop_conn is not None:
            self._loop_conn.close()
            self._loop_conn = None


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
