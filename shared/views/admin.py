"""What operators do through the `admin` function: users, plans, credits and the audit log.

Callers are the bootstrap `GATEWAYZ_ADMIN_KEY` (audited as actor type `admin_key`) or an admin
user's key with the `admin` scope (audited as that user). Every change goes through `Accounts` or
`Ledger.change_balance`, which write the audit entry in the change's own transaction; everything a
request could get wrong is checked before, so a refused request writes nothing.
"""

from __future__ import annotations

from typing import Any

import orjson

from shared.accounts.keys import default_scopes
from shared.accounts.requests import CreditChange, UserCreate, UserUpdate
from shared.accounts.service import Actor, KeySpec
from shared.auth import Principal
from shared.billing import money, to_pico
from shared.errors import Conflict, InvalidRequest, NotFound
from shared.runtime import Runtime
from shared.store import Row, Step
from shared.views.usage import ledger_row_view

AUDIT_CURSOR = "SELECT id FROM audit_log WHERE id = :cursor"
AUDIT_FILTERS = {
    "actor": "actor_id = :actor",
    "actor_type": "actor_type = :actor_type",
    "action": "action = :action",
    "action_prefix": "SUBSTR(action, 1, CAST(:action_len AS INTEGER)) = :action_prefix",
    "target": "target_id = :target",
    "target_type": "target_type = :target_type",
    "since": "created_at >= :since",
    "cursor": "(created_at, id) < (SELECT created_at, id FROM audit_log WHERE id = :cursor)",
}


def admin_actor(principal: Principal) -> Actor:
    if principal.key is None:
        return Actor("admin_key", None, principal.ip)
    return Actor("user", principal.key.user_id, principal.ip)


async def _require_plan(rt: Runtime, plan_id: str) -> None:
    if await rt.db.fetch_one("SELECT id FROM plans WHERE id = :plan_id", {"plan_id": plan_id}) is None:
        raise InvalidRequest(f"plan: unknown plan {plan_id!r}.", param="plan", code="plan_not_found")


async def _user(rt: Runtime, user_id: str) -> dict[str, Any]:
    try:
        return await rt.accounts.get_user(user_id)
    except LookupError:
        raise NotFound(f"No user {user_id!r}.", param="id", code="user_not_found") from None


async def create_user(rt: Runtime, principal: Principal, body: UserCreate) -> dict[str, Any]:
    """A user, their credits and a first key — the key's secret is in this answer only."""
    scopes: list[str] = list(body.scopes or default_scopes(body.role))
    if "admin" in scopes and body.role != "admin":
        raise InvalidRequest("scopes: only an admin user's key may hold the admin scope.", param="scopes")
    await _require_plan(rt, body.plan)
    duplicate = Conflict(
        f"A user with email {body.email!r} already exists.", param="email", code="email_taken"
    )
    if await rt.accounts.find_user_by_email(body.email) is not None:
        raise duplicate
    actor = admin_actor(principal)
    try:
        user, full_key = await rt.accounts.create_user(
            body.email,
            actor=actor,
            role=body.role,
            plan_id=body.plan,
            key=KeySpec(name=body.key_name, scopes=scopes),
        )
    except Exception:
        # Two creations raced past the check above: the unique email index refused the second.
        if await rt.accounts.find_user_by_email(body.email) is not None:
            raise duplicate from None
        raise
    if body.credits:  # granted here rather than by create_user, so that its audit entry has the IP
        await rt.ledger.change_balance(
            user["id"],
            body.credits,
            type="grant",
            description="initial credits",
            actor_type=actor.type,
            actor_id=actor.id,
            ip=actor.ip,
        )
        user = await rt.accounts.get_user(user["id"])
    first = (await rt.accounts.list_keys(user["id"]))[0]
    return {"user": user, "key": {**first, "key": full_key}}


async def list_users(rt: Runtime, *, limit: int, cursor: str | None) -> dict[str, Any]:
    users, has_more = await rt.accounts.list_users(limit=limit, cursor=cursor)
    return {
        "data": users,
        "has_more": has_more,
        "next_cursor": users[-1]["id"] if has_more and users else None,
    }


async def get_user(rt: Runtime, user_id: str) -> dict[str, Any]:
    user = await _user(rt, user_id)
    return {**user, "keys": await rt.accounts.list_keys(user_id)}


async def update_user(rt: Runtime, principal: Principal, user_id: str, body: UserUpdate) -> dict[str, Any]:
    """Suspend or reactivate, assign a plan, change the role (its keys' cache entries drop at once)."""
    await _user(rt, user_id)
    if body.plan is not None:
        await _require_plan(rt, body.plan)
    return await rt.accounts.set_user(
        user_id, admin_actor(principal), status=body.status, plan_id=body.plan, role=body.role
    )


async def change_credits(
    rt: Runtime, principal: Principal, user_id: str, body: CreditChange
) -> dict[str, Any]:
    """A grant (amount > 0) or an adjustment (< 0, at most the available credit: money held for
    requests in flight stays theirs) with its reason; with an idempotency key a replay changes
    nothing and answers with the first transaction."""
    actor = admin_actor(principal)
    try:
        result = await rt.ledger.change_balance(
            user_id,
            body.amount,
            type="grant" if body.amount > 0 else "adjustment",
            description=body.reason,
            actor_type=actor.type,
            actor_id=actor.id,
            idempotency_key=body.idempotency_key,
            ip=actor.ip,
        )
    except LookupError:
        raise NotFound(f"No user {user_id!r}.", param="id", code="user_not_found") from None
    if result.transaction_id is None:
        balance, held = await rt.ledger.balance(user_id)
        raise InvalidRequest(
            f"amount: this adjustment is larger than the available credit, ${money(balance - held)} "
            f"(the balance ${money(balance)} less ${money(held)} held for requests in flight, which "
            "will be charged).",
            param="amount",
            code="balance_below_zero",
        )
    row = await rt.db.fetch_one(
        "SELECT * FROM credit_transactions WHERE id = :tx_id", {"tx_id": result.transaction_id}
    )
    assert row is not None  # ledger rows are never deleted
    if not result.applied and (row["user_id"] != user_id or int(row["amount_pico"]) != to_pico(body.amount)):
        raise Conflict(
            "idempotency_key: this key was already used for a different credit change.",
            param="idempotency_key",
            code="idempotency_key_reused",
        )
    return {
        "object": "credit_transaction",
        **ledger_row_view(row),
        "user_id": user_id,
        "balance": money(result.balance),
        "replayed": not result.applied,
    }


def audit_view(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "actor_type": row["actor_type"],
        "actor_id": row["actor_id"],
        "action": row["action"],
        "target_type": row["target_type"],
        "target_id": row["target_id"],
        "details": orjson.loads(row["details"]) if row["details"] else None,
        "ip": row["ip"],
        "created_at": row["created_at"],
    }


async def audit_page(rt: Runtime, filters: dict[str, str | None], *, limit: int) -> dict[str, Any]:
    """Audit entries newest first. `filters`: actor, actor_type, action (a trailing `*` matches a
    prefix: `key.*`), target, target_type, since (stored time form), cursor (the last id seen)."""
    params: dict[str, Any] = {name: value for name, value in filters.items() if value is not None}
    action = params.pop("action", None)
    if action is not None and action.endswith("*"):
        params["action_prefix"] = action[:-1]
        params["action_len"] = len(action) - 1
    elif action is not None:
        params["action"] = action
    where = " AND ".join(AUDIT_FILTERS[name] for name in AUDIT_FILTERS if name in params)
    sql = "SELECT * FROM audit_log {} ORDER BY created_at DESC, id DESC LIMIT :limit".format(
        f"WHERE {where}" if where else ""
    )
    steps: list[Step] = [
        (AUDIT_CURSOR, {"cursor": params.get("cursor")}),
        (sql, {**params, "limit": limit + 1}),
    ]
    found, rows = await rt.db.transaction(steps)
    if "cursor" in params and not found:
        raise InvalidRequest(
            "cursor: unknown cursor (use next_cursor from the previous page)", param="cursor"
        )
    page = rows[:limit]
    has_more = len(rows) > limit
    return {
        "data": [audit_view(r) for r in page],
        "has_more": has_more,
        "next_cursor": page[-1]["id"] if has_more and page else None,
    }
