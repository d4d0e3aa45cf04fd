"""Routines (shared.store.routines): one declaration, the same outcome as plain statements on
SQLite and as a server-side function on PostgreSQL, and plain statements again where PostgreSQL
does not let us create the function."""

from __future__ import annotations

import os

import psycopg
import pytest
from psycopg import sql

from shared.billing.ledger import new_id
from shared.store import Database, now_text, open_database
from shared.store.routines import Routine, Statement
from tests.services import postgres_url
from tests.store.support import as_user, postgres_schema

INSERT_USER = "INSERT INTO users (id, email, plan_id, created_at) VALUES (:id, :email, 'free', :now)"

CHARGE = Routine(
    "test_charge",
    (("id", "text"), ("amount", "bigint"), ("suspend", "boolean")),
    (
        Statement("UPDATE users SET balance_pico = balance_pico + :amount WHERE id = :id"),
        Statement("SELECT 1 FROM users WHERE id = :id FOR UPDATE", dialect="postgres"),
        Statement("UPDATE users SET status = 'suspended' WHERE id = :id", when="suspend"),
        Statement("UPDATE users SET email = email WHERE id = :id AND balance_pico >= 10 RETURNING id"),
    ),
)

# A routine that returns a value: the balance once it reaches 10 (NULL before).
TOP_UP = Routine(
    "test_top_up",
    (("id", "text"), ("amount", "bigint")),
    (
        Statement("UPDATE users SET balance_pico = balance_pico + :amount WHERE id = :id"),
        Statement(
            "UPDATE users SET email = email WHERE id = :id AND balance_pico >= 10 RETURNING balance_pico"
        ),
    ),
    returns="bigint",
)


async def new_user(db: Database) -> str:
    user_id = new_id("usr")
    await db.fetch(INSERT_USER, {"id": user_id, "email": f"{user_id}@example.com", "now": now_text()})
    return user_id


async def user(db: Database, user_id: str) -> dict[str, object]:
    row = await db.fetch_one("SELECT balance_pico, status FROM users WHERE id = :id", {"id": user_id})
    assert row is not None
    return row


async def function_exists(db: Database, routine: Routine) -> bool:
    row = await db.fetch_one("SELECT to_regproc(:f) IS NOT NULL AS found", {"f": routine.function})
    return bool(row and row["found"])


async def test_a_routine_runs_its_statements_and_reports_the_last_ones_rows(db: Database) -> None:
    first, second = await new_user(db), await new_user(db)
    assert await db.run(CHARGE, {"id": first, "amount": 4, "suspend": False}) is False  # 4 < 10
    assert await db.run(CHARGE, {"id": first, "amount": 6, "suspend": True}) is True
    assert await user(db, first) == {"balance_pico": 10, "status": "suspended"}
    assert await db.run(CHARGE, {"id": second, "amount": 12, "suspend": False}) is True
    assert await user(db, second) == {"balance_pico": 12, "status": "active"}  # the gate held
    if db.dialect == "postgres":
        assert await function_exists(db, CHARGE)


async def test_a_routine_can_return_the_value_its_last_statement_returns(db: Database) -> None:
    user_id = await new_user(db)
    assert await db.run(TOP_UP, {"id": user_id, "amount": 4}) is None  # no row: no value
    assert await db.run(TOP_UP, {"id": user_id, "amount": 7}) == 11
    assert await user(db, user_id) == {"balance_pico": 11, "status": "active"}
    if db.dialect == "postgres":
        assert await function_exists(db, TOP_UP)


# A routine that returns several values: the new balance and whether the user is suspended.
TOP_UP_STATUS = Routine(
    "test_top_up_status",
    (("id", "text"), ("amount", "bigint")),
    (
        Statement("UPDATE users SET balance_pico = balance_pico + :amount WHERE id = :id"),
        Statement(
            "UPDATE users SET email = email WHERE id = :id AND balance_pico >= 10 "
            "RETURNING balance_pico, (SELECT COUNT(*) FROM users s WHERE s.id = :id AND s.status = 'suspended') > 0"
        ),
    ),
    returns=("bigint", "boolean"),
)


async def test_a_routine_can_return_several_values(db: Database) -> None:
    user_id = await new_user(db)
    assert await db.run(TOP_UP_STATUS, {"id": user_id, "amount": 4}) == (None, None)  # no row
    got = await db.run(TOP_UP_STATUS, {"id": user_id, "amount": 7})
    assert (got[0], bool(got[1])) == (11, False)  # SQLite's booleans are integers
    await db.run(CHARGE, {"id": user_id, "amount": 0, "suspend": True})
    got = await db.run(TOP_UP_STATUS, {"id": user_id, "amount": 1})
    assert (got[0], bool(got[1])) == (12, True)
    if db.dialect == "postgres":
        assert await function_exists(db, TOP_UP_STATUS)


async def test_a_failing_routine_changes_nothing(db: Database) -> None:
    user_id = await new_user(db)
    with pytest.raises(Exception, match=r"(?i)constraint|violat"):
        await db.run(CHARGE, {"id": user_id, "amount": -5, "suspend": True})  # CHECK balance >= 0
    assert await user(db, user_id) == {"balance_pico": 0, "status": "active"}
    assert await db.run(CHARGE, {"id": user_id, "amount": 10, "suspend": False}) is True  # usable after


def test_a_routine_declares_every_parameter_and_ends_with_an_ungated_returning() -> None:
    with pytest.raises(ValueError, match="untyped"):
        Routine("bad", (("id", "text"),), (Statement("UPDATE users SET x = :y WHERE id = :id RETURNING id"),))
    with pytest.raises(ValueError, match="RETURNING"):
        Routine("bad", (("id", "text"),), (Statement("UPDATE users SET status = 'x' WHERE id = :id"),))
    with pytest.raises(ValueError, match="RETURNING"):
        Routine(
            "bad",
            (("id", "text"), ("on", "boolean")),
            (Statement("UPDATE users SET status = 'x' WHERE id = :id RETURNING id", when="on"),),
        )
    with pytest.raises(ValueError, match="one column"):
        Routine(
            "bad",
            (("id", "text"),),
            (Statement("UPDATE users SET status = 'x' WHERE id = :id RETURNING id, status"),),
            returns="text",
        )


async def test_without_the_right_to_create_functions_postgres_runs_plain_statements() -> None:
    role = "gwt_role_" + os.urandom(6).hex()
    with postgres_schema() as owner_url:
        schema = owner_url.rsplit("%3D", 1)[1]
        owner = open_database(owner_url)
        try:
            from shared.store.migrate import migrate, read_migrations

            await migrate(owner, read_migrations())
        finally:
            await owner.close()
        with psycopg.connect(postgres_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN BYPASSRLS").format(sql.Identifier(role)))
            conn.execute(
                sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), sql.Identifier(role))
            )
            conn.execute(
                sql.SQL("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {} TO {}").format(
                    sql.Identifier(schema), sql.Identifier(role)
                )
            )
        db = open_database(as_user(owner_url, role))
        try:
            user_id = await new_user(db)
            assert await db.run(CHARGE, {"id": user_id, "amount": 11, "suspend": True}) is True
            assert await user(db, user_id) == {"balance_pico": 11, "status": "suspended"}
            assert not await function_exists(db, CHARGE)  # it could not be created: statements ran
            assert await db.run(TOP_UP, {"id": user_id, "amount": 1}) == 12
            assert not await function_exists(db, TOP_UP)
        finally:
            await db.close()
            with psycopg.connect(postgres_url(), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
