"""The billing part of `GET /v1/me`: the subscription (status, period end, cancelling), the
current period's allowance and how much of it was used, and any freeze or debt."""

from __future__ import annotations

from typing import Any

from shared.billing import money_pico
from shared.runtime import Runtime

STATE = """
SELECT u.spend_frozen, u.debt_pico,
       (SELECT s.status FROM subscriptions s WHERE s.user_id = u.id ORDER BY s.updated_at DESC LIMIT 1) AS sub_status,
       (SELECT s.current_period_end FROM subscriptions s WHERE s.user_id = u.id ORDER BY s.updated_at DESC LIMIT 1)
           AS period_end,
       (SELECT s.cancel_at_period_end FROM subscriptions s WHERE s.user_id = u.id ORDER BY s.updated_at DESC LIMIT 1)
           AS cancel_at_period_end
FROM users u WHERE u.id = :user_id
"""
# The latest allowance, and the usage charged since it was granted (capped at the allowance:
# usage is paid from the allowance first).
ALLOWANCE = """
SELECT a.amount_pico, a.created_at,
       (SELECT COALESCE(-SUM(t.amount_pico), 0) FROM credit_transactions t
        WHERE t.user_id = a.user_id AND t.type = 'usage' AND t.created_at >= a.created_at) AS used_pico
FROM credit_transactions a WHERE a.user_id = :user_id AND a.type = 'allowance'
ORDER BY a.created_at DESC, a.id DESC LIMIT 1
"""


async def billing_state(rt: Runtime, user_id: str) -> dict[str, Any]:
    row = await rt.db.fetch_one(STATE, {"user_id": user_id})
    allowance = await rt.db.fetch_one(ALLOWANCE, {"user_id": user_id})
    out: dict[str, Any] = {
        "frozen": row["spend_frozen"] if row else None,
        "debt": money_pico(int(row["debt_pico"])) if row else "0",
        "subscription": None,
        "allowance": None,
    }
    if row and row["sub_status"]:
        out["subscription"] = {
            "status": row["sub_status"],
            "current_period_end": row["period_end"],
            "cancel_at_period_end": bool(row["cancel_at_period_end"]),
        }
    if allowance:
        granted = int(allowance["amount_pico"])
        out["allowance"] = {
            "granted": money_pico(granted),
            "used": money_pico(min(granted, int(allowance["used_pico"]))),
            "since": allowance["created_at"],
        }
    return out
