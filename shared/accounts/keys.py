"""API keys (SPEC §5): generation, storage as an HMAC, lookup through a cache, restrictions.

A key is `gw_live_` / `gw_test_` + 32 random bytes; only HMAC-SHA256(server secret, key), a
display prefix and the last four characters are stored. Lookups go through a per-process cache
(the hot path makes no database call for a known key); every key or user change bumps an epoch in
the hot-state store, and each instance drops its cache when it sees the epoch move (checked at most
once a second), so a revoke or disable is effective everywhere within seconds. While the shared
epoch cannot be read (the hot-state store is down, or this instance serves from its own memory),
nobody's change can be seen: entries then live `BLIND_TTL` seconds instead of the cache's TTL, and
the cache is dropped when the epoch can be read again.
"""

from __future__ import annotations

import fnmatch
import hmac
import ipaddress
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from shared.billing import from_pico, money_pico
from shared.billing.ledger import SpendLimits
from shared.hot import HotStore, HotStoreDown
from shared.providers import load_providers
from shared.store import Database, now_text

SCOPES = frozenset({"inference", "read", "keys", "billing", "admin"})
USER_SCOPES = ("billing", "inference", "keys", "read")  # every scope but admin


def default_scopes(role: str, held: Iterable[str] | None = None) -> list[str]:
    """The one rule for a new key whose creator names no scopes (CLI, admin API, Supabase session,
    self-service): every scope its owner's role may hold — `billing, inference, keys, read`, and
    `admin` too for an admin user — but none that the creating credential lacks (`held`: the
    calling key's scopes, or what a Supabase sign-in may grant; None for the operator)."""
    allowed = sorted(SCOPES) if role == "admin" else list(USER_SCOPES)
    return allowed if held is None else [scope for scope in allowed if scope in set(held)]


KEYS_EPOCH = "gw:keys:epoch"
_EPOCH_CHECK_EVERY = 1.0  # seconds between two reads of the epoch per instance
BLIND_TTL = 2.0  # seconds an entry may be used while the epoch cannot be read (a revoke's delay)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def generate_key(environment: str = "live") -> str:
    return f"gw_{environment}_{secrets.token_urlsafe(32)}"


def hash_key(secret: str, key: str) -> str:
    return hmac.digest(secret.encode(), key.encode(), "sha256").hex()  # one-shot C HMAC


def display_prefix(key: str) -> str:
    return key[:12]


def parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _json_list(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    data = orjson.loads(value) if isinstance(value, str | bytes) else value
    return tuple(str(v) for v in data)


@dataclass(frozen=True, slots=True)
class PlanLimits:
    requests_per_minute: int | None = None
    requests_per_day: int | None = None
    tokens_per_minute: int | None = None
    tokens_per_day: int | None = None
    concurrency: int | None = None
    allowed_models: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """Everything authentication and authorisation need about a key and its user, cached."""

    # The defaults describe a live, unrestricted key of an active user with no scopes and no
    # limits; `record_from_row` sets every field from the database.
    key_id: str
    user_id: str
    email: str = ""
    role: str = "user"
    user_status: str = "active"
    plan_id: str = ""
    environment: str = "live"
    scopes: frozenset[str] = frozenset()
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    disabled: bool = False
    ip_allowlist: tuple[Network, ...] | None = None
    allowed_origins: tuple[str, ...] | None = None
    allowed_models: tuple[str, ...] | None = None
    spend_limits: SpendLimits = field(default_factory=SpendLimits)
    rate_limits: dict[str, int] = field(default_factory=dict)
    plan: PlanLimits = PlanLimits()
    byok_providers: frozenset[str] = field(default_factory=frozenset)
    store_history: bool = False  # record this key's chat requests in history (shared.history)
    budget_key_id: str | None = None  # the key whose spend and rate counters this one draws from

    @property
    def budget_id(self) -> str:
        """The id its spend and per-key rate limits are counted under: shared by a key, the keys
        it minted while it had limits, and the keys that replaced it by rotation."""
        return self.budget_key_id or self.key_id

    @property
    def has_spend_limits(self) -> bool:
        limits = self.spend_limits
        return not (limits.day is None and limits.month is None and limits.total is None)

    def model_allowed(self, model_id: str) -> bool:
        for patterns in (self.allowed_models, self.plan.allowed_models):
            if patterns is not None and not any(fnmatch.fnmatchcase(model_id, p) for p in patterns):
                return False
        return True

    def ip_allowed(self, ip: str | None) -> bool:
        if self.ip_allowlist is None:
            return True
        if ip is None:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.ip_allowlist)

    def origin_allowed(self, origin: str | None) -> bool:
        if self.allowed_origins is None:
            return True
        return origin is not None and origin.rstrip("/").lower() in self.allowed_origins


LOOKUP = """
SELECT k.id AS key_id, k.user_id, k.environment, k.scopes, k.expires_at, k.revoked_at, k.disabled,
       k.ip_allowlist, k.allowed_origins, k.allowed_models, k.spend_limit_day_pico, k.spend_limit_month_pico,
       k.spend_limit_total_pico, k.rate_limits, k.store_history, k.budget_key_id, u.email, u.role, u.status AS user_status, u.plan_id,
       p.requests_per_minute, p.requests_per_day, p.tokens_per_minute, p.tokens_per_day, p.concurrency,
       p.allowed_models AS plan_allowed_models
FROM api_keys k JOIN users u ON u.id = k.user_id JOIN plans p ON p.id = u.plan_id
WHERE k.key_hash = :key_hash
"""
LOOKUP_BYOK = """
SELECT pk.provider FROM provider_keys pk JOIN api_keys k ON k.user_id = pk.user_id WHERE k.key_hash = :key_hash
"""


def _limit(value: Any) -> Decimal | None:
    return None if value is None else from_pico(int(value))


def record_from_row(row: dict[str, Any], byok: Sequence[str]) -> KeyRecord:
    allowlist = _json_list(row["ip_allowlist"])
    origins = _json_list(row["allowed_origins"])
    return KeyRecord(
        key_id=row["key_id"],
        user_id=row["user_id"],
        email=row["email"],
        role=row["role"],
        user_status=row["user_status"],
        plan_id=row["plan_id"],
        environment=row["environment"],
        scopes=frozenset(_json_list(row["scopes"]) or ()),
        expires_at=parse_time(row["expires_at"]),
        revoked_at=parse_time(row["revoked_at"]),
        disabled=bool(row["disabled"]),
        ip_allowlist=None
        if allowlist is None
        else tuple(ipaddress.ip_network(c, strict=False) for c in allowlist),
        allowed_origins=None if origins is None else tuple(o.rstrip("/").lower() for o in origins),
        allowed_models=_json_list(row["allowed_models"]),
        spend_limits=SpendLimits(
            day=_limit(row["spend_limit_day_pico"]),
            month=_limit(row["spend_limit_month_pico"]),
            total=_limit(row["spend_limit_total_pico"]),
        ),
        rate_limits=orjson.loads(row["rate_limits"]) if row["rate_limits"] else {},
        plan=PlanLimits(
            requests_per_minute=row["requests_per_minute"],
            requests_per_day=row["requests_per_day"],
            tokens_per_minute=row["tokens_per_minute"],
            tokens_per_day=row["tokens_per_day"],
            concurrency=row["concurrency"],
            allowed_models=_json_list(row["plan_allowed_models"]),
        ),
        # A stored key for a provider that takes none (stored before `local` was refused) is ignored.
        byok_providers=frozenset(p for p in byok if _takes_byok(p)),
        store_history=bool(row["store_history"]),
        budget_key_id=row["budget_key_id"],
    )


def _takes_byok(provider_id: str) -> bool:
    provider = load_providers().get(provider_id)
    return provider is not None and provider.takes_byok


class KeyCache:
    """hash → KeyRecord for `ttl` seconds, dropped whole when the shared epoch moves."""

    def __init__(self, db: Database, hot: HotStore, secret: str, ttl: float) -> None:
        self.db = db
        self.hot = hot
        self.secret = secret
        self.ttl = ttl
        self._entries: dict[str, tuple[KeyRecord, float]] = {}
        self._epoch: str | None = None
        self._epoch_checked = 0.0
        self._blind = False  # the epoch could not be read at the last check
        self._touched: dict[str, float] = {}
        self._digests: dict[str, str] = {}  # presented key → its HMAC (keys already live here)

    def should_touch(self, key_id: str, every: float = 60.0) -> bool:
        """Whether to write this key's last_used_at now: at most once a minute per key and
        instance (one row write saved on almost every request)."""
        now = time.monotonic()
        if now - self._touched.get(key_id, -every) < every:
            return False
        self._touched[key_id] = now
        return True

    async def _check_epoch(self, now: float) -> None:
        if now - self._epoch_checked < _EPOCH_CHECK_EVERY:
            return
        self._epoch_checked = now
        try:
            epoch = await self.hot.get(KEYS_EPOCH)
            blind = self.hot.degraded  # answered from this instance's memory: no one else writes there
        except HotStoreDown:
            epoch, blind = None, True
        if self._blind and not blind:
            self._entries.clear()  # changes made meanwhile bumped an epoch nobody could see
        self._blind = blind
        if not blind and epoch != self._epoch:
            self._entries.clear()
            self._epoch = epoch

    def _fresh(self, entry: tuple[KeyRecord, float] | None, now: float) -> bool:
        return entry is not None and now - entry[1] < (BLIND_TTL if self._blind else self.ttl)

    def _digest(self, key: str) -> str:
        digest = self._digests.get(key)
        if digest is None:
            if len(self._digests) > 10_000:
                self._digests.clear()  # bounded: a flood of random keys cannot grow it
            digest = self._digests[key] = hash_key(self.secret, key)
        return digest

    def knows(self, key: str) -> bool:
        """Whether `key` is a live entry of this cache: no I/O, no hashing (a key never seen
        before, say a brute-force guess, is not known)."""
        digest = self._digests.get(key)
        return digest is not None and self._fresh(self._entries.get(digest), time.monotonic())

    async def lookup(self, key: str) -> KeyRecord | None:
        digest = self._digest(key)
        now = time.monotonic()
        await self._check_epoch(now)
        entry = self._entries.get(digest)
        if entry is not None and self._fresh(entry, now):
            return entry[0]
        rows, byok = await self.db.transaction(
            [(LOOKUP, {"key_hash": digest}), (LOOKUP_BYOK, {"key_hash": digest})]
        )
        if not rows:
            return None
        record = record_from_row(rows[0], [r["provider"] for r in byok])
        self._entries[digest] = (record, now)
        return record

    @property
    def epoch(self) -> str | None:
        """The shared invalidation epoch as this instance last saw it (caches keyed on it follow)."""
        return self._epoch

    async def invalidate(self) -> None:
        """After any key, user or BYOK change: this instance at once, the others within seconds."""
        self._entries.clear()
        try:
            self._epoch = str(await self.hot.incr(KEYS_EPOCH))
        except HotStoreDown:
            self._epoch = None


def key_row_view(row: dict[str, Any]) -> dict[str, Any]:
    """The public shape of a key (SPEC §5), never the secret or its hash."""

    revoked_at = row.get("revoked_at")
    return {
        "id": row["id"],
        "object": "api_key",
        "name": row["name"],
        "prefix": row["prefix"],
        "last4": row["last4"],
        "environment": row["environment"],
        "scopes": list(_json_list(row["scopes"]) or ()),
        "expires_at": row["expires_at"],
        "ip_allowlist": _json_list(row["ip_allowlist"]),
        "allowed_origins": _json_list(row["allowed_origins"]),
        "allowed_models": _json_list(row["allowed_models"]),
        "spend_limits": {
            "day": money_pico(row["spend_limit_day_pico"]),
            "month": money_pico(row["spend_limit_month_pico"]),
            "total": money_pico(row["spend_limit_total_pico"]),
        },
        "rate_limits": orjson.loads(row["rate_limits"]) if row["rate_limits"] else {},
        "disabled": bool(row["disabled"]),
        "store_history": bool(row.get("store_history")),
        "revoked_at": revoked_at,
        "revoked": revoked_at is not None and str(revoked_at) <= now_text(),
        "replaced_by": row.get("replaced_by"),
        "budget_key_id": row.get("budget_key_id"),
        "created_at": row["created_at"],
        "last_used_at": row["last_used_at"],
    }
