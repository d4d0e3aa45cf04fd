"""The daily usage rollup and the retention of raw request records (the scheduled `rollup` job).

`roll_up` (re)computes whole UTC days from `request_records` into `usage_daily`: for each day it
deletes the day's rows and inserts them again from the raw records, in one transaction, then moves
the watermark (`usage_rollup_state.rolled_through`, the first day not rolled up) past it. A day is
replaced, never added to, so running the job twice, or reprocessing days already rolled up, never
double-counts. Only complete days are rolled (a day ends `LAG` before it counts as complete, for
requests still settling across midnight), and each run also re-rolls the day before the watermark,
so a record that settled late still lands. The hot path is untouched: no write per request.

`prune_records` deletes raw records older than the retention, in bounded batches, and only from
days already rolled up (and not the day the next run re-rolls), so the summaries of those days
(read from the rollups) stay exact. It first records the cut (`pruned_before`): a day whose raw
records may be gone is never rolled up again, since that would replace its rollup with what is
left. The ledger (`credit_transactions`) is never pruned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from shared.analytics.buckets import COLUMNS, raw_sums
from shared.store import Database, now_text

LAG = timedelta(minutes=10)
MAX_DAYS_PER_RUN = 31  # a run's work is bounded; the next run continues from the watermark
TOKENS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
COUNTERS = ("requests", "errors", *TOKENS, "cost_pico")
_ROLLED = (*COUNTERS, "latency_max_ms", *COLUMNS)

# The aggregate terms over raw records, in `_ROLLED` order (shared with shared.analytics.summary).
RAW_TERMS = ", ".join(
    [
        "COUNT(*) AS requests",
        "SUM(CASE WHEN status = 'ok' THEN 0 ELSE 1 END) AS errors",
        *(f"SUM({name}) AS {name}" for name in TOKENS),
        "SUM(cost_pico) AS cost_pico",
        "MAX(latency_ms) AS latency_max_ms",
        raw_sums(),
    ]
)
DELETE_DAY = "DELETE FROM usage_daily WHERE day = :day"
INSERT_DAY = f"""
INSERT INTO usage_daily (day, user_id, key_id, model, provider, {", ".join(_ROLLED)})
SELECT :day, user_id, COALESCE(key_id, ''), model, COALESCE(provider, ''), {RAW_TERMS}
FROM request_records
WHERE created_at >= :start AND created_at < :end
GROUP BY user_id, COALESCE(key_id, ''), model, COALESCE(provider, '')
ON CONFLICT (day, user_id, key_id, model, provider) DO UPDATE SET
    {", ".join(f"{name} = excluded.{name}" for name in _ROLLED)}
"""
# Two runs at once (a cron and a manual run) each replace the day; the upsert makes the second
# converge on the same rows instead of failing on the first one's inserts.
WATERMARK = "SELECT rolled_through, pruned_before FROM usage_rollup_state WHERE name = 'daily'"
MARK_PRUNED = """
UPDATE usage_rollup_state SET pruned_before = :cut
WHERE name = 'daily' AND (pruned_before IS NULL OR pruned_before < :cut)
"""
ADVANCE = """
INSERT INTO usage_rollup_state (name, rolled_through, updated_at) VALUES ('daily', :through, :now)
ON CONFLICT (name) DO UPDATE SET
    rolled_through = CASE WHEN excluded.rolled_through > usage_rollup_state.rolled_through
                          THEN excluded.rolled_through ELSE usage_rollup_state.rolled_through END,
    updated_at = excluded.updated_at
"""
FIRST_RECORD = "SELECT MIN(created_at) AS first FROM request_records"
PRUNE_BATCH = """
DELETE FROM request_records WHERE request_id IN (
    SELECT request_id FROM request_records WHERE created_at < :cutoff ORDER BY created_at LIMIT :n
)
RETURNING request_id
"""


def day_start(day: date) -> str:
    return now_text(datetime.combine(day, time(), UTC))


async def watermark(db: Database) -> date | None:
    """The first UTC day not rolled up (None: the job has never run)."""
    return (await _state(db))[0]


async def _state(db: Database) -> tuple[date | None, date | None]:
    """(rolled_through, pruned_before)."""
    row = await db.fetch_one(WATERMARK)
    if row is None:
        return None, None
    pruned = row["pruned_before"]
    return date.fromisoformat(row["rolled_through"]), date.fromisoformat(pruned) if pruned else None


@dataclass(frozen=True, slots=True)
class RollupResult:
    days: list[str]  # the days (re)computed by this run
    rolled_through: str | None  # the watermark after it

    def view(self) -> dict[str, object]:
        return {"rolled_days": len(self.days), "rolled_through": self.rolled_through}


async def roll_up(
    db: Database,
    *,
    now: datetime | None = None,
    since: date | None = None,
    max_days: int = MAX_DAYS_PER_RUN,
) -> RollupResult:
    """Roll up the complete days from the watermark (the day before it, re-rolled), or from
    `since` if earlier (a reprocess; never before `pruned_before`), at most `max_days` of them."""
    now = now or datetime.now(UTC)
    complete_before = (now - LAG).astimezone(UTC).date()
    mark, pruned = await _state(db)
    if mark is not None:
        start = mark - timedelta(days=1)
    else:
        first = (await db.fetch(FIRST_RECORD))[0]["first"]
        start = date.fromisoformat(first[:10]) if first else complete_before
    if since is not None:
        start = min(start, since)
    if pruned is not None:
        start = max(start, pruned)
    days: list[str] = []
    day = start
    while day < complete_before and len(days) < max_days:
        after = day + timedelta(days=1)
        text = day.isoformat()
        window = {"day": text, "start": day_start(day), "end": day_start(after)}
        await db.transaction(
            [
                (DELETE_DAY, {"day": text}),
                (INSERT_DAY, window),
                (ADVANCE, {"through": after.isoformat(), "now": now_text(now)}),
            ]
        )
        days.append(text)
        day = after
    mark = await watermark(db)
    return RollupResult(days, None if mark is None else mark.isoformat())


async def prune_records(
    db: Database,
    retention_days: int,
    *,
    now: datetime | None = None,
    batch: int = 5000,
    max_batches: int = 20,
) -> int:
    """Delete raw records older than `retention_days` whose day is rolled up (and is not the day
    the next run re-rolls); how many."""
    mark = await watermark(db)
    if mark is None:
        return 0
    now = now or datetime.now(UTC)
    cutoff_day = min(now.astimezone(UTC).date() - timedelta(days=retention_days), mark - timedelta(days=1))
    await db.fetch(MARK_PRUNED, {"cut": cutoff_day.isoformat()})
    cutoff = day_start(cutoff_day)
    deleted = 0
    for _ in range(max_batches):
        gone = len(await db.fetch(PRUNE_BATCH, {"cutoff": cutoff, "n": batch}))
        deleted += gone
        if gone < batch:
            break
    return deleted


async def rollup_job(db: Database, retention_days: int, *, now: datetime | None = None) -> dict[str, object]:
    """The scheduled run: roll up the complete days, then prune what the retention allows."""
    result = await roll_up(db, now=now)
    pruned = await prune_records(db, retention_days, now=now)
    return {**result.view(), "pruned_records": pruned}
