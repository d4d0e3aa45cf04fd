"""The usage analytics routes' work: `/v1/usage/summary` (the caller's own), `/admin/analytics`
(every user, same shape), `/v1/activity`, the public `/v1/rankings`, and the CSV export.

Money leaves as decimal strings (exact picodollar sums); percentiles are in milliseconds, read off
the rollups' fixed histogram (shared.analytics.buckets). Query parameters are checked here, so a
bad one is a 400 naming it, before any read.
"""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from shared.analytics.buckets import latency_view
from shared.analytics.rollup import TOKENS, watermark
from shared.analytics.summary import DIMENSIONS, Cell, Query, merge_by, summarise, total
from shared.billing import money_pico
from shared.errors import InvalidRequest
from shared.runtime import Runtime

MAX_DAYS = 366
MAX_HOURLY_DAYS = 7  # hourly periods are read from raw records: one statement per hour
DEFAULT_DAYS = 30
USER_GROUPS = ("key", "model", "provider")
ADMIN_GROUPS = ("user", *USER_GROUPS)
FIELDS = {"user": "user_id", "key": "key_id", "model": "model", "provider": "provider"}
RANKING_DAYS = {"day": 1, "week": 7, "month": 30}
RANKINGS_TTL_S = 60.0


def _date(value: str | None, name: str, default: date) -> date:
    if value is None:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{name}: expected a date as YYYY-MM-DD, got {value!r}.", param=name) from None


def parse_query(
    rt: Runtime,
    *,
    start: str | None,
    end: str | None,
    granularity: str,
    group_by: str | None,
    allowed: tuple[str, ...],
    user_id: str | None,
    today: date | None = None,
) -> Query:
    """The summary asked for, checked: a clear 400 naming the parameter otherwise."""
    today = today or datetime.now(UTC).date()
    if granularity not in ("day", "hour"):
        raise InvalidRequest("granularity: expected 'day' or 'hour'.", param="granularity")
    last = _date(end, "end", today)
    span = DEFAULT_DAYS if granularity == "day" else 1
    first = _date(start, "start", last - timedelta(days=span - 1))
    if first > last:
        raise InvalidRequest("start: must not be after end.", param="start")
    limit = MAX_DAYS if granularity == "day" else MAX_HOURLY_DAYS
    if (last - first).days + 1 > limit:
        raise InvalidRequest(f"end: at most {limit} days per {granularity}ly summary.", param="end")
    if granularity == "hour":
        kept = today - timedelta(days=rt.settings.request_retention_days)
        if first < kept:
            raise InvalidRequest(
                f"start: hourly summaries reach back to {kept} (the raw-record retention); "
                "use granularity=day for older days.",
                param="start",
            )
    names = [g.strip() for g in (group_by or "").split(",") if g.strip()]
    unknown = [g for g in names if g not in allowed]
    if unknown:
        raise InvalidRequest(
            f"group_by: unknown dimension {unknown[0]!r} (one or more of {', '.join(allowed)}).",
            param="group_by",
        )
    ordered = tuple(d for d in DIMENSIONS if d in names)
    return Query(first, last, granularity, ordered, user_id)


def _counts(cell: Cell) -> dict[str, Any]:
    sums = cell.sums
    return {
        "requests": sums["requests"],
        "errors": sums["errors"],
        **{name: sums[name] for name in TOKENS},
        "cost": money_pico(sums["cost_pico"]),
        "latency_ms": latency_view({**sums, "latency_max_ms": cell.latency_max_ms}),
    }


def cell_view(cell: Cell, group_by: tuple[str, ...]) -> dict[str, Any]:
    return {
        "period": cell.period,
        **{FIELDS[d]: value for d, value in zip(group_by, cell.series, strict=True)},
        **_counts(cell),
    }


async def summary(rt: Runtime, q: Query) -> dict[str, Any]:
    cells = await summarise(rt.db, q)
    return {
        "object": "usage.summary",
        "granularity": q.granularity,
        "start": q.start.isoformat(),
        "end": q.end.isoformat(),
        "group_by": list(q.group_by),
        "data": [cell_view(c, q.group_by) for c in cells],
        "totals": _counts(total(cells)),
    }


async def summary_answer(
    request: Request,
    rt: Runtime,
    *,
    start: str | None,
    end: str | None,
    granularity: str | None,
    group_by: str | None,
    fmt: str | None,
    allowed: tuple[str, ...],
    user_id: str | None,
) -> Any:
    """`GET /v1/usage/summary` and `GET /admin/analytics`: the query checked, the summary, as JSON
    or CSV as the caller asked."""
    as_csv = wants_csv(request, fmt)
    query = parse_query(
        rt,
        start=start,
        end=end,
        granularity=granularity or "day",
        group_by=group_by,
        allowed=allowed,
        user_id=user_id,
    )
    body = await summary(rt, query)
    return summary_csv(body) if as_csv else body


def wants_csv(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        if fmt not in ("json", "csv"):
            raise InvalidRequest("format: expected 'json' or 'csv'.", param="format")
        return fmt == "csv"
    return "text/csv" in request.headers.get("accept", "")


def _cell_text(value: Any) -> Any:
    # A text cell starting with a formula character is prefixed with a quote, so that a
    # spreadsheet opening the export shows it instead of evaluating it (OWASP "CSV injection").
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return "" if value is None else value


def summary_csv(body: dict[str, Any]) -> Response:
    """The summary's rows as CSV: one line per period × series, money as exact decimal strings."""
    dims = [FIELDS[d] for d in body["group_by"]]
    head = ["period", *dims, "requests", "errors", *TOKENS, "cost"]
    head += [f"latency_{p}_ms" for p in ("p50", "p95", "p99", "max")]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(head)
    for row in body["data"]:
        latency = row["latency_ms"]
        writer.writerow(
            [_cell_text(row[name]) for name in head[: len(head) - 4]]
            + [_cell_text(latency[p]) for p in ("p50", "p95", "p99", "max")]
        )
    name = f"usage-{body['start']}-{body['end']}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


KEYS = """
SELECT id, name, prefix, last4, revoked_at, last_used_at FROM api_keys WHERE user_id = :user_id ORDER BY created_at, id
"""


async def activity(rt: Runtime, user_id: str, days: int) -> dict[str, Any]:
    """What a user did over `days` UTC days: totals, top models, per-key use, spend per day."""
    today = datetime.now(UTC).date()
    q = Query(today - timedelta(days=days - 1), today, "day", ("key", "model"), user_id)
    cells = await summarise(rt.db, q)
    keys = await rt.db.fetch(KEYS, {"user_id": user_id})
    per_key = merge_by(cells, 0)
    models = sorted(merge_by(cells, 1).values(), key=lambda c: (-c.sums["requests"], c.series[0] or ""))
    per_day: dict[str, list[Cell]] = {}
    for cell in cells:
        per_day.setdefault(cell.period, []).append(cell)
    everything = total(cells)

    def use(cell: Cell | None) -> dict[str, Any]:
        sums = cell.sums if cell is not None else {}
        tokens = sum(int(sums.get(n, 0)) for n in TOKENS if n != "reasoning_tokens")
        return {
            "requests": int(sums.get("requests", 0)),
            "errors": int(sums.get("errors", 0)),
            "tokens": tokens,
            "spend": money_pico(int(sums.get("cost_pico", 0))),
        }

    return {
        "object": "activity",
        "days": days,
        "start": q.start.isoformat(),
        "end": q.end.isoformat(),
        **use(everything),
        "top_models": [{"model": c.series[0], **use(c)} for c in models[:5]],
        "keys": [
            {
                "id": k["id"],
                "name": k["name"],
                "prefix": k["prefix"],
                "last4": k["last4"],
                "revoked": k["revoked_at"] is not None,
                "last_used_at": k["last_used_at"],
                **use(per_key.get(k["id"])),
            }
            for k in keys
        ],
        "daily": [{"date": day, **use(total(group))} for day, group in sorted(per_day.items())],
    }


RANKED = """
SELECT model, SUM(requests) AS requests,
       SUM(input_tokens + cache_read_tokens + cache_write_tokens + output_tokens) AS tokens
FROM usage_daily WHERE day >= :from AND day < :to
GROUP BY model
"""


async def rankings(rt: Runtime, period: str, limit: int) -> dict[str, Any]:
    """Models by tokens and by requests over the last rolled-up day, week or month (every user's
    traffic, no user data), from the rollups; kept per process for RANKINGS_TTL_S."""
    if period not in RANKING_DAYS:
        raise InvalidRequest("period: expected 'day', 'week' or 'month'.", param="period")
    cache_key = f"rankings:{period}:{limit}"
    hit = rt.cache.get(cache_key)
    if hit is not None and hit[0] > time.monotonic():
        return dict(hit[1])
    mark = await watermark(rt.db)
    body: dict[str, Any] = {"object": "rankings", "period": period, "start": None, "end": None}
    rows: list[dict[str, Any]] = []
    if mark is not None:
        first = mark - timedelta(days=RANKING_DAYS[period])
        body["start"], body["end"] = first.isoformat(), (mark - timedelta(days=1)).isoformat()
        found = await rt.db.fetch(RANKED, {"from": first.isoformat(), "to": mark.isoformat()})
        # Only catalog models are ranked: a public list never shows a name a caller typed.
        rows = [
            {"model": r["model"], "tokens": int(r["tokens"] or 0), "requests": int(r["requests"] or 0)}
            for r in found
            if r["model"] in rt.catalog.models
        ]

    def ranked(measure: str) -> list[dict[str, Any]]:
        order = sorted(rows, key=lambda r: (-r[measure], r["model"]))[:limit]
        return [{"rank": n, **r} for n, r in enumerate(order, 1)]

    body["by_tokens"], body["by_requests"] = ranked("tokens"), ranked("requests")
    rt.cache[cache_key] = (time.monotonic() + RANKINGS_TTL_S, body)
    return dict(body)
