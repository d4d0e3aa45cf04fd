"""What a key holder may do to their own account (the `account` function): read it, manage keys.

A key never hands out more than it holds (`shared.accounts.restrictions`): a key it creates, and a
key it changes as it stands after the change (itself included), must be at least as restricted as
the caller in every dimension; a key it rotates must already be (rotation gives out that key's
powers in a new secret); revoking is always allowed, it only takes power away. A key in its
rotation grace period creates and rotates nothing. Rate limits also stay within the user's plan.
Keys belong to one user: another user's key id is a 404 whose answer does not tell whether the key
exists.
"""

from __future__ import annotations

from typing import Any

import orjson

from shared.accounts.keys import PlanLimits, default_scopes
from shared.accounts.requests import KeyCreate, KeyRotate, KeyUpdate, RateLimitsIn
from shared.accounts.restrictions import Restrictions, check_may_mint, check_within, has_limits
from shared.accounts.service import Actor, KeySpec
from shared.auth import Principal
from shared.billing import to_pico
from shared.errors import Conflict, InvalidRequest, NotFound
from shared.runtime import Runtime

ME_FIELDS = ("id", "email", "role", "status", "plan", "balance")
_GLOB = frozenset("*?[")


def _owner(principal: Principal) -> tuple[str, Actor]:
    assert principal.key is not None  # the account routes admit user keys only
    return principal.key.user_id, Actor("user", principal.key.user_id, principal.ip)


async def me(rt: Runtime, principal: Principal) -> dict[str, Any]:
    user_id, _ = _owner(principal)
    user = await rt.accounts.get_user(user_id)
    from shared.payments.account import billing_state  # the billing part of the profile (issue 14)

    return {**{name: user[name] for name in ME_FIELDS}, **await billing_state(rt, user_id)}


def _within_plan(plan: PlanLimits, limits: RateLimitsIn) -> None:
    for name in limits.model_fields_set:
        value, cap = getattr(limits, name), getattr(plan, name)
        if value is not None and cap is not None and value > cap:
            raise InvalidRequest(
                f"rate_limits.{name}: {value} is above your plan's limit of {cap}.",
                param=f"rate_limits.{name}",
                code="rate_limit_above_plan",
            )


def _models(rt: Runtime, patterns: list[str] | None) -> list[str] | None:
    """Exact model ids are checked against the catalog and stored canonical (an alias such as
    `gpt-4o` would otherwise never match the `openai/gpt-4o` the pipeline checks); globs are kept."""
    if patterns is None:
        return None
    out: list[str] = []
    for pattern in patterns:
        if not _GLOB.isdisjoint(pattern):
            out.append(pattern)
            continue
        model = rt.catalog.resolve(pattern)
        if model is None:
            raise InvalidRequest(
                f"allowed_models: unknown model {pattern!r}; use an id from /v1/models or a pattern "
                "such as 'openai/*'.",
                param="allowed_models",
                code="model_not_found",
            )
        out.append(model.id)
    return list(dict.fromkeys(out))


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


async def _own_key(rt: Runtime, user_id: str, key_id: str) -> dict[str, Any]:
    try:
        return await rt.accounts.get_key(user_id, key_id)
    except LookupError:
        raise NotFound(f"No API key {key_id!r}.", param="id", code="key_not_found") from None


async def list_keys(rt: Runtime, principal: Principal) -> dict[str, Any]:
    user_id, _ = _owner(principal)
    return {"data": await rt.accounts.list_keys(user_id)}


async def get_key(rt: Runtime, principal: Principal, key_id: str) -> dict[str, Any]:
    user_id, _ = _owner(principal)
    return await _own_key(rt, user_id, key_id)


async def create_key(rt: Runtime, principal: Principal, body: KeyCreate) -> dict[str, Any]:
    user_id, actor = _owner(principal)
    assert principal.key is not None
    check_may_mint(principal.key)
    limits = body.spend_limits
    rates = body.rate_limits.model_dump(exclude_none=True) if body.rate_limits else {}
    if body.rate_limits is not None:
        _within_plan(principal.key.plan, body.rate_limits)
    spec = KeySpec(
        name=body.name,
        environment=body.environment,
        scopes=list(body.scopes or default_scopes(principal.key.role, principal.key.scopes)),
        expires_at=body.expires_at,
        ip_allowlist=body.ip_allowlist,
        allowed_origins=body.allowed_origins,
        allowed_models=_models(rt, body.allowed_models),
        spend_limit_day=limits.day if limits else None,
        spend_limit_month=limits.month if limits else None,
        spend_limit_total=limits.total if limits else None,
        rate_limits=rates or None,
        store_history=_history(rt, body.store_history),
        # A key with limits shares them with what it mints: minting never multiplies its budget.
        budget_key_id=principal.key.budget_id if has_limits(principal.key) else None,
    )
    check_within(principal.key, Restrictions.of_view(_spec_view(spec)), "create")
    return await rt.accounts.create_key(user_id, spec, actor)


def _history(rt: Runtime, wanted: bool | None) -> bool:
    """A key's `store_history`: turning it on needs the key ring history is encrypted with."""
    if wanted and not rt.history.configured:
        raise InvalidRequest(
            "store_history: chat history is not available on this gateway (the operator has not set "
            "GATEWAYZ_ENCRYPTION_KEYS, which history is encrypted with).",
            param="store_history",
            code="history_not_available",
        )
    return bool(wanted)


def _spec_view(spec: KeySpec) -> dict[str, Any]:
    """A new key's settings in the shape of a key object (what `Restrictions.of_view` reads)."""
    return {
        "scopes": spec.scopes,
        "expires_at": spec.expires_at,
        "ip_allowlist": spec.ip_allowlist,
        "allowed_origins": spec.allowed_origins,
        "allowed_models": spec.allowed_models,
        "spend_limits": {
            "day": spec.spend_limit_day,
            "month": spec.spend_limit_month,
            "total": spec.spend_limit_total,
        },
        "rate_limits": spec.rate_limits,
    }


def _changes(
    rt: Runtime, principal: Principal, current: dict[str, Any], body: KeyUpdate
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The api_keys columns a PATCH sets (left out → kept, null → cleared, nested objects too),
    and the key as it will stand afterwards, in the shape of a key object."""
    assert principal.key is not None
    sent = body.model_fields_set
    changes: dict[str, Any] = {}
    after = dict(current)
    if "name" in sent:
        changes["name"] = body.name
    if "scopes" in sent and body.scopes is not None:
        after["scopes"] = sorted(set(body.scopes))
        changes["scopes"] = _json(after["scopes"])
    if "expires_at" in sent:
        changes["expires_at"] = after["expires_at"] = body.expires_at
    for field in ("ip_allowlist", "allowed_origins"):
        if field in sent:
            after[field] = getattr(body, field)
            changes[field] = _json(after[field])
    if "allowed_models" in sent:
        after["allowed_models"] = _models(rt, body.allowed_models)
        changes["allowed_models"] = _json(after["allowed_models"])
    if "spend_limits" in sent:
        limits = body.spend_limits
        after["spend_limits"] = spend = dict(current["spend_limits"])
        for period in ("day", "month", "total"):
            if limits is None or period in limits.model_fields_set:
                value = None if limits is None else getattr(limits, period)
                spend[period] = value
                changes[f"spend_limit_{period}_pico"] = None if value is None else to_pico(value)
    if "rate_limits" in sent:
        rates = body.rate_limits
        merged: dict[str, int] = {}
        if rates is not None:
            _within_plan(principal.key.plan, rates)
            merged = dict(current["rate_limits"])
            for name in rates.model_fields_set:
                value = getattr(rates, name)
                if value is None:
                    merged.pop(name, None)
                else:
                    merged[name] = value
        after["rate_limits"] = merged
        changes["rate_limits"] = _json(merged or None)
    if "disabled" in sent:
        changes["disabled"] = bool(body.disabled)
    if "store_history" in sent:
        changes["store_history"] = _history(rt, body.store_history)
    return changes, after


async def _live_own_key(rt: Runtime, principal: Principal, key_id: str, doing: str) -> dict[str, Any]:
    """The caller's own, unrevoked key (to change or rotate it)."""
    user_id, _ = _owner(principal)
    current = await _own_key(rt, user_id, key_id)
    if current["revoked"]:
        raise InvalidRequest(f"This API key is revoked and cannot be {doing}d.", code="key_revoked")
    return current


async def update_key(rt: Runtime, principal: Principal, key_id: str, body: KeyUpdate) -> dict[str, Any]:
    user_id, actor = _owner(principal)
    assert principal.key is not None
    current = await _live_own_key(rt, principal, key_id, "change")
    changes, after = _changes(rt, principal, current, body)
    check_within(principal.key, Restrictions.of_view(after), "change")
    return await rt.accounts.update_key(user_id, key_id, changes, actor)


async def rotate_key(rt: Runtime, principal: Principal, key_id: str, body: KeyRotate) -> dict[str, Any]:
    user_id, actor = _owner(principal)
    assert principal.key is not None
    check_may_mint(principal.key)
    current = await _live_own_key(rt, principal, key_id, "rotate")
    check_within(principal.key, Restrictions.of_view(current), "rotate")
    if current["replaced_by"]:
        raise Conflict(
            f"This API key was already rotated; rotate its replacement {current['replaced_by']!r} instead.",
            code="key_already_rotated",
        )
    try:
        return await rt.accounts.rotate_key(user_id, key_id, actor, body.grace_seconds)
    except LookupError:
        raise NotFound(f"No API key {key_id!r}.", param="id", code="key_not_found") from None
    except ValueError as exc:
        raise InvalidRequest(str(exc), code="key_revoked") from None


async def revoke_key(rt: Runtime, principal: Principal, key_id: str) -> dict[str, Any]:
    user_id, actor = _owner(principal)
    await _own_key(rt, user_id, key_id)
    return await rt.accounts.revoke_key(user_id, key_id, actor)
