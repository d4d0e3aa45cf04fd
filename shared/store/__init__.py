"""The system of record: one portable SQL schema on SQLite (embedded default) or PostgreSQL.

Queries are written once, with `:name` parameters, and run on either backend (the PostgreSQL
backend rewrites the placeholders for psycopg). A money operation is a list of statements run in
one transaction without looking at intermediate results (`Database.transaction`): on PostgreSQL
the whole transaction is one message and one network round trip; on SQLite it runs inline on the
loop with group commit. The two transactions of every paid request are routines
(`shared.store.routines`): on PostgreSQL, one server-side function call each.

Failures a caller can act on leave the store typed, whatever the backend:
- `UnstorableText` (400): a text value holds a NUL character, which PostgreSQL cannot store (and
  its literal escaping would silently cut the text there). Refused on both backends, for every
  value bound to a statement (`check_values`), so no route needs its own check;
- `DatabaseUnavailable` (503 with `retry-after`): the database could not be reached, dropped the
  connection, or (SQLite) stayed locked or failed to read or write its file. Statement errors
  (a bug, a constraint) stay what they are.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.errors import DependencyUnavailable, InvalidRequest

if TYPE_CHECKING:
    from shared.store.routines import Routine

Row = dict[str, Any]
Params = Mapping[str, Any]
Step = tuple[str, Params]
PARAM = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")  # a `:name` placeholder (not a `::` cast)


class DatabaseUnavailable(DependencyUnavailable):
    """The database cannot serve the request now (its cause is chained): a 503, never a 500."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"The database is unavailable ({type(cause).__name__}); retry shortly.")


class UnstorableText(InvalidRequest):
    """A text value the database cannot store: one with a NUL character."""

    def __init__(self) -> None:
        super().__init__("Text values may not contain NUL characters (\\u0000).", code="invalid_character")


def check_values(params: Params) -> None:
    """Refuse a NUL in any text bound to a statement (cheap: a C `in` per string value)."""
    for value in params.values():
        if type(value) is str and "\x00" in value:
            raise UnstorableText()


def check_steps(steps: Sequence[Step]) -> None:
    seen: set[int] = set()
    for _, params in steps:
        if id(params) not in seen:  # a routine's statements share one mapping: check it once
            seen.add(id(params))
            check_values(params)


class Database(ABC):
    dialect: str
    # Whether money transactions must take the user's row lock first. PostgreSQL runs concurrent
    # transactions (READ COMMITTED); SQLite's `BEGIN IMMEDIATE` already serialises every writer.
    row_locks: bool = True

    @abstractmethod
    async def transaction(self, steps: Sequence[Step]) -> list[list[Row]]:
        """Run the statements in one transaction; the rows each returned (empty for none)."""

    async def run(self, routine: Routine, values: Params) -> Any:
        """Run a routine (`shared.store.routines`): whether its last statement touched a row, or
        the value it returned (`Routine.returns`)."""
        return routine.result((await self.transaction(routine.steps(values, self.dialect)))[-1])

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        return (await self.transaction([(sql, params or {})]))[0]

    async def fetch_one(self, sql: str, params: Params | None = None) -> Row | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    @abstractmethod
    async def execute_script(self, script: str) -> None:
        """Run DDL (a migration) in one transaction."""

    @abstractmethod
    async def close(self) -> None: ...


def now_text(moment: datetime | None = None) -> str:
    """Times are stored as fixed-width ISO-8601 UTC text (`2026-11-29T10:21:07.123456Z`), so they
    compare correctly as text on SQLite; PostgreSQL parses the same text into TIMESTAMPTZ."""
    moment = datetime.now(UTC) if moment is None else moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"  # isoformat: ~3x faster than strftime


def normalise(row: Mapping[str, Any]) -> Row:
    """One row shape whatever the driver: datetimes become the stored text form."""
    return {k: now_text(v) if isinstance(v, datetime) else v for k, v in row.items()}


def open_database(url: str) -> Database:
    if url.startswith("sqlite:"):
        from shared.store.sqlite import SQLiteDatabase

        return SQLiteDatabase.from_url(url)
    if url.startswith(("postgresql:", "postgres:")):
        from shared.store.postgres import PostgresDatabase

        return PostgresDatabase(url)
    raise ValueError(
        f"GATEWAYZ_DATABASE_URL must start with sqlite:// or postgresql://, got {url.split(':')[0]!r}"
    )
