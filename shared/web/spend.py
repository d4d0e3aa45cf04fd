"""Spend by key and by provider from `GET /v1/usage/summary` (one call per breakdown, read from
the daily rollups and the raw records after them, as a script holding the key would ask), and
the per-request records `GET /v1/usage` pages through for the CSV export.

The records walk is bounded (`MAX_PAGES` of the API's largest page): past that the export covers
the latest requests only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from shared.web.base import Ctx

PAGE = 100  # the API's largest page
MAX_PAGES = 20  # at most 2,000 requests read for one page view


@dataclass
class Records:
    rows: list[dict[str, Any]]
    complete: bool  # False: more requests in the period than were read
    error: str | None = None
    status: int = 200  # the API's status when it refused a page


def moment(value: Any) -> datetime:
    """A record's `created_at` (SQLite text or PostgreSQL's ISO form) as an aware UTC time."""
    found = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return (found if found.tzinfo else found.replace(tzinfo=UTC)).astimezone(UTC)


def period_start(days: int, now: datetime | None = None) -> datetime:
    """The start of the period the usage API's daily totals cover: `days` UTC days, today included."""
    today = (now or datetime.now(UTC)).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days - 1)


async def records_since(ctx: Ctx, days: int, max_pages: int = MAX_PAGES) -> Records:
    """The caller's requests of the last `days` days, newest first (days=1 on each call: the
    API's daily totals are not needed here)."""
    start = period_start(days)
    rows: list[dict[str, Any]] = []
    cursor = None
    for _ in range(max_pages):
        answer = await ctx.api("GET", "/v1/usage", query={"days": 1, "limit": PAGE, "cursor": cursor})
        if not answer.ok:
            return Records(rows, False, answer.message, answer.status)
        for record in answer.data["data"]:
            if moment(record["created_at"]) < start:
                return Records(rows, True)
            rows.append(record)
        cursor = answer.data.get("next_cursor")
        if not answer.data.get("has_more") or not cursor:
            return Records(rows, True)
    return Records(rows, False)


async def summary(ctx: Ctx, days: int, dimension: str) -> Records:
    """The summary's rows (one per UTC day and value of `dimension`: `provider` or `key`) of the
    last `days` days, today included."""
    start = period_start(days).date().isoformat()
    answer = await ctx.api("GET", "/v1/usage/summary", query={"start": start, "group_by": dimension})
    if not answer.ok:
        return Records([], False, answer.message, answer.status)
    return Records(answer.data["data"], True)


def totals_by(rows: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    """Requests, errors, tokens and cost per value of `field` (provider, key_id) over the summary's
    days, most spent first."""
    groups: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"requests": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0, "cost": Decimal(0)}
    )
    for row in rows:
        total = groups[str(row.get(field) or "")]
        for count in ("requests", "errors", "input_tokens", "output_tokens"):
            total[count] += int(row[count])
        total["cost"] += Decimal(row["cost"])
    return sorted(({"name": k, **t} for k, t in groups.items()), key=lambda r: (-r["cost"], r["name"]))


def daily_by(
    rows: list[dict[str, Any]], field: str, names: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Per-day cost per value of `field`, in the shape of the usage API's `daily` (date, cost), with
    the label under `model` so that one chart function draws every breakdown."""
    costs: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for row in rows:
        label = str(row.get(field) or "unknown")
        label = (names or {}).get(label, label)
        costs[(row["period"], label)] += Decimal(row["cost"])
    return [{"date": d, "model": label, "cost": str(cost)} for (d, label), cost in sorted(costs.items())]


async def key_names(ctx: Ctx) -> dict[str, str]:
    """Key id → "name (…last4)", where the session's key may list keys (else the ids are shown)."""
    answer = await ctx.api("GET", "/v1/keys")
    if not answer.ok:
        return {}
    return {k["id"]: f"{k['name']} (…{k['last4']})" for k in answer.data["data"]}
