"""Coupons (SPEC §5, issue 14): codes an operator creates (`POST /admin/coupons`) and users redeem
(`POST /v1/billing/redeem {code}`).

A coupon grants fixed credits at once (`credits`), or a percentage bonus on the user's next paid
top-up (`topup_bonus`: the redemption waits as `pending` and the top-up's webhook transaction
pays it, see `topups`). Limits: total redemptions, redemptions per user, validity window, plans.

A redemption is exactly once under any concurrency: its row is the `seq`-th use of the code by the
user (unique), counted under the coupon's row lock (PostgreSQL; SQLite serialises writers), and
the credit row, the counter and the redemption are one transaction.
"""

from __future__ import annotations

from typing import Any

import orjson

from shared.accounts.service import Actor, audit_step
from shared.auth import Principal
from shared.billing import from_pico, money, money_pico, to_pico
from shared.billing.ledger import new_id
from shared.errors import Conflict, InvalidRequest, NotFound
from shared.payments.ledger_steps import credit_steps, lock_steps
from shared.payments.requests import CouponCreate
from shared.runtime import Runtime
from shared.store import Step, now_text

LOCK_COUPON = "SELECT 1 FROM coupons WHERE code = :code FOR UPDATE"
_USES = "(SELECT COUNT(*) FROM coupon_redemptions r WHERE r.code = c.code AND r.user_id = u.id)"
REDEEM = f"""
INSERT INTO coupon_redemptions (id, code, user_id, seq, status, payment_id, created_at)
SELECT :redemption_id, c.code, u.id, {_USES} + 1,
       CASE WHEN c.kind = 'credits' THEN 'applied' ELSE 'pending' END, NULL, :now
FROM coupons c, users u
WHERE c.code = :code AND u.id = :user_id AND c.disabled = FALSE
  AND (c.starts_at IS NULL OR c.starts_at <= :now) AND (c.expires_at IS NULL OR c.expires_at > :now)
  AND (c.max_redemptions IS NULL OR c.redemptions < c.max_redemptions)
  AND {_USES} < c.per_user
  AND (c.plans IS NULL OR c.plans LIKE '%"' || u.plan_id || '"%')
  AND NOT (c.kind = 'topup_bonus' AND EXISTS (
      SELECT 1 FROM coupon_redemptions p WHERE p.user_id = u.id AND p.status = 'pending'))
ON CONFLICT (code, user_id, seq) DO NOTHING
"""
REDEEMED = "EXISTS (SELECT 1 FROM coupon_redemptions WHERE id = :redemption_id AND status = 'applied')"
COUNT = """
UPDATE coupons SET redemptions = redemptions + 1
WHERE code = :code AND EXISTS (SELECT 1 FROM coupon_redemptions WHERE id = :redemption_id)
"""
RESULT = "SELECT status FROM coupon_redemptions WHERE id = :redemption_id"
INSERT = """
INSERT INTO coupons (code, kind, credits_pico, bonus_percent, max_redemptions, per_user, redemptions, plans,
                     starts_at, expires_at, disabled, created_at)
VALUES (:code, :kind, :credits, :bonus, :max_redemptions, :per_user, 0, :plans, NULL, :expires_at, FALSE, :now)
ON CONFLICT (code) DO NOTHING
RETURNING code
"""


def coupon_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": row["code"],
        "kind": row["kind"],
        "credits": money_pico(int(row["credits_pico"])),
        "bonus_percent": int(row["bonus_percent"]) or None,
        "max_redemptions": row["max_redemptions"],
        "per_user": int(row["per_user"]),
        "redemptions": int(row["redemptions"]),
        "plans": orjson.loads(row["plans"]) if row["plans"] else None,
        "expires_at": row["expires_at"],
        "disabled": bool(row["disabled"]),
        "created_at": row["created_at"],
    }


async def create(rt: Runtime, principal: Principal, body: CouponCreate) -> dict[str, Any]:
    code = body.code.upper()
    params = {
        "code": code,
        "kind": body.kind,
        "credits": to_pico(body.credits) if body.kind == "credits" and body.credits else 0,
        "bonus": body.bonus_percent if body.kind == "topup_bonus" else 0,
        "max_redemptions": body.max_redemptions,
        "per_user": body.per_user,
        "plans": orjson.dumps(body.plans).decode() if body.plans else None,
        "expires_at": body.expires_at,
        "now": now_text(),
    }
    actor = Actor("admin_key" if principal.kind == "admin" else "user", principal.user_id, principal.ip)
    rows = await rt.db.transaction(
        [(INSERT, params), audit_step(actor, "coupon.create", "coupon", code, {"kind": body.kind})]
    )
    if not rows[0]:
        raise Conflict(f"The coupon {code} exists already.", param="code", code="coupon_exists")
    return await get(rt, code)


async def get(rt: Runtime, code: str) -> dict[str, Any]:
    row = await rt.db.fetch_one("SELECT * FROM coupons WHERE code = :code", {"code": code.upper()})
    if row is None:
        raise NotFound(f"No coupon {code.upper()}.", param="code", code="coupon_not_found")
    return coupon_view(row)


async def list_all(rt: Runtime) -> dict[str, Any]:
    rows = await rt.db.fetch("SELECT * FROM coupons ORDER BY created_at DESC, code LIMIT 500")
    return {"data": [coupon_view(r) for r in rows]}


async def redeem(rt: Runtime, user_id: str, raw_code: str) -> dict[str, Any]:
    code = raw_code.upper()
    coupon = await rt.db.fetch_one("SELECT * FROM coupons WHERE code = :code", {"code": code})
    if coupon is None:
        raise NotFound(f"No coupon {code}.", param="code", code="coupon_not_found")
    redemption_id = new_id("red")
    params = {"redemption_id": redemption_id, "code": code, "user_id": user_id, "now": now_text()}
    steps: list[Step] = []
    if rt.db.dialect == "postgres":
        steps.append((LOCK_COUPON, params))
    steps += lock_steps(rt.db.dialect, user_id)
    steps += [(REDEEM, params), (COUNT, params)]
    credits = from_pico(int(coupon["credits_pico"]))
    if coupon["kind"] == "credits":
        steps += credit_steps(
            user_id,
            credits,
            type="coupon",
            description=f"coupon {code}",
            guard=REDEEMED,
            guard_params={"redemption_id": redemption_id},
            idempotency_key=f"coupon:{redemption_id}",
            metadata={"code": code},
            actor_type="user",
            actor_id=user_id,
        )[1]
    steps.append((RESULT, params))
    rows = (await rt.db.transaction(steps))[-1]
    if not rows:
        raise _refusal(coupon, params["now"])
    out: dict[str, Any] = {"code": code, "kind": coupon["kind"], "status": rows[0]["status"]}
    if coupon["kind"] == "credits":
        out["credits"] = money(credits)
    else:
        out["bonus_percent"] = int(coupon["bonus_percent"])
    return out


def _refusal(coupon: dict[str, Any], now: str) -> Exception:
    if coupon["disabled"] or (coupon["expires_at"] is not None and str(coupon["expires_at"]) <= now):
        return InvalidRequest("This coupon has expired.", param="code", code="coupon_expired")
    if coupon["max_redemptions"] is not None and int(coupon["redemptions"]) >= int(coupon["max_redemptions"]):
        return Conflict("This coupon has been fully redeemed.", param="code", code="coupon_exhausted")
    return Conflict(
        "This coupon cannot be redeemed on this account (already redeemed, another bonus pending, "
        "or not for your plan).",
        param="code",
        code="coupon_not_redeemable",
    )
