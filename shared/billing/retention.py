"""Closed-hold retention (issue 20): delete settled, released and expired credit holds older than
GATEWAYZ_HOLD_RETENTION_DAYS, in bounded batches.

A hold is a guard for one request in flight; once closed it explains nothing the ledger
(`credit_transactions`, never pruned) and the request records do not. Every paid request leaves
one, so without pruning `credit_holds` grows by a row per request forever.

Each batch is its own short transaction (a few thousand rows: row locks held for milliseconds, WAL
in small pieces), and a run stops after `max_batches` or `budget_s`, whichever comes first; the
next scheduled run carries on. Open holds are never touched (the reaper expires the stale ones).

The batch walks the primary key, not a new index: hold ids begin with their creation time in
milliseconds (`shared.billing.ledger.new_id`), and a hold is closed after it is created, so every
hold closed before the cutoff has an id below `hold_<cutoff>`. A range on the primary key finds
them in order without an index on `closed_at`, which would cost a write on every hold's insert
and close — the hot path — to serve a job that runs every few minutes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.store import Database, now_text

BATCH = 5000  # rows per transaction
MAX_BATCHES = 200  # per run: at most a million rows, at a few hundred milliseconds per batch
BUDGET_S = 60.0  # per run: well inside the scheduled function's timeout (120 s)

PRUNE_BATCH = """
DELETE FROM credit_holds WHERE id IN (
    SELECT id FROM credit_holds
    WHERE id < :below_id AND status <> 'open' AND closed_at < :cutoff
    ORDER BY id
    LIMIT :batch
)
RETURNING id
"""


@dataclass(frozen=True, slots=True)
class PruneResult:
    pruned_holds: int
    batches: int
    done: bool  # False: the run stopped at its bound with more to prune (the next run continues)

    def to_json(self) -> dict[str, int | bool]:
        return {"pruned_holds": self.pruned_holds, "batches": self.batches, "done": self.done}


def id_bound(moment: datetime) -> str:
    """The smallest hold id `new_id` could give at `moment` (ids are `hold_<ms hex>…`)."""
    return f"hold_{int(moment.timestamp() * 1000):012x}"


async def prune_closed_holds(
    db: Database,
    retention: timedelta,
    *,
    batch: int = BATCH,
    max_batches: int = MAX_BATCHES,
    budget_s: float = BUDGET_S,
    now: datetime | None = None,
) -> PruneResult:
    """Delete holds closed more than `retention` ago, `batch` rows per transaction."""
    cutoff = (now or datetime.now(UTC)) - retention
    params = {"below_id": id_bound(cutoff), "cutoff": now_text(cutoff), "batch": batch}
    deadline = time.monotonic() + budget_s
    pruned = batches = 0
    while batches < max_batches and time.monotonic() < deadline:
        deleted = len(await db.fetch(PRUNE_BATCH, params))
        batches += 1
        pruned += deleted
        if deleted < batch:
            return PruneResult(pruned, batches, True)
    return PruneResult(pruned, batches, False)
