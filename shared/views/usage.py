"""What a user has spent: the credit ledger page (`GET /v1/credits`) and request usage with daily
aggregates by model (`GET /v1/usage`). Read-only; money leaves as decimal strings.

Daily buckets are UTC calendar days computed here, one range query per day, all in one
transaction: a portable way to group by day. Grouping on `SUBSTR(created_at, 1, 10)` works on
SQLite's text but not on PostgreSQL's TIMESTAMPTZ (no `substr(timestamptz, …)`, and a cast to text
follows the session's time zone), while a range on `created_at` compares correctly on both and
uses the `(user_id, created_at)` index.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.billing import money, money_pico
from shared.errors import InvalidRequest
from shared.runtime import Runtime
from shared.store import Row, Step, now_text

MAX_DAYS = 90

CREDIT_CURSOR = "SELECT id FROM credit_transactions WHERE id = :cursor AND user_id = :user_id"
RECORD_CURSOR = "SELECT request_id FROM request_records WHERE request_id = :cursor AND user_id = :user_id"
RECORDS = """
SELECT request_id, key_id, model, provider, endpoint, status, http_status, input_tokens, cache_read_tokens,
       cache_write_tokens, output_tokens, reasoning_tokens, estimated, cost_pico, byok, latency_ms, created_at
FROM request_records
WHERE user_id = :user_id {after}
ORDER BY created_at DESC, request_id DESC
LIMIT :limit
"""
AFTER_RECORD = (
    "AND (created_at, request_id) < "
    "(SELECT created_at, request_id FROM request_records WHERE request_id = :cursor AND user_id = :user_id)"
)
DAY = """
SELECT model, COUNT(*) AS requests, SUM(CASE WHEN status = 'ok' THEN 0 ELSE 1 END) AS errors,
       SUM(input_tokens) AS input_tokens, SUM(cache_read_tokens) AS cache_read_tokens,
       SUM(cache_write_tokens) AS cache_write_tokens, SUM(output_tokens) AS output_tokens,
       SUM(reasoning_tokens) AS reasoning_tokens, SUM(cost_pico) AS cost_pico
FROM request_records
WHERE user_id = :user_id AND created_at >= :start AND created_at < :end
GROUP BY model
ORDER BY model
"""
_TOKENS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")


def _usd(pico: Any) -> str:
    return money_pico(int(pico or 0)) or "0"


def ledger_row_view(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "amount": _usd(row["amount_pico"]),
        "type": row["type"],
        "balance_after": _usd(row["balance_after_pico"]),
        "request_id": row["request_id"],
        "payment_id": row["payment_id"],
        "description": row["description"],
        "created_at": row["created_at"],
    }


def record_view(row: Row) -> dict[str, Any]:
    return {
        "request_id": row["request_id"],
        "key_id": row["key_id"],
        "model": row["model"],
        "provider": row["provider"],
        "endpoint": row["endpoint"],
        "status": row["status"],
        "http_status": row["http_status"],
        **{name: int(row[name]) for name in _TOKENS},
        "estimated": bool(row["estimated"]),
        "cost": _usd(row["cost_pico"]),
        "byok": bool(row["byok"]),
        "latency_ms": row["latency_ms"],
        "created_at": row["created_at"],
    }


def _bad_cursor() -> InvalidRequest:
    return InvalidRequest("cursor: unknown cursor (use next_cursor from the previous page)", param="cursor")


async def credits_page(rt: Runtime, user_id: str, *, limit: int, cursor: str | None) -> dict[str, Any]:
    if (
        cursor is not None
        and await rt.db.fetch_one(CREDIT_CURSOR, {"cursor": cursor, "user_id": user_id}) is None
    ):
        raise _bad_cursor()
    balance, held = await rt.ledger.balance(user_id)
    rows, has_more = await rt.ledger.transactions(user_id, limit=limit, cursor=cursor)
    return {
        "currency": "USD",
        "balance": money(balance),
        "held": money(held),
        "available": money(balance - held),
        "data": [ledger_row_view(r) for r in rows],
        "has_more": has_more,
        "next_cursor": rows[-1]["id"] if has_more and rows else None,
    }


def day_windows(days: int, now: datetime | None = None) -> list[tuple[str, str, str]]:
    """(date, start, end) of the last `days` UTC calendar days, today included, oldest first."""
    today = (now or datetime.now(UTC)).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
    return [(f"{s:%Y-%m-%d}", now_text(s), now_text(s + timedelta(days=1))) for s in starts]


async def usage_page(
    rt: Runtime, user_id: str, *, days: int, limit: int, cursor: str | None
) -> dict[str, Any]:
    """Per-request records (newest first, paged) and per-day, per-model totals for `days` days."""
    params = {"user_id": user_id, "cursor": cursor, "limit": limit + 1}
    windows = day_windows(days)
    steps: list[Step] = [
        (RECORD_CURSOR, params),
        (RECORDS.format(after=AFTER_RECORD if cursor else ""), params),
        *((DAY, {"user_id": user_id, "start": start, "end": end}) for _, start, end in windows),
    ]
    found, records, *per_day = await rt.db.transaction(steps)
    if cursor is not None and not found:
        raise _bad_cursor()
    daily = [
        {
            "date": date,
            "model": row["model"],
            "requests": int(row["requests"]),
            "errors": int(row["errors"] or 0),
            **{name: int(row[name] or 0) for name in _TOKENS},
            "cost": _usd(row["cost_pico"]),
        }
        for (date, _, _), rows in zip(windows, per_day, strict=True)
        for row in rows
    ]
    page = records[:limit]
    has_more = len(records) > limit
    return {
        "object": "usage",
        "data": [record_view(r) for r in page],
        "has_more": has_more,
        "next_cursor": page[-1]["request_id"] if has_more and page else None,
        "days": days,
        "daily": daily,
    }
