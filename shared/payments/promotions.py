"""Trials and referrals (SPEC §5, issue 14).

Trials: `POST /v1/billing/trial` moves a new Free user onto the `trial` plan (its limits and model
allowlist from configuration: GATEWAYZ_TRIAL_*) with trial credits that expire, unused, at the
trial's end (a ledger row, by the billing job). One trial per user, per email and per IP per day:
unique columns of `trials`, so twenty attempts at once start one.

Referrals: every user has a code (`GET /v1/referrals`, made on first read). A new user applies
one (`POST /v1/referrals/apply`) before their first purchase; that purchase's webhook pays both
the bonus once (`topups`), at most GATEWAYZ_REFERRAL_MONTHLY_CAP times per referrer and month.
Self-referral is refused, and so are loops: a user who has referred someone cannot be referred.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.billing import money_pico
from shared.billing.ledger import new_id
from shared.billing.ledger_sql import APPLY_TX, AUDIT_IF_TX
from shared.errors import Conflict, NotFound, RateLimited
from shared.payments.ledger_steps import credit_steps, lock_steps
from shared.runtime import Runtime
from shared.store import Step, now_text

TRIAL_PLAN = """
INSERT INTO plans (id, name, monthly_price_pico, monthly_credits_pico, requests_per_minute, requests_per_day,
                   tokens_per_minute, tokens_per_day, concurrency, allowed_models, created_at)
VALUES ('trial', 'Trial', 0, 0, :rpm, :rpd, 100000, 1000000, 2, :models, :now)
ON CONFLICT (id) DO UPDATE SET requests_per_minute = excluded.requests_per_minute,
    requests_per_day = excluded.requests_per_day, allowed_models = excluded.allowed_models
"""
START_TRIAL = """
INSERT INTO trials (user_id, email, ip_day, card_fingerprint, credits_pico, allowed_models, status, expires_at,
                    created_at)
SELECT u.id, u.email, :ip_day, NULL, :credits, :models, 'active', :expires_at, :now
FROM users u
WHERE u.id = :user_id AND u.plan_id = 'free' AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.user_id = u.id)
ON CONFLICT DO NOTHING
"""
STARTED = "EXISTS (SELECT 1 FROM trials WHERE user_id = :user_id AND created_at = :now)"
TRIAL_ON = f"UPDATE users SET plan_id = 'trial' WHERE id = :user_id AND {STARTED}"
TRIAL_RESULT = f"SELECT 1 AS started WHERE {STARTED}"

# At the end: what is left of the trial credits (credits minus usage since the start, never more
# than the available balance) expires as a 'trial' row; the user goes back to Free.
_LEFT = """(CASE
  WHEN t.credits_pico - (SELECT COALESCE(-SUM(x.amount_pico), 0) FROM credit_transactions x
                         WHERE x.user_id = u.id AND x.type = 'usage' AND x.created_at >= t.created_at) <= 0 THEN 0
  ELSE t.credits_pico - (SELECT COALESCE(-SUM(x.amount_pico), 0) FROM credit_transactions x
                         WHERE x.user_id = u.id AND x.type = 'usage' AND x.created_at >= t.created_at) END)"""
_AVAIL = (
    "(u.balance_pico - (SELECT COALESCE(SUM(h.amount_pico), 0) FROM credit_holds h "
    "WHERE h.user_id = u.id AND h.status = 'open' AND h.expires_at > :now))"
)
_EXPIRE = f"(CASE WHEN {_AVAIL} <= 0 THEN 0 WHEN {_AVAIL} < {_LEFT} THEN {_AVAIL} ELSE {_LEFT} END)"
EXPIRE_CREDITS = f"""
INSERT INTO credit_transactions (id, user_id, amount_pico, type, balance_after_pico, payment_id,
                                 idempotency_key, description, metadata, created_at)
SELECT :tx_id, u.id, -{_EXPIRE}, 'trial', u.balance_pico - {_EXPIRE}, NULL, :idempotency_key,
       'unused trial credits expired', NULL, :now
FROM users u JOIN trials t ON t.user_id = u.id
WHERE u.id = :user_id AND t.status = 'active' AND t.expires_at <= :now
ON CONFLICT (idempotency_key) DO NOTHING
"""
END_TRIAL = "UPDATE trials SET status = 'expired' WHERE user_id = :user_id AND status = 'active' AND expires_at <= :now"
TRIAL_OFF = "UPDATE users SET plan_id = 'free' WHERE id = :user_id AND plan_id = 'trial'"

APPLY_REFERRAL = """
UPDATE users SET referred_by = (SELECT r.id FROM users r WHERE r.referral_code = :code)
WHERE id = :user_id AND referred_by IS NULL
  AND EXISTS (SELECT 1 FROM users r WHERE r.referral_code = :code AND r.id <> :user_id)
  AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.user_id = :user_id)
  AND NOT EXISTS (SELECT 1 FROM users x WHERE x.referred_by = :user_id)
RETURNING referred_by
"""


async def start_trial(rt: Runtime, user_id: str, ip: str | None) -> dict[str, Any]:
    settings = rt.settings.payments
    moment = datetime.now(UTC)
    now = now_text(moment)
    models = orjson.dumps(list(settings.trial_models)).decode() if settings.trial_models else None
    ip_day = f"{ip or 'unknown'}|{now[:10]}"
    credits = int(settings.trial_credits * 10**12)
    params: dict[str, Any] = {
        "user_id": user_id,
        "ip_day": ip_day,
        "credits": credits,
        "models": models,
        "expires_at": now_text(moment + timedelta(days=settings.trial_days)),
        "now": now,
        "rpm": settings.trial_rpm,
        "rpd": settings.trial_rpd,
    }
    steps: list[Step] = [
        *lock_steps(rt.db.dialect, user_id),
        (TRIAL_PLAN, params),
        (START_TRIAL, params),
        (TRIAL_ON, params),
    ]
    steps += credit_steps(
        user_id,
        settings.trial_credits,
        type="trial",
        description=f"trial credits (until {params['expires_at']})",
        guard=STARTED,
        guard_params={"now": now},
        idempotency_key=f"trial:{user_id}",
        actor_type="user",
        actor_id=user_id,
    )[1]
    steps.append((TRIAL_RESULT, params))
    if not (await rt.db.transaction(steps))[-1]:
        raise await _trial_refusal(rt, user_id, ip_day)
    await rt.keys.invalidate()  # the plan changed
    return {
        "plan": "trial",
        "credits": money_pico(credits),
        "expires_at": params["expires_at"],
        "allowed_models": list(settings.trial_models) if settings.trial_models else None,
    }


async def _trial_refusal(rt: Runtime, user_id: str, ip_day: str) -> Exception:
    row = await rt.db.fetch_one(
        "SELECT u.plan_id, (SELECT COUNT(*) FROM trials t WHERE t.user_id = u.id OR t.email = u.email) AS had, "
        "(SELECT COUNT(*) FROM trials t WHERE t.ip_day = :ip_day) AS from_ip FROM users u WHERE u.id = :user_id",
        {"user_id": user_id, "ip_day": ip_day},
    )
    if row is not None and int(row["had"]):
        return Conflict("A trial was already used by this account or email.", code="trial_used")
    if row is not None and int(row["from_ip"]):
        return RateLimited("A trial was already started from this address today.", code="trial_ip_limit")
    return Conflict("Trials are for new Free accounts that have not paid yet.", code="trial_not_eligible")


async def expire_trials(rt: Runtime) -> int:
    now = now_text()
    rows = await rt.db.fetch(
        "SELECT user_id FROM trials WHERE status = 'active' AND expires_at <= :now", {"now": now}
    )
    for row in rows:
        user_id = str(row["user_id"])
        params = {
            "tx_id": new_id("txn"),
            "user_id": user_id,
            "idempotency_key": f"trial-expiry:{user_id}",
            "now": now,
            "audit_id": new_id("aud"),
            "actor_type": "system",
            "actor_id": "billing-jobs",
            "action": "credits.trial",
            "details": '{"reason": "trial ended"}',
            "ip": None,
        }
        await rt.db.transaction(
            [
                *lock_steps(rt.db.dialect, user_id),
                (EXPIRE_CREDITS, params),
                (APPLY_TX, params),
                (AUDIT_IF_TX, params),
                (END_TRIAL, params),
                (TRIAL_OFF, params),
            ]
        )
    if rows:
        await rt.keys.invalidate()
    return len(rows)


async def referral_code(rt: Runtime, user_id: str) -> str:
    row = await rt.db.fetch_one("SELECT referral_code FROM users WHERE id = :id", {"id": user_id})
    if row is not None and row["referral_code"]:
        return str(row["referral_code"])
    code = secrets.token_hex(5).upper()
    await rt.db.fetch(
        "UPDATE users SET referral_code = :code WHERE id = :id AND referral_code IS NULL RETURNING id",
        {"code": code, "id": user_id},
    )
    row = await rt.db.fetch_one("SELECT referral_code FROM users WHERE id = :id", {"id": user_id})
    assert row is not None
    return str(row["referral_code"])


async def referrals(rt: Runtime, user_id: str) -> dict[str, Any]:
    code = await referral_code(rt, user_id)
    month = datetime.now(UTC).strftime("%Y-%m")
    stats = await rt.db.fetch_one(
        "SELECT (SELECT COUNT(*) FROM users WHERE referred_by = :id) AS referred, "
        "(SELECT COUNT(*) FROM referral_bonuses WHERE referrer_id = :id) AS bonuses, "
        "(SELECT COUNT(*) FROM referral_bonuses WHERE referrer_id = :id AND month = :month) AS this_month, "
        "(SELECT COALESCE(SUM(amount_pico), 0) FROM credit_transactions WHERE user_id = :id AND type = 'referral') "
        "AS earned",
        {"id": user_id, "month": month},
    )
    assert stats is not None
    settings = rt.settings.payments
    return {
        "code": code,
        "referred": int(stats["referred"]),
        "bonuses": int(stats["bonuses"]),
        "bonuses_this_month": int(stats["this_month"]),
        "monthly_cap": settings.referral_cap,
        "bonus": money_pico(int(settings.referral_bonus * 10**12)),
        "earned": money_pico(int(stats["earned"])),
    }


async def apply_referral(rt: Runtime, user_id: str, code: str) -> dict[str, Any]:
    code = code.upper()
    owner = await rt.db.fetch_one("SELECT id FROM users WHERE referral_code = :code", {"code": code})
    if owner is None:
        raise NotFound("No such referral code.", param="code", code="referral_code_not_found")
    if owner["id"] == user_id:
        raise Conflict("You cannot refer yourself.", param="code", code="self_referral")
    if not await rt.db.fetch(APPLY_REFERRAL, {"code": code, "user_id": user_id}):
        raise Conflict(
            "Only a new account (no referrer yet, no purchase, no referrals of its own) can apply a code.",
            param="code",
            code="referral_not_allowed",
        )
    return {"referred_by": owner["id"]}
