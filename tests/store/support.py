"""Test-only helpers shared by the store, concurrency and billing tests: a throw-away PostgreSQL
schema per run (so runs never collide with each other or with data in the shared database), a
SQLite file beside it, direct queries for assertions, and users/keys made without the services.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from shared.billing.ledger import Ledger, RequestRecord, new_id
from shared.store import Database, Row, now_text, open_database
from shared.store.migrate import migrate, read_migrations
from tests.services import postgres_url

T = TypeVar("T")

BACKENDS = ("sqlite", "postgres")


def schema_url(schema: str, base: str | None = None) -> str:
    """The base URL (tests/services.py decides it) with `search_path` set to the schema (a libpq
    `options` parameter)."""
    base = base or postgres_url()
    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"


def as_user(url: str, user: str) -> str:
    """The URL with another user name (no password: the test servers trust local connections)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh, empty schema `gwt_<hex>` in the test database, dropped afterwards; yields its URL."""
    schema = "gwt_" + os.urandom(8).hex()
    with psycopg.connect(postgres_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield schema_url(schema)
    finally:
        with psycopg.connect(postgres_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextmanager
def database_url(backend: str, directory: Path) -> Iterator[str]:
    """An empty database of the backend: a SQLite file in `directory`, or a fresh PG schema."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'gatewayz.db'}"
    else:
        with postgres_schema() as url:
            yield url


async def _with_db(url: str, sql_text: str, params: dict[str, Any] | None) -> list[Row]:
    db = open_database(url)
    try:
        return await db.fetch(sql_text, params or {})
    finally:
        await db.close()


def off_main_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call `fn` (which uses `asyncio.run`) in a worker thread. Importing the function modules
    makes an event loop current on the main thread (their module-level `Mangum(app)`); an
    `asyncio.run` there would end by unsetting it, leaving it unclosed, and its ResourceWarning
    would fail whichever test runs when it is collected."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from synchronous test code, off the main thread."""
    return off_main_thread(lambda: asyncio.run(factory()))


def query(url: str, sql_text: str, params: dict[str, Any] | None = None) -> list[Row]:
    """One statement on its own connection, from synchronous test code."""
    return run_async(lambda: _with_db(url, sql_text, params))


OPEN_HOLDS = "SELECT request_id, expires_at FROM credit_holds WHERE user_id = :u AND status = 'open'"


def open_holds_after_spares(url: str, user_id: str, timeout: float = 5.0) -> list[Row]:
    """The user's open holds once the gateway has dropped the spare holds nobody took
    (shared.billing.spares: a fraction of a second in the tests' settings); fails if one stays."""
    deadline = time.monotonic() + timeout
    while True:
        holds = query(url, OPEN_HOLDS, {"u": user_id})
        spares = [h for h in holds if str(h["request_id"]).startswith("spare_")]
        if not spares:
            return holds
        assert time.monotonic() < deadline, f"spare holds not dropped: {spares}"
        time.sleep(0.02)


@asynccontextmanager
async def migrated_postgres() -> AsyncIterator[tuple[str, Database]]:
    """A PostgreSQL schema of its own, migrated, and the store open on it: (its URL, the store)."""
    with postgres_schema() as url:
        db = open_database(url)
        try:
            await migrate(db, read_migrations())
            yield url, db
        finally:
            await db.close()


def migrate_url(url: str) -> None:
    async def run() -> None:
        db = open_database(url)
        try:
            await migrate(db, read_migrations())
        finally:
            await db.close()

    run_async(run)


async def new_user(db: Database, credits: Decimal = Decimal(0), *, plan: str = "free") -> str:
    """A user row (balance 0) and, if any, a grant through the ledger (so the balance is its sum)."""
    user_id = new_id("usr")
    await db.fetch(
        "INSERT INTO users (id, email, plan_id, created_at) VALUES (:id, :email, :plan, :now)",
        {"id": user_id, "email": f"{user_id}@example.com", "plan": plan, "now": now_text()},
    )
    if credits:
        result = await Ledger(db).change_balance(
            user_id, credits, type="grant", description="test credits", actor_type="system"
        )
        assert result.applied
    return user_id


async def new_key(db: Database, user_id: str) -> str:
    key_id = new_id("key")
    await db.fetch(
        """INSERT INTO api_keys (id, user_id, name, key_hash, prefix, last4, environment, scopes, created_at)
           VALUES (:id, :user_id, 'test', :hash, 'gw_live_xxxx', 'abcd', 'live', '["inference"]', :now)""",
        {"id": key_id, "user_id": user_id, "hash": os.urandom(32).hex(), "now": now_text()},
    )
    return key_id


LEDGER_STATE = """
SELECT u.balance_pico,
       (SELECT COALESCE(SUM(t.amount_pico), 0) FROM credit_transactions t WHERE t.user_id = u.id) AS ledger_sum,
       (SELECT MIN(t.balance_after_pico) FROM credit_transactions t WHERE t.user_id = u.id) AS lowest,
       (SELECT COUNT(*) FROM credit_transactions t WHERE t.user_id = u.id) AS rows
FROM users u WHERE u.id = :user_id
"""


def check_ledger(row: Row | None) -> int:
    """Assert the ledger invariants on a LEDGER_STATE row; return the balance in picodollars."""
    assert row is not None
    balance, ledger_sum = int(row["balance_pico"]), int(row["ledger_sum"])
    assert balance == ledger_sum, f"balance {balance} != ledger sum {ledger_sum}"
    assert balance >= 0
    assert row["lowest"] is None or int(row["lowest"]) >= 0
    return balance


async def assert_ledger_consistent(db: Database, user_id: str) -> int:
    return check_ledger(await db.fetch_one(LEDGER_STATE, {"user_id": user_id}))


# --- the ledger's test helpers (tests/store/test_ledger*.py) ---------------------------------------
def record(user_id: str, key_id: str | None, request_id: str, **fields: object) -> RequestRecord:
    rec = RequestRecord(
        request_id=request_id,
        user_id=user_id,
        key_id=key_id,
        model="openai/gpt-4o",
        endpoint="chat",
        provider="openai",
        input_tokens=120,
        cache_read_tokens=30,
        output_tokens=45,
        attempts=["openai:200"],
    )
    for name, value in fields.items():
        setattr(rec, name, value)
    return rec


async def balance(db: Database, user_id: str) -> tuple[Decimal, Decimal]:
    return await Ledger(db).balance(user_id)


async def rows(db: Database, sql: str, **params: object) -> list[dict[str, object]]:
    return await db.fetch(sql, params)


async def credit_rows(db: Database, user_id: str) -> list[dict[str, object]]:
    return await rows(
        db,
        "SELECT id, amount_pico, type, balance_after_pico, request_id, key_id, idempotency_key, description"
        " FROM credit_transactions WHERE user_id = :u ORDER BY created_at, id",
        u=user_id,
    )


async def hold_of(db: Database, request_id: str) -> dict[str, object] | None:
    return await db.fetch_one(
        "SELECT user_id, key_id, amount_pico, status, closed_at FROM credit_holds WHERE request_id = :r",
        {"r": request_id},
    )
