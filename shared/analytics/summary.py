"""One summary query over the rollups and the raw records: counts, tokens, exact cost and latency
percentiles per period (UTC day or hour) × the chosen dimensions (user, key, model, provider).

Days before the rollup watermark are read from `usage_daily` (one grouped statement: at most one
row per day per series); days from the watermark on, not rolled up yet, and every hourly period,
are read from `request_records` with one range statement per period — portable, since grouping
on a computed day differs between SQLite's text and PostgreSQL's TIMESTAMPTZ (see
shared.views.usage). Hours come from the raw records only, so an hourly summary must lie within
the raw-record retention. All statements run in one transaction (one snapshot).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.analytics.buckets import COLUMNS
from shared.analytics.rollup import COUNTERS, RAW_TERMS, watermark
from shared.store import Database, Row, Step, now_text

# Dimension name -> (usage_daily column, request_records expression), in the order rows are keyed.
DIMENSIONS = {
    "user": ("user_id", "user_id"),
    "key": ("key_id", "COALESCE(key_id, '')"),
    "model": ("model", "model"),
    "provider": ("provider", "COALESCE(provider, '')"),
}
_SUMMED = (*COUNTERS, *COLUMNS)


@dataclass(frozen=True, slots=True)
class Query:
    start: date  # first day, inclusive
    end: date  # last day, inclusive
    granularity: str = "day"  # or "hour"
    group_by: tuple[str, ...] = ()  # names of DIMENSIONS, in DIMENSIONS order
    user_id: str | None = None  # None: every user (operators only)


@dataclass(slots=True)
class Cell:
    """The totals of one period × series: counters, the latency histogram and its maximum."""

    period: str
    series: tuple[str | None, ...]
    sums: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_SUMMED, 0))
    latency_max_ms: int = 0

    def add(self, row: Row) -> None:
        for name in _SUMMED:
            self.sums[name] += int(row[name] or 0)
        self.latency_max_ms = max(self.latency_max_ms, int(row["latency_max_ms"] or 0))


def _where(q: Query, params: dict[str, Any]) -> str:
    if q.user_id is None:
        return ""
    params["user_id"] = q.user_id
    return " AND user_id = :user_id"


def _rolled_step(q: Query, first: date, stop: date) -> Step:
    params: dict[str, Any] = {"from": first.isoformat(), "to": stop.isoformat()}
    dims = [DIMENSIONS[d][0] for d in q.group_by]
    sums = ", ".join(f"SUM({name}) AS {name}" for name in _SUMMED)
    sql = (
        f"SELECT day AS period, {''.join(d + ', ' for d in dims)}{sums}, MAX(latency_max_ms) AS latency_max_ms "
        f"FROM usage_daily WHERE day >= :from AND day < :to{_where(q, params)} "
        f"GROUP BY {', '.join(['day', *dims])}"
    )
    return sql, params


def _raw_step(q: Query, start: datetime, end: datetime) -> Step:
    params: dict[str, Any] = {"start": now_text(start), "end": now_text(end)}
    dims = [f"{DIMENSIONS[d][1]} AS {DIMENSIONS[d][0]}" for d in q.group_by]
    group = f" GROUP BY {', '.join(DIMENSIONS[d][1] for d in q.group_by)}" if q.group_by else ""
    sql = (
        f"SELECT {''.join(d + ', ' for d in dims)}{RAW_TERMS} FROM request_records "
        f"WHERE created_at >= :start AND created_at < :end{_where(q, params)}{group}"
    )
    return sql, params


def _periods(q: Query, first: date) -> list[tuple[str, datetime, datetime]]:
    """(label, start, end) of each period read from raw records: days from `first`, or hours."""
    step = timedelta(hours=1) if q.granularity == "hour" else timedelta(days=1)
    moment = datetime.combine(first, datetime.min.time(), UTC)
    stop = datetime.combine(q.end + timedelta(days=1), datetime.min.time(), UTC)
    out = []
    while moment < stop:
        label = f"{moment:%Y-%m-%dT%H:00:00Z}" if q.granularity == "hour" else f"{moment:%Y-%m-%d}"
        out.append((label, moment, moment + step))
        moment += step
    return out


async def summarise(db: Database, q: Query) -> list[Cell]:
    """The cells of the query, ordered by period then series."""
    mark = await watermark(db) if q.granularity == "day" else None
    after_end = q.end + timedelta(days=1)
    rolled_to = min(mark, after_end) if mark is not None else q.start
    steps: list[Step] = []
    if rolled_to > q.start:
        steps.append(_rolled_step(q, q.start, rolled_to))
    periods = _periods(q, max(q.start, rolled_to))
    steps.extend(_raw_step(q, start, end) for _, start, end in periods)
    results = await db.transaction(steps) if steps else []
    cells: dict[tuple[str, tuple[str | None, ...]], Cell] = {}

    def take(period: str, row: Row) -> None:
        if not int(row["requests"] or 0):
            return  # an aggregate without GROUP BY over no rows
        series = tuple(row[DIMENSIONS[d][0]] or None for d in q.group_by)
        cells.setdefault((period, series), Cell(period, series)).add(row)

    if rolled_to > q.start:
        for row in results.pop(0):
            take(str(row["period"]), row)
    for (label, _, _), rows in zip(periods, results, strict=True):
        for row in rows:
            take(label, row)
    return [cells[k] for k in sorted(cells, key=lambda k: (k[0], [s or "" for s in k[1]]))]


def total(cells: list[Cell], period: str = "", series: tuple[str | None, ...] = ()) -> Cell:
    """The cells added into one (histograms add, so its percentiles stay exact to the bucket)."""
    out = Cell(period, series)
    for cell in cells:
        for name in _SUMMED:
            out.sums[name] += cell.sums[name]
        out.latency_max_ms = max(out.latency_max_ms, cell.latency_max_ms)
    return out


def merge_by(cells: list[Cell], index: int) -> dict[str | None, Cell]:
    """The cells totalled over periods per value of the series' `index`-th dimension."""
    groups: dict[str | None, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.series[index], []).append(cell)
    return {value: total(group, series=(value,)) for value, group in groups.items()}
