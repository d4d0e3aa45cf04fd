"""Key restrictions compared (SPEC §5): a key never hands out more than it holds.

A key with the `keys` scope may create keys and change the keys of its user. Whatever it creates,
and whatever key it changes (itself included) as it stands after the change, must be at least as
strict as the caller in every dimension:

- scopes: a subset of the caller's;
- expiry: when the caller expires, an expiry no later than the caller's;
- IP allowlist: when the caller has one, every network inside one of the caller's networks;
- allowed origins: when the caller has them, a subset;
- allowed models: when the caller has them, every pattern covered by one of the caller's (an
  exact model id one of them matches, the same pattern, or a glob whose fixed start lies under
  one of the caller's prefix globs such as `openai/*`; anything cleverer is refused);
- spend limits (day, month, total) and rate limits: each one the caller has, no higher.

So no key lifts its own restrictions, directly (a PATCH of itself) or through a key it mints, and
— since a key minted by a key with limits, and a rotated key's replacement, count their spend and
rate limits in the same budget (`KeyRecord.budget_id`) — no key multiplies or resets its limits
by minting or rotating; and
only an unrestricted key makes an unrestricted key (a Supabase session, the CLI and the admin API
do not act through a key and are not bound by this). Rotating a key hands out that key's powers in
a new secret, so the key rotated must be within the caller too. Revoking only takes power away and
is not checked here.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from shared.accounts.keys import KeyRecord, Network, parse_time
from shared.errors import PermissionDenied

PERIODS = ("day", "month", "total")
_GLOB = "*?["


@dataclass(frozen=True, slots=True)
class Restrictions:
    scopes: frozenset[str]
    expires_at: datetime | None
    ip_allowlist: tuple[Network, ...] | None
    allowed_origins: frozenset[str] | None
    allowed_models: tuple[str, ...] | None
    spend_limits: Mapping[str, Decimal | None]  # day, month, total
    rate_limits: Mapping[str, int]

    @classmethod
    def of_record(cls, key: KeyRecord) -> Restrictions:
        """The restrictions of an authenticated key."""
        spend = key.spend_limits
        return cls(
            scopes=key.scopes,
            expires_at=key.expires_at,
            ip_allowlist=key.ip_allowlist,
            allowed_origins=None if key.allowed_origins is None else frozenset(key.allowed_origins),
            allowed_models=key.allowed_models,
            spend_limits={"day": spend.day, "month": spend.month, "total": spend.total},
            rate_limits=dict(key.rate_limits),
        )

    @classmethod
    def of_view(cls, view: Mapping[str, Any]) -> Restrictions:
        """The restrictions of a key in its public shape (`key_row_view`); spend limits may be
        money strings or Decimals."""
        spend = view.get("spend_limits") or {}
        ips = view.get("ip_allowlist")
        origins = view.get("allowed_origins")
        models = view.get("allowed_models")
        return cls(
            scopes=frozenset(view.get("scopes") or ()),
            expires_at=parse_time(view.get("expires_at")),
            ip_allowlist=None if ips is None else tuple(ipaddress.ip_network(c, strict=False) for c in ips),
            allowed_origins=None if origins is None else frozenset(o.rstrip("/").lower() for o in origins),
            allowed_models=None if models is None else tuple(models),
            spend_limits={p: None if spend.get(p) is None else Decimal(str(spend[p])) for p in PERIODS},
            rate_limits=dict(view.get("rate_limits") or {}),
        )


def _inside(network: Network, networks: Iterable[Network]) -> bool:
    # subnet_of wants both of one IP version, which the first test ensures (mypy cannot see it).
    return any(
        network.version == outer.version and network.subnet_of(outer)  # type: ignore[arg-type]
        for outer in networks
    )


def _covered(pattern: str, patterns: tuple[str, ...]) -> bool:
    """Whether every model `pattern` matches is matched by one of `patterns` (provably)."""
    if pattern in patterns:
        return True
    first_glob = min((pattern.index(c) for c in _GLOB if c in pattern), default=None)
    if first_glob is None:  # an exact model id
        return any(fnmatch.fnmatchcase(pattern, p) for p in patterns)
    fixed = pattern[:first_glob]
    return any(
        p.endswith("*") and not any(c in p[:-1] for c in _GLOB) and fixed.startswith(p[:-1]) for p in patterns
    )


def excess(target: Restrictions, holder: Restrictions) -> tuple[str, str, str] | None:
    """The first way `target` is less strict than `holder`: (param, what is wrong, error code),
    or None when it is at least as strict in every dimension."""
    beyond = sorted(target.scopes - holder.scopes)
    if beyond:
        return "scopes", f"scopes it does not hold itself: {', '.join(beyond)}", "scope_not_allowed"
    code = "restriction_not_allowed"
    if holder.expires_at is not None and (target.expires_at is None or target.expires_at > holder.expires_at):
        return "expires_at", f"no expiry, or one later than its own ({holder.expires_at.isoformat()})", code
    if holder.ip_allowlist is not None and (
        target.ip_allowlist is None or not all(_inside(n, holder.ip_allowlist) for n in target.ip_allowlist)
    ):
        return "ip_allowlist", "an IP allowlist that is not within its own", code
    if holder.allowed_origins is not None and (
        target.allowed_origins is None or not target.allowed_origins <= holder.allowed_origins
    ):
        return "allowed_origins", "allowed origins that are not a subset of its own", code
    if holder.allowed_models is not None and (
        target.allowed_models is None
        or not all(_covered(m, holder.allowed_models) for m in target.allowed_models)
    ):
        return "allowed_models", "allowed models that its own allowed models do not cover", code
    for period in PERIODS:
        cap = holder.spend_limits.get(period)
        value = target.spend_limits.get(period)
        if cap is not None and (value is None or value > cap):
            return f"spend_limits.{period}", f"no {period} spend limit, or one above its own ({cap})", code
    for name, cap_rate in sorted(holder.rate_limits.items()):
        rate = target.rate_limits.get(name)
        if rate is None or rate > cap_rate:
            return f"rate_limits.{name}", f"no {name} rate limit, or one above its own ({cap_rate})", code
    return None


def check_within(caller: KeyRecord, target: Restrictions, doing: str) -> None:
    """Refuse (403) a key the caller would `doing` ('create', 'change' to, 'rotate') that is less
    strict than the caller itself."""
    found = excess(target, Restrictions.of_record(caller))
    if found is not None:
        param, detail, code = found
        raise PermissionDenied(
            f"This API key cannot {doing} a key with {detail}: a key only makes or changes keys at "
            "least as restricted as itself.",
            param=param,
            code=code,
        )


def has_limits(key: KeyRecord) -> bool:
    """Whether the key has spend or rate limits of its own (a budget the keys it mints share)."""
    spend = key.spend_limits
    return bool(key.rate_limits) or any(v is not None for v in (spend.day, spend.month, spend.total))


def check_may_mint(caller: KeyRecord) -> None:
    """A key rotated out (in its grace period) is on its way out: it mints no new secrets."""
    if caller.revoked_at is not None:
        raise PermissionDenied(
            "This API key was rotated and is in its grace period: it cannot create or rotate keys; "
            "use its replacement.",
            code="key_rotated_out",
        )
