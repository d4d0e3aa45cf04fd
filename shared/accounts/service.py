"""Users and keys: create, read, change, rotate, revoke — each change with its audit entry, in the
same transaction, and followed by a key-cache invalidation.

Routes and the CLI call these functions; none of them writes SQL of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from shared.accounts.keys import (
    USER_SCOPES,
    KeyCache,
    default_scopes,
    display_prefix,
    generate_key,
    hash_key,
    key_row_view,
)
from shared.billing import from_pico, money, to_pico
from shared.billing.ledger import Ledger, new_id
from shared.store import Database, Row, Step, now_text


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change, for the audit log."""

    type: str  # admin_key | user | cli | system
    id: str | None = None
    ip: str | None = None


@dataclass(slots=True)
class KeySpec:
    """A key's settings, validated by the caller (route model or CLI)."""

    name: str = "default"
    environment: str = "live"
    scopes: list[str] = field(default_factory=lambda: list(USER_SCOPES))  # a user's default
    expires_at: str | None = None
    ip_allowlist: list[str] | None = None
    allowed_origins: list[str] | None = None
    allowed_models: list[str] | None = None
    spend_limit_day: Decimal | None = None
    spend_limit_month: Decimal | None = None
    spend_limit_total: Decimal | None = None
    rate_limits: dict[str, int] | None = None
    store_history: bool = False  # chat history for this key's requests (opt-in)
    # The key whose spend and rate counters this one shares (None: its own): set for a key minted
    # by a key with limits, and for a rotated key's replacement (see the key_budgets migration).
    budget_key_id: str | None = None


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _pico(value: Decimal | None) -> int | None:
    return None if value is None else to_pico(value)


AUDIT = """
INSERT INTO audit_log (id, actor_type, actor_id, action, target_type, target_id, details, ip, created_at)
VALUES (:audit_id, :actor_type, :actor_id, :action, :target_type, :target_id, :details, :ip, :now)
"""
INSERT_USER = """
INSERT INTO users (id, email, role, status, plan_id, balance_pico, created_at, auth_subject)
VALUES (:user_id, :email, :role, 'active', :plan_id, 0, :now, :auth_subject)
"""
INSERT_KEY = """
INSERT INTO api_keys (id, user_id, name, key_hash, prefix, last4, environment, scopes, expires_at, ip_allowlist,
    allowed_origins, allowed_models, spend_limit_day_pico, spend_limit_month_pico, spend_limit_total_pico,
    rate_limits, disabled, store_history, budget_key_id, created_at)
VALUES (:key_id, :user_id, :name, :key_hash, :prefix, :last4, :environment, :scopes, :expires_at, :ip_allowlist,
    :allowed_origins, :allowed_models, :spend_day, :spend_month, :spend_total, :rate_limits, FALSE, :store_history,
    :budget_key_id, :now)
"""
USER_VIEW = """
SELECT u.id, u.email, u.role, u.status, u.plan_id, u.balance_pico, u.created_at,
       (SELECT COALESCE(SUM(h.amount_pico), 0) FROM credit_holds h
        WHERE h.user_id = u.id AND h.status = 'open' AND h.expires_at > :now) AS held_pico
FROM users u
"""


def audit_step(actor: Actor, action: str, target_type: str, target_id: str, details: dict[str, Any]) -> Step:
    return (
        AUDIT,
        {
            "audit_id": new_id("aud"),
            "actor_type": actor.type,
            "actor_id": actor.id,
            "action": action,
            "target_type": target_type,
            "target_id": target_id,
            "details": orjson.dumps(details).decode(),
            "ip": actor.ip,
            "now": now_text(),
        },
    )


# Spend is counted per budget (a key and the keys that share its counters, see KeyRecord.budget_id)
# only while a key of it has a spend limit (it saves three writes on every request of every other
# key); setting a limit recounts the budget's spend from the ledger.
_BACKFILL = """
INSERT INTO key_spend (key_id, period, amount_pico)
SELECT :key_id, :period, COALESCE(-SUM(amount_pico), 0) FROM credit_transactions
WHERE key_id IN (SELECT id FROM api_keys WHERE id = :key_id OR budget_key_id = :key_id)
  AND type = 'usage' AND created_at >= :since
"""


def spend_backfill_steps(key_id: str) -> list[Step]:
    """`key_id`: the budget's id (the key's `budget_key_id`, else its own)."""
    now = datetime.now(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    starts = {
        f"d:{now:%Y-%m-%d}": now_text(day),
        f"m:{now:%Y-%m}": now_text(month),
        "total": "1970-01-01T00:00:00.000000Z",
    }
    steps: list[Step] = [("DELETE FROM key_spend WHERE key_id = :key_id", {"key_id": key_id})]
    steps += [(_BACKFILL, {"key_id": key_id, "period": p, "since": since}) for p, since in starts.items()]
    return steps


def user_view(row: Row) -> dict[str, Any]:
    balance = from_pico(int(row["balance_pico"]))
    held = from_pico(int(row.get("held_pico") or 0))
    return {
        "id": row["id"],
        "object": "user",
        "email": row["email"],
        "role": row["role"],
        "status": row["status"],
        "plan": row["plan_id"],
        "balance": money(balance),
        "held": money(held),
        "available": money(balance - held),
        "created_at": row["created_at"],
    }


class Accounts:
    def __init__(self, db: Database, keys: KeyCache, ledger: Ledger) -> None:
        self.db = db
        self.keys = keys
        self.ledger = ledger

    # --- users --------------------------------------------------------------------------------
    async def create_user(
        self,
        email: str,
        *,
        actor: Actor,
        role: str = "user",
        plan_id: str = "free",
        credits: Decimal = Decimal(0),
        auth_subject: str | None = None,
        key: KeySpec | None = None,
    ) -> tuple[dict[str, Any], str]:
        """A user with a first key; returns (user view, the full key — shown this once)."""
        user_id = new_id("usr")
        params = {
            "user_id": user_id,
            "email": email.strip().lower(),
            "role": role,
            "plan_id": plan_id,
            "auth_subject": auth_subject,
            "now": now_text(),
        }
        full_key, key_steps = self.key_steps(user_id, key or KeySpec(scopes=default_scopes(role)), actor)
        steps = [
            (INSERT_USER, params),
            audit_step(
                actor,
                "user.create",
                "user",
                user_id,
                {"email": params["email"], "role": role, "plan": plan_id},
            ),
            *key_steps,
        ]
        await self.db.transaction(steps)
        if credits:
            await self.ledger.change_balance(
                user_id,
                credits,
                type="grant",
                description="initial credits",
                actor_type=actor.type,
                actor_id=actor.id,
            )
        return await self.get_user(user_id), full_key

    async def get_user(self, user_id: str) -> dict[str, Any]:
        row = await self.db.fetch_one(
            USER_VIEW + " WHERE u.id = :user_id", {"user_id": user_id, "now": now_text()}
        )
        if row is None:
            raise LookupError(user_id)
        return user_view(row)

    async def find_user_by_subject(self, subject: str) -> dict[str, Any] | None:
        row = await self.db.fetch_one(
            USER_VIEW + " WHERE u.auth_subject = :s", {"s": subject, "now": now_text()}
        )
        return None if row is None else user_view(row)

    async def find_user_by_email(self, email: str) -> dict[str, Any] | None:
        row = await self.db.fetch_one(
            USER_VIEW + " WHERE u.email = :email", {"email": email.strip().lower(), "now": now_text()}
        )
        return None if row is None else user_view(row)

    async def list_users(self, *, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], bool]:
        where = " WHERE u.id > :cursor" if cursor else ""
        rows = await self.db.fetch(
            USER_VIEW + where + " ORDER BY u.id LIMIT :limit",
            {"cursor": cursor, "limit": limit + 1, "now": now_text()},
        )
        return [user_view(r) for r in rows[:limit]], len(rows) > limit

    async def set_user(
        self,
        user_id: str,
        actor: Actor,
        *,
        status: str | None = None,
        plan_id: str | None = None,
        role: str | None = None,
    ) -> dict[str, Any]:
        changes = {
            k: v for k, v in (("status", status), ("plan_id", plan_id), ("role", role)) if v is not None
        }
        if changes:
            sets = ", ".join(f"{column} = :{column}" for column in changes)
            action = "user.plan" if plan_id else "user.status" if status else "user.role"
            steps = [
                (f"UPDATE users SET {sets} WHERE id = :user_id", {**changes, "user_id": user_id}),
                audit_step(actor, action, "user", user_id, changes),
            ]
            await self.db.transaction(steps)
            await self.keys.invalidate()
        return await self.get_user(user_id)

    # --- keys ---------------------------------------------------------------------------------
    def key_steps(
        self, user_id: str, spec: KeySpec, actor: Actor, key_id: str | None = None
    ) -> tuple[str, list[Step]]:
        full_key = generate_key(spec.environment)
        key_id = key_id or new_id("key")
        params = {
            "key_id": key_id,
            "user_id": user_id,
            "name": spec.name,
            "key_hash": hash_key(self.keys.secret, full_key),
            "prefix": display_prefix(full_key),
            "last4": full_key[-4:],
            "environment": spec.environment,
            "scopes": _json(sorted(set(spec.scopes))),
            "expires_at": spec.expires_at,
            "ip_allowlist": _json(spec.ip_allowlist),
            "allowed_origins": _json(spec.allowed_origins),
            "allowed_models": _json(spec.allowed_models),
            "spend_day": _pico(spec.spend_limit_day),
            "spend_month": _pico(spec.spend_limit_month),
            "spend_total": _pico(spec.spend_limit_total),
            "rate_limits": _json(spec.rate_limits),
            "store_history": spec.store_history,
            "budget_key_id": spec.budget_key_id,
            "now": now_text(),
        }
        details = {"name": spec.name, "scopes": sorted(set(spec.scopes)), "last4": full_key[-4:]}
        steps = [(INSERT_KEY, params), audit_step(actor, "key.create", "api_key", key_id, details)]
        limited = (spec.spend_limit_day, spec.spend_limit_month, spec.spend_limit_total)
        if spec.budget_key_id and any(v is not None for v in limited):
            # A shared budget's spend so far, counted (its keys may not have been counting it).
            steps += spend_backfill_steps(spec.budget_key_id)
        return full_key, steps

    async def create_key(self, user_id: str, spec: KeySpec, actor: Actor) -> dict[str, Any]:
        full_key, steps = self.key_steps(user_id, spec, actor)
        await self.db.transaction(steps)
        key_id = steps[0][1]["key_id"]
        return {**await self.get_key(user_id, key_id), "key": full_key}

    async def get_key(self, user_id: str, key_id: str) -> dict[str, Any]:
        row = await self.db.fetch_one(
            "SELECT * FROM api_keys WHERE id = :key_id AND user_id = :user_id",
            {"key_id": key_id, "user_id": user_id},
        )
        if row is None:
            raise LookupError(key_id)
        return key_row_view(row)

    async def list_keys(self, user_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT * FROM api_keys WHERE user_id = :user_id ORDER BY created_at, id", {"user_id": user_id}
        )
        return [key_row_view(r) for r in rows]

    async def update_key(
        self, user_id: str, key_id: str, changes: dict[str, Any], actor: Actor
    ) -> dict[str, Any]:
        """`changes` maps api_keys columns to new values (already validated and encoded)."""
        current = await self.get_key(user_id, key_id)
        if changes:
            sets = ", ".join(f"{column} = :{column}" for column in changes)
            audit = {k: v for k, v in changes.items() if k != "key_hash"}
            steps: list[Step] = [
                (
                    f"UPDATE api_keys SET {sets} WHERE id = :key_id AND user_id = :user_id",
                    {**changes, "key_id": key_id, "user_id": user_id},
                ),
                audit_step(actor, "key.update", "api_key", key_id, audit),
            ]
            if any(column.startswith("spend_limit_") for column in changes):
                # A new limit counts what the budget already spent (today, this month, ever).
                steps += spend_backfill_steps(current["budget_key_id"] or key_id)
            await self.db.transaction(steps)
            await self.keys.invalidate()
        return await self.get_key(user_id, key_id)

    async def revoke_key(self, user_id: str, key_id: str, actor: Actor) -> dict[str, Any]:
        await self.get_key(user_id, key_id)
        now = now_text()
        await self.db.transaction(
            [
                (
                    "UPDATE api_keys SET revoked_at = :now WHERE id = :key_id AND user_id = :user_id "
                    "AND (revoked_at IS NULL OR revoked_at > :now)",
                    {"now": now, "key_id": key_id, "user_id": user_id},
                ),
                audit_step(actor, "key.revoke", "api_key", key_id, {}),
            ]
        )
        await self.keys.invalidate()
        return await self.get_key(user_id, key_id)

    async def rotate_key(
        self, user_id: str, key_id: str, actor: Actor, grace_seconds: int = 0
    ) -> dict[str, Any]:
        """A new secret with the same settings; the old key stops working after the grace period."""
        row = await self.db.fetch_one(
            "SELECT * FROM api_keys WHERE id = :key_id AND user_id = :user_id",
            {"key_id": key_id, "user_id": user_id},
        )
        if row is None:
            raise LookupError(key_id)
        old = key_row_view(row)
        if old["revoked"]:
            raise ValueError("a revoked key cannot be rotated")
        spec = KeySpec(
            name=row["name"],
            environment=row["environment"],
            scopes=old["scopes"],
            expires_at=row["expires_at"],
            ip_allowlist=old["ip_allowlist"],
            allowed_origins=old["allowed_origins"],
            allowed_models=old["allowed_models"],
            spend_limit_day=_dec(row["spend_limit_day_pico"]),
            spend_limit_month=_dec(row["spend_limit_month_pico"]),
            spend_limit_total=_dec(row["spend_limit_total_pico"]),
            rate_limits=old["rate_limits"] or None,
            store_history=old["store_history"],
            # The replacement goes on counting where the key left off: a rotation resets no limit.
            budget_key_id=row["budget_key_id"] or key_id,
        )
        new_id_ = new_id("key")
        full_key, steps = self.key_steps(user_id, spec, actor, key_id=new_id_)
        until = now_text(datetime.now(UTC) + timedelta(seconds=grace_seconds))
        steps += [
            (
                "UPDATE api_keys SET revoked_at = :until, replaced_by = :new_id WHERE id = :key_id",
                {"until": until, "new_id": new_id_, "key_id": key_id},
            ),
            audit_step(
                actor,
                "key.rotate",
                "api_key",
                key_id,
                {"replaced_by": new_id_, "grace_seconds": grace_seconds},
            ),
        ]
        await self.db.transaction(steps)
        await self.keys.invalidate()
        return {**await self.get_key(user_id, new_id_), "key": full_key}


def _dec(value: Any) -> Decimal | None:
    return None if value is None else from_pico(int(value))
