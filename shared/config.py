"""Typed settings, read once from the environment (or a mapping given by a test).

Every name read here is part of the configuration contract in SPEC §1; a malformed value fails at
start-up with a message that names the variable, never later on a request.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cache


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def env_name(provider_id: str, suffix: str) -> str:
    """`google-vertex` + `API_KEY` → `GOOGLE_VERTEX_API_KEY` (SPEC §1)."""
    return f"{provider_id.upper().replace('-', '_')}_{suffix}"


def _decimal(env: Mapping[str, str], name: str, default: str) -> Decimal:
    raw = env.get(name, default)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ConfigError(f"{name} must be a decimal number, got {raw!r}") from None
    if not value.is_finite() or value < 0:
        raise ConfigError(f"{name} must be a finite, non-negative number, got {raw!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int = 1) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < low:
        raise ConfigError(f"{name} must be at least {low}, got {raw!r}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _limits(env: Mapping[str, str]) -> LimitSettings:
    d = LimitSettings()
    rate = float(_decimal(env, "GATEWAYZ_VELOCITY_ERROR_RATE", str(d.velocity_error_rate)))
    factor = float(_decimal(env, "GATEWAYZ_VELOCITY_FACTOR", str(d.velocity_factor)))
    if not 0 < rate <= 1 or not 0 < factor <= 1:
        raise ConfigError("GATEWAYZ_VELOCITY_ERROR_RATE and GATEWAYZ_VELOCITY_FACTOR must be in (0, 1]")
    min_requests = _int(env, "GATEWAYZ_VELOCITY_MIN_REQUESTS", d.velocity_min_requests)
    min_sources = _int(env, "GATEWAYZ_VELOCITY_MIN_SOURCES", d.velocity_min_sources)
    if min_sources > min_requests:
        raise ConfigError(
            "GATEWAYZ_VELOCITY_MIN_SOURCES must not exceed GATEWAYZ_VELOCITY_MIN_REQUESTS "
            f"({min_sources} > {min_requests}): each source counts for min_requests // min_sources"
        )
    return LimitSettings(
        ip_rpm=_int(env, "GATEWAYZ_IP_RPM", d.ip_rpm),
        ip_auth_failures=_int(env, "GATEWAYZ_IP_AUTH_FAILURES_PER_MINUTE", d.ip_auth_failures),
        velocity_error_rate=rate,
        velocity_min_requests=min_requests,
        velocity_min_sources=min_sources,
        velocity_seconds=_seconds(env, "GATEWAYZ_VELOCITY_SECONDS", d.velocity_seconds),
        velocity_factor=factor,
        anonymous=_flag(env, "GATEWAYZ_ANONYMOUS"),
        anonymous_per_day=_int(env, "GATEWAYZ_ANONYMOUS_PER_DAY", d.anonymous_per_day),
        max_n=_max_n(env),
        fail_closed=_flag(env, "GATEWAYZ_LIMITS_FAIL_CLOSED"),
        spare_seconds=_seconds(
            env,
            "GATEWAYZ_SPARE_ADMISSION_SECONDS",
            0.0 if serverless(env) else d.spare_seconds,
            zero_is_off=True,
        ),
    )


DEFAULT_MAX_N = 16


def _max_n(env: Mapping[str, str]) -> int:
    value = _int(env, "GATEWAYZ_MAX_N", DEFAULT_MAX_N)
    if value > 128:
        raise ConfigError(f"GATEWAYZ_MAX_N must be at most 128 (OpenAI's own bound), got {value}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float, *, zero_is_off: bool = False) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if zero_is_off and value == 0:
        return value
    if not 0 < value <= 3600:
        raise ConfigError(f"{name} must be between 0 and 3600 seconds, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """Rate-limit layers 1 and 3 and the limiter's behaviour (layer 2 comes from plans and keys)."""

    ip_rpm: int = 300
    ip_auth_failures: int = 20  # failed authentications per IP per minute
    velocity_error_rate: float = 0.25
    velocity_min_requests: int = 50
    # Velocity needs that volume from at least this many networks (IPv4 /24, IPv6 /64): each
    # counts for at most velocity_min_requests // velocity_min_sources responses a minute.
    velocity_min_sources: int = 5
    velocity_seconds: float = 180.0
    velocity_factor: float = 0.5  # layer-1 limits are multiplied by this in velocity mode
    anonymous: bool = False
    anonymous_per_day: int = 10
    # The most choices (`n`) one request may ask for. Where a provider cannot return several, each
    # choice is a call of its own, counted against the request and concurrency limits.
    max_n: int = DEFAULT_MAX_N
    fail_closed: bool = False
    lease_ms: int = 660_000  # a concurrency slot outlives the longest request (deadline + margin)
    # How long a busy key's next admission, taken by its previous request's end, may wait for it
    # (shared.limits.spares; 0: off).
    spare_seconds: float = 1.0


def _networks(env: Mapping[str, str], name: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    raw = env.get(name, "")
    try:
        return tuple(
            ipaddress.ip_network(part.strip(), strict=False) for part in raw.split(",") if part.strip()
        )
    except ValueError as exc:
        raise ConfigError(f"{name} must be comma-separated IP networks (CIDR): {exc}") from None


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Upstream time bounds. `deadline` caps one request across every failover attempt."""

    connect: float = 10.0
    first_byte: float = 120.0  # until the upstream's response headers (and first stream event)
    stream_idle: float = 120.0  # longest silence between two stream events
    deadline: float = 600.0
    retry_after_max: float = 2.0  # a 429's retry-after is honoured on the same offer only if this short


@dataclass(frozen=True, slots=True)
class PaymentSettings:
    """Stripe and the money-in rules (SPEC §6; names in the README's configuration table)."""

    secret_key: str | None = field(default=None, repr=False)  # STRIPE_SECRET_KEY
    webhook_secret: str | None = field(default=None, repr=False)  # STRIPE_WEBHOOK_SECRET
    api_base: str | None = None  # STRIPE_API_BASE (tests: the fake); None: Stripe's own
    prices: Mapping[str, str] = field(default_factory=dict)  # plan id → STRIPE_PRICE_<PLAN>
    topup_min: Decimal = Decimal(5)
    topup_max: Decimal = Decimal(1000)
    success_url: str = "http://127.0.0.1:8000/billing/success?session_id={CHECKOUT_SESSION_ID}"
    cancel_url: str = "http://127.0.0.1:8000/billing/cancel"
    portal_return_url: str = "http://127.0.0.1:8000/"
    grace_days: int = 3  # after a failed renewal, before the downgrade to Free
    trial_credits: Decimal = Decimal(1)
    trial_days: int = 7
    trial_models: tuple[str, ...] | None = None  # model patterns a trial may use; None: every model
    trial_rpm: int = 10
    trial_rpd: int = 200
    referral_bonus: Decimal = Decimal(5)  # to each of referrer and referee, on the first top-up
    referral_cap: int = 10  # bonuses per referrer per calendar month (UTC)
    low_balance: Decimal = Decimal(1)  # the low-balance notice is sent below this
    notify: str = "log"  # GATEWAYZ_NOTIFY: log (default) | resend | smtp
    notify_from: str = "billing@gatewayz.local"


def _payments(env: Mapping[str, str]) -> PaymentSettings:
    d = PaymentSettings()
    prices = {
        name.removeprefix("STRIPE_PRICE_").lower(): value
        for name, value in env.items()
        if name.startswith("STRIPE_PRICE_") and value
    }
    low, high = _decimal(env, "GATEWAYZ_TOPUP_MIN_USD", "5"), _decimal(env, "GATEWAYZ_TOPUP_MAX_USD", "1000")
    if low <= 0 or high < low:
        raise ConfigError("GATEWAYZ_TOPUP_MIN_USD must be > 0 and at most GATEWAYZ_TOPUP_MAX_USD")
    models = env.get("GATEWAYZ_TRIAL_MODELS", "").strip()
    notify = env.get("GATEWAYZ_NOTIFY", "log").strip().lower() or "log"
    if notify not in ("log", "resend", "smtp"):
        raise ConfigError(f"GATEWAYZ_NOTIFY must be log, resend or smtp, got {notify!r}")
    return PaymentSettings(
        secret_key=env.get("STRIPE_SECRET_KEY") or None,
        webhook_secret=env.get("STRIPE_WEBHOOK_SECRET") or None,
        api_base=(env.get("STRIPE_API_BASE") or "").rstrip("/") or None,
        prices=prices,
        topup_min=low,
        topup_max=high,
        success_url=env.get("GATEWAYZ_CHECKOUT_SUCCESS_URL") or d.success_url,
        cancel_url=env.get("GATEWAYZ_CHECKOUT_CANCEL_URL") or d.cancel_url,
        portal_return_url=env.get("GATEWAYZ_PORTAL_RETURN_URL") or d.portal_return_url,
        grace_days=_int(env, "GATEWAYZ_BILLING_GRACE_DAYS", d.grace_days, low=0),
        trial_credits=_decimal(env, "GATEWAYZ_TRIAL_CREDITS_USD", str(d.trial_credits)),
        trial_days=_int(env, "GATEWAYZ_TRIAL_DAYS", d.trial_days),
        trial_models=tuple(m.strip() for m in models.split(",") if m.strip()) or None,
        trial_rpm=_int(env, "GATEWAYZ_TRIAL_RPM", d.trial_rpm),
        trial_rpd=_int(env, "GATEWAYZ_TRIAL_RPD", d.trial_rpd),
        referral_bonus=_decimal(env, "GATEWAYZ_REFERRAL_BONUS_USD", str(d.referral_bonus)),
        referral_cap=_int(env, "GATEWAYZ_REFERRAL_MONTHLY_CAP", d.referral_cap, low=0),
        low_balance=_decimal(env, "GATEWAYZ_LOW_BALANCE_USD", str(d.low_balance)),
        notify=notify,
        notify_from=env.get("GATEWAYZ_NOTIFY_FROM") or d.notify_from,
    )


_DEFAULT_TIMEOUTS = Timeouts()
DEFAULT_DATABASE_URL = "sqlite:///.gatewayz/gatewayz.db"


@dataclass(frozen=True, slots=True)
class Settings:
    admin_key: str | None = None
    database_url: str = DEFAULT_DATABASE_URL
    catalog_file: str | None = None
    # How often an instance looks for a newer catalog-sync overlay in the database (one small read).
    catalog_refresh: float = 30.0
    markup: Decimal = Decimal("1.25")
    timeouts: Timeouts = field(default_factory=Timeouts)
    key_secret: str | None = field(default=None, repr=False)  # HMAC secret of API key hashes
    redis_url: str | None = field(default=None, repr=False)
    upstash_url: str | None = field(default=None, repr=False)
    upstash_token: str | None = field(default=None, repr=False)
    limits: LimitSettings = field(default_factory=LimitSettings)
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    encryption_keys: tuple[str, ...] = field(default=(), repr=False)  # Fernet, newest first
    byok_fee: Decimal = Decimal("0.05")  # share of the usual cost charged when the user's own key served
    key_cache_ttl: float = 60.0
    responses_retention_days: int = 30  # how long a stored response (store: true) is kept
    # How long raw request records are kept (the rollup job prunes older ones once their days are
    # rolled up; the daily rollups and the ledger are kept). 90: /v1/usage's longest window.
    request_retention_days: int = 90
    history_retention_days: int = 90  # chat history's default retention (a user may set their own)
    hold_retention_days: int = 7  # how long a closed credit hold is kept (the ledger is kept forever)
    # How long a spare hold may wait for a busy key's next request (shared.billing.spares; 0: off).
    spare_hold_seconds: float = 2.0
    payments: PaymentSettings = field(default_factory=PaymentSettings)
    # The raw environment, kept for per-provider lookups (`<ID>_API_KEY`, `<ID>_BASE_URL`, ...).
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        admin_key = env.get("GATEWAYZ_ADMIN_KEY") or None
        if admin_key is not None and len(admin_key) < 16:
            raise ConfigError("GATEWAYZ_ADMIN_KEY must be at least 16 characters")
        timeouts = Timeouts(
            connect=_seconds(env, "GATEWAYZ_CONNECT_TIMEOUT", _DEFAULT_TIMEOUTS.connect),
            first_byte=_seconds(env, "GATEWAYZ_FIRST_BYTE_TIMEOUT", _DEFAULT_TIMEOUTS.first_byte),
            stream_idle=_seconds(env, "GATEWAYZ_STREAM_IDLE_TIMEOUT", _DEFAULT_TIMEOUTS.stream_idle),
            deadline=_seconds(env, "GATEWAYZ_REQUEST_DEADLINE", _DEFAULT_TIMEOUTS.deadline),
            retry_after_max=_seconds(env, "GATEWAYZ_RETRY_AFTER_MAX", _DEFAULT_TIMEOUTS.retry_after_max),
        )
        key_secret = env.get("GATEWAYZ_KEY_SECRET") or None
        if key_secret is not None and len(key_secret) < 32:
            raise ConfigError("GATEWAYZ_KEY_SECRET must be at least 32 characters")
        byok_fee = _decimal(env, "GATEWAYZ_BYOK_FEE", "0.05")
        if byok_fee > 1:
            raise ConfigError("GATEWAYZ_BYOK_FEE is a fraction of the usual cost, between 0 and 1")
        return cls(
            key_secret=key_secret,
            redis_url=env.get("GATEWAYZ_REDIS_URL") or None,
            upstash_url=env.get("UPSTASH_REDIS_REST_URL") or None,
            upstash_token=env.get("UPSTASH_REDIS_REST_TOKEN") or None,
            limits=_limits(env),
            trusted_proxies=_networks(env, "GATEWAYZ_TRUSTED_PROXIES"),
            encryption_keys=tuple(
                k.strip() for k in env.get("GATEWAYZ_ENCRYPTION_KEYS", "").split(",") if k.strip()
            ),
            byok_fee=byok_fee,
            key_cache_ttl=_seconds(env, "GATEWAYZ_KEY_CACHE_TTL", 60.0),
            responses_retention_days=_int(env, "GATEWAYZ_RESPONSES_RETENTION_DAYS", 30),
            request_retention_days=_int(env, "GATEWAYZ_REQUEST_RETENTION_DAYS", 90),
            history_retention_days=_int(env, "GATEWAYZ_HISTORY_RETENTION_DAYS", 90),
            hold_retention_days=_int(env, "GATEWAYZ_HOLD_RETENTION_DAYS", 7),
            spare_hold_seconds=_seconds(
                env, "GATEWAYZ_SPARE_HOLD_SECONDS", 0.0 if serverless(env) else 2.0, zero_is_off=True
            ),
            payments=_payments(env),
            admin_key=admin_key,
            database_url=env.get("GATEWAYZ_DATABASE_URL") or DEFAULT_DATABASE_URL,
            catalog_file=env.get("GATEWAYZ_CATALOG_FILE") or None,
            catalog_refresh=_seconds(env, "GATEWAYZ_CATALOG_REFRESH_SECONDS", 30.0),
            markup=_decimal(env, "GATEWAYZ_MARKUP", "1.25"),
            timeouts=timeouts,
            env=env,
        )

    def provider_value(self, provider_id: str, suffix: str) -> str | None:
        return self.env.get(env_name(provider_id, suffix)) or None


def serverless(env: Mapping[str, str]) -> bool:
    """Whether this process runs as a serverless function (frozen between invocations)."""
    return bool(env.get("AWS_LAMBDA_FUNCTION_NAME") or env.get("VERCEL"))


@cache
def process_settings() -> Settings:
    """The settings of this process, read from the environment on first use (not at import)."""
    return Settings.from_env()
