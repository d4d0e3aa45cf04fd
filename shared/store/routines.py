"""Routines: the transactions the hot path runs on every request, declared once.

A routine is a fixed list of statements (the same `:name` SQL as everywhere else), some gated by
a boolean parameter. Every backend can run it as an ordinary transaction (`Routine.steps`). On
PostgreSQL it also becomes one server-side PL/pgSQL function, generated from those statements:
a call is one short statement whose inner plans the server caches per connection, where the same
statements sent as text are parsed and planned on every request (measured: planning was most of
PostgreSQL's ~1 ms of CPU per request). Plan caching inside a function needs no client state, so
it works through transaction poolers (Supavisor, PgBouncer) that cannot keep prepared statements.
The function forces generic plans: left to choose, PostgreSQL kept re-planning some statements
for every call's values (custom plans), measured at a quarter of its CPU per request, for plans
that come out the same (every statement looks rows up by key).

The function's name carries a hash of its text: a changed routine is a new function, never a
redefinition under the feet of instances still running the old code.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from shared.store import PARAM as _PARAM
from shared.store import Step

_RETURNING = re.compile(r"\s+RETURNING\s+[\w\s,.*]+$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str
    when: str | None = None  # a boolean parameter: the statement runs only when it is true
    dialect: str | None = None  # only on this backend (e.g. PostgreSQL's row locks)


@dataclass(frozen=True)
class Routine:
    """Statements run in one transaction; the result is whether the last one touched a row — or,
    with `returns` (its PostgreSQL type), the one value the last one's `RETURNING` gives (None
    when it touched no row).

    The last statement ends with `RETURNING …` (so that a plain transaction can tell) and is not
    gated. `params` lists every parameter with its PostgreSQL type, in the function's order.
    """

    name: str
    params: tuple[tuple[str, str], ...]
    statements: tuple[Statement, ...]
    returns: str | None = None
    settings: tuple[tuple[str, str], ...] = ()  # planner settings of the function (PostgreSQL)

    def __post_init__(self) -> None:
        names = {n for n, _ in self.params}
        used = {m for s in self.statements for m in _PARAM.findall(s.sql)}
        used |= {s.when for s in self.statements if s.when}
        if used - names:
            raise ValueError(f"routine {self.name}: untyped parameters {sorted(used - names)}")
        last = self.statements[-1]
        returning = _RETURNING.search(last.sql)
        if last.when or not returning:
            raise ValueError(f"routine {self.name}: the last statement must be ungated and RETURNING")
        if self.returns and "," in returning.group(0):
            raise ValueError(f"routine {self.name}: a routine that returns a value RETURNING one column")

    def steps(self, values: Mapping[str, Any], dialect: str) -> list[Step]:
        return [
            (s.sql, values)
            for s in self.statements
            if s.dialect in (None, dialect) and (s.when is None or values[s.when])
        ]

    def result(self, rows: list[dict[str, Any]]) -> Any:
        """The routine's result from the rows its last statement returned (plain statements)."""
        if self.returns is None:
            return bool(rows)
        return next(iter(rows[0].values())) if rows else None

    def decode(self, raw: bytes | None) -> Any:
        """The routine's result from the function's one-cell answer, in PostgreSQL's text form."""
        if self.returns is None:
            return raw == b"t"
        if raw is None:
            return None
        return int(raw) if self.returns in ("bigint", "integer") else raw.decode()

    @cached_property
    def _body(self) -> str:
        position = {name: i + 1 for i, (name, _) in enumerate(self.params)}

        def positional(sql: str) -> str:
            return _PARAM.sub(lambda m: f"${position[m.group(1)]}", sql.strip())

        lines = []
        statements = [s for s in self.statements if s.dialect in (None, "postgres")]
        for i, s in enumerate(statements):
            sql = s.sql.strip()
            if i == len(statements) - 1:
                sql = sql + " INTO gz_result" if self.returns else _RETURNING.sub("", sql)
            sql = positional(sql)
            if sql[:6].upper() == "SELECT":  # PL/pgSQL runs a query whose rows it drops as PERFORM
                sql = "PERFORM" + sql[6:]
            if s.when:
                lines.append(f"  IF ${position[s.when]} THEN\n    {sql};\n  END IF;")
            else:
                lines.append(f"  {sql};")
        args = ", ".join(t for _, t in self.params)
        if self.returns:
            declare, finish = f"gz_result {self.returns}", "  RETURN gz_result;"
        else:
            declare, finish = (
                "touched bigint",
                "  GET DIAGNOSTICS touched = ROW_COUNT;\n  RETURN touched > 0;",
            )
        settings = "".join(f"SET {name} = {value} " for name, value in self.settings)
        return (
            f"({args}) RETURNS {self.returns or 'boolean'} LANGUAGE plpgsql "
            f"SET plan_cache_mode = force_generic_plan {settings}AS $routine$\n"
            f"DECLARE {declare};\nBEGIN\n" + "\n".join(lines) + f"\n{finish}\nEND\n$routine$"
        )

    @cached_property
    def function(self) -> str:
        return f"gz_{self.name}_{hashlib.sha256(self._body.encode()).hexdigest()[:10]}"

    @cached_property
    def create_sql(self) -> str:
        return f"CREATE OR REPLACE FUNCTION {self.function}{self._body}"

    def call(self, values: Mapping[str, Any], quote: Callable[[bytes], bytes]) -> bytes:
        """`SELECT fn('…', …)`: every value a quoted literal (`quote`: the driver's escaping)
        that the server reads as the parameter's declared type; None is NULL."""
        args = b", ".join(
            b"NULL"
            if (value := values[name]) is None
            else quote((("true" if value else "false") if isinstance(value, bool) else str(value)).encode())
            for name, _ in self.params
        )
        return b"SELECT " + self.function.encode() + b"(" + args + b")"
