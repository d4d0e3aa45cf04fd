"""The store contract (SPEC §1): the same behaviour from the SQLite and the PostgreSQL backend —
migrations, the seeded plans, the one placeholder syntax, and all-or-nothing transactions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.billing import to_pico
from shared.billing.ledger import new_id
from shared.store import Database, now_text, open_database
from shared.store.migrate import migrate, read_migrations
from tests.store.support import migrate_url, new_user, postgres_schema

TABLES = (
    "plans",
    "users",
    "api_keys",
    "key_spend",
    "credit_transactions",
    "credit_holds",
    "request_records",
    "audit_log",
    "provider_keys",
    "stored_responses",
    "catalog_syncs",
    "catalog_pins",
    "usage_daily",
    "usage_rollup_state",
    "schema_migrations",
)
INSERT_USER = "INSERT INTO users (id, email, plan_id, created_at) VALUES (:id, :email, 'free', :now)"


def user_params() -> dict[str, str]:
    user_id = new_id("usr")
    return {"id": user_id, "email": f"{user_id}@example.com", "now": now_text()}


async def test_migrations_apply_once_then_reapply_as_a_no_op(fresh_db: Database) -> None:
    migrations = read_migrations()
    versions = [version for version, _ in migrations]
    assert versions, "no migration files found"
    assert await migrate(fresh_db, migrations) == versions
    for table in TABLES:  # every table exists (a missing one raises)
        assert (await fresh_db.fetch(f"SELECT COUNT(*) AS n FROM {table}"))[0]["n"] >= 0
    recorded = await fresh_db.fetch("SELECT version FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in recorded] == versions

    user_id = await new_user(fresh_db)
    assert await migrate(fresh_db, migrations) == []  # bookkept: nothing to apply
    # The SQL itself is re-runnable (as the Supabase CLI may do): forget the bookkeeping, re-apply.
    await fresh_db.fetch("DELETE FROM schema_migrations")
    assert await migrate(fresh_db, migrations) == versions
    assert (await fresh_db.fetch("SELECT COUNT(*) AS n FROM plans"))[0]["n"] == 3
    assert await fresh_db.fetch_one("SELECT id FROM users WHERE id = :id", {"id": user_id}) is not None


async def test_plans_are_seeded(db: Database) -> None:
    rows = await db.fetch(
        "SELECT id, name, monthly_price_pico, monthly_credits_pico, requests_per_minute, concurrency,"
        " allowed_models FROM plans ORDER BY id"
    )
    assert [(r["id"], r["name"]) for r in rows] == [
        ("enterprise", "Enterprise"),
        ("free", "Free"),
        ("pro", "Pro"),
    ]
    by_id = {r["id"]: r for r in rows}
    assert by_id["free"]["monthly_price_pico"] == 0
    assert by_id["pro"]["monthly_price_pico"] == to_pico(Decimal(20)) == 20_000_000_000_000
    assert by_id["pro"]["monthly_credits_pico"] == 20_000_000_000_000
    assert (by_id["free"]["requests_per_minute"], by_id["free"]["concurrency"]) == (20, 2)
    assert by_id["enterprise"]["requests_per_minute"] == 3000
    assert all(r["allowed_models"] is None for r in rows)


async def test_named_placeholders_mean_the_same_on_both_backends(db: Database) -> None:
    row = await db.fetch_one(
        "SELECT :a AS a, :ab AS ab, :a AS again, CAST(:big AS BIGINT) AS big, :missing AS missing,"
        " '100%' AS pct, '12:30' AS clock",
        {"a": "first", "ab": "second", "big": 2**62 + 7, "missing": None},
    )
    assert row == {
        "a": "first",
        "ab": "second",
        "again": "first",
        "big": 2**62 + 7,  # BIGINT is exact, not a float
        "missing": None,
        "pct": "100%",
        "clock": "12:30",
    }
    # A literal `%` in a pattern next to parameters, and a parameter used twice in one statement.
    rows = await db.fetch(
        "SELECT id FROM plans WHERE id LIKE 'p%' AND (name = :name OR id = :name) ORDER BY id",
        {"name": "Pro"},
    )
    assert rows == [{"id": "pro"}]
    # Times are ISO-8601 UTC text, whatever the column type (TIMESTAMPTZ on PostgreSQL).
    params = user_params()
    await db.fetch(INSERT_USER, params)
    got = await db.fetch_one("SELECT created_at FROM users WHERE id = :id", {"id": params["id"]})
    assert got == {"created_at": params["now"]}


async def test_transaction_returns_each_statements_rows(db: Database) -> None:
    params = user_params()
    results = await db.transaction(
        [
            (INSERT_USER, params),
            ("UPDATE users SET balance_pico = 5 WHERE id = :id RETURNING balance_pico", params),
            ("SELECT email FROM users WHERE id = :id", params),
        ]
    )
    assert results == [[], [{"balance_pico": 5}], [{"email": params["email"]}]]


@pytest.mark.parametrize(
    "failing",
    [
        "UPDATE users SET balance_pico = -1 WHERE id = :id",  # CHECK (balance_pico >= 0)
        INSERT_USER,  # the same primary key again
        "INSERT INTO users (id, email, plan_id, created_at) VALUES (:other, :email2, 'no-such-plan', :now)",
    ],
    ids=["check", "unique", "foreign-key"],
)
async def test_a_failing_statement_rolls_the_whole_transaction_back(db: Database, failing: str) -> None:
    params = {**user_params(), "other": new_id("usr"), "email2": f"{new_id('e')}@example.com"}
    with pytest.raises(Exception) as caught:
        await db.transaction(
            [
                (INSERT_USER, params),
                ("UPDATE users SET balance_pico = 7 WHERE id = :id", params),
                (failing, params),
                ("UPDATE users SET status = 'suspended' WHERE id = :id", params),
            ]
        )
    assert "constraint" in str(caught.value).lower() or "violat" in str(caught.value).lower()
    assert await db.fetch_one("SELECT id FROM users WHERE id = :id", params) is None
    # The connection is usable afterwards (no transaction left aborted in the pool).
    for _ in range(3):
        assert await db.fetch_one("SELECT COUNT(*) AS n FROM users WHERE id = :id", params) == {"n": 0}
    await db.fetch(INSERT_USER, params)
    assert (await db.fetch_one("SELECT balance_pico FROM users WHERE id = :id", params)) == {
        "balance_pico": 0
    }


async def test_postgres_vacuums_holds_by_dead_rows_not_table_size() -> None:
    """Closed holds leave dead entries in the open-holds index that every reserve reads until a
    vacuum: the table's autovacuum trigger is a fixed count of dead rows (migration 20261129150000)."""
    with postgres_schema() as url:
        migrate_url(url)
        db = open_database(url)
        try:
            row = await db.fetch_one(
                "SELECT array_to_string(reloptions, ',') AS options FROM pg_class "
                "WHERE oid = to_regclass('credit_holds')"
            )
        finally:
            await db.close()
    assert row is not None
    options = set(str(row["options"]).split(","))
    assert {"autovacuum_vacuum_scale_factor=0", "autovacuum_vacuum_threshold=5000"} <= options
