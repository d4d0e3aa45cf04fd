"""The operator's side of payments: Stripe events counted, dispute freezes lifted."""

from __future__ import annotations

from typing import Any

from shared.accounts.service import Actor, audit_step
from shared.auth import Principal
from shared.billing import money_pico
from shared.errors import Conflict, NotFound
from shared.runtime import Runtime


async def event_counts(rt: Runtime) -> dict[str, Any]:
    rows = await rt.db.fetch(
        "SELECT type, status, COUNT(*) AS n FROM stripe_events GROUP BY type, status ORDER BY type, status"
    )
    return {"data": [{"type": r["type"], "status": r["status"], "count": int(r["n"])} for r in rows]}


async def unfreeze(rt: Runtime, principal: Principal, user_id: str) -> dict[str, Any]:
    row = await rt.db.fetch_one("SELECT spend_frozen, debt_pico FROM users WHERE id = :id", {"id": user_id})
    if row is None:
        raise NotFound(f"No user {user_id!r}.", param="user_id", code="user_not_found")
    if int(row["debt_pico"]) > 0:
        raise Conflict("This user owes money from a refund: a top-up pays it and lifts the freeze.")
    actor = Actor("admin_key" if principal.kind == "admin" else "user", principal.user_id, principal.ip)
    await rt.db.transaction(
        [
            ("UPDATE users SET spend_frozen = NULL WHERE id = :id", {"id": user_id}),
            audit_step(actor, "user.unfreeze", "user", user_id, {"was": row["spend_frozen"]}),
        ]
    )
    await rt.keys.invalidate()
    return {"user_id": user_id, "frozen": None, "debt": money_pico(int(row["debt_pico"]))}
