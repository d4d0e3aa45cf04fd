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

_RETURNING = re.compile(r"\s+RETURNING\s+[^;]+$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str
    when: str | None = None  # a boolean parameter: the statement runs only when it is true
    dialect: str | None = None  # only on this backend (e.g. PostgreSQL's row locks)


@dataclass(frozen=True)
class Routine:
    """Statements run in one transaction; the result is whether the last one touched a row — or,
    with `returns` (its PostgreSQL type), the one value the last one's `RETURNING` gives (None
    when it touched no row); with a tuple of types, the tuple of the values its `RETURNING`
    columns give (Nones when it touched no row).

    The last statement ends with `RETURNING …` (so that a plain transaction can tell) and is not
    gated. `params` lists every parameter with its PostgreSQL type, in the function's order.
    """

    name: str
    params: tuple[tuple[str, str], ...]
    statements: tuple[Statement, ...]
    returns: str | tuple[str, ...] | None = None
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
        if isinstance(self.returns, str) and "," in returning.group(0):
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
        if isinstance(self.returns, tuple):
            return tuple(rows[0].values()) if rows else (None,) * len(self.returns)
        return next(iter(rows[0].values())) if rows else None

    def decode(self, raw: list[bytes | None]) -> Any:
        """The routine's result from the function's answer (one row), in PostgreSQL's text form."""
        if self.returns is None:
            return raw[0] == b"t"
        if isinstance(self.returns, tuple):
            return tuple(_decode(value, kind) for value, kind in zip(raw, self.returns, strict=True))
        return _decode(raw[0], self.returns)

    @property
    def width(self) -> int:
        """How many values the function's answer row holds."""
        return len(self.returns) if isinstance(self.returns, tuple) else 1

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
                sql = sql + f" INTO {self._into}" if self.returns else _RETURNING.sub("", sql)
            sql = positional(sql)
            if sql[:6].upper() == "SELECT":  # PL/pgSQL runs a query whose rows it drops as PERFORM
                sql = "PERFORM" + sql[6:]
            if s.when:
                lines.append(f"  IF ${position[s.when]} THEN\n    {sql};\n  END IF;")
            else:
                lines.append(f"  {sql};")
        args = ", ".join(t for _, t in self.params)
        if isinstance(self.returns, tuple):  # OUT parameters (numbered after the inputs)
            args += "".join(f", OUT gz_r{i} {kind}" for i, kind in enumerate(self.returns))
            returns, declare, finish = "record", "", "  RETURN;"
        elif self.returns:
            returns, declare, finish = (
                self.returns,
                f"DECLARE gz_result {self.returns};\n",
                "  RETURN gz_result;",
            )
        else:
            returns, declare, finish = (
                "boolean",
                "DECLARE touched bigint;\n",
                "  GET DIAGNOSTICS touched = ROW_COUNT;\n  RETURN touched > 0;",
            )
        settings = "".join(f"SET {name} = {value} " for name, value in self.settings)
        return (
            f"({args}) RETURNS {returns} LANGUAGE plpgsql "
            f"SET plan_cache_mode = force_generic_plan {settings}AS $routine$\n"
            f"{declare}BEGIN\n" + "\n".join(lines) + f"\n{finish}\nEND\n$routine$"
        )

    @property
    def _into(self) -> str:
        if isinstance(self.returns, tuple):
            return ", ".join(f"gz_r{i}" for i in range(len(self.returns)))
        return "gz_result"

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
        select = b"SELECT * FROM " if isinstance(self.returns, tuple) else b"SELECT "
        return select + self.function.encode() + b"(" + args + b")"


def _decode(raw: bytes | None, kind: str) -> Any:
    if raw is None:
        return None
    if kind in ("bigint", "integer"):
        return int(raw)
    return raw == b"t" if kind == "boolean" else raw.decode()
