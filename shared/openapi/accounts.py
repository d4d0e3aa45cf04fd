"""Schemas of the account, key, credit, usage, provider-key, admin, auth and job routes for the
OpenAPI document (SPEC §5, §9): the shapes of shared.views and shared.accounts. Money is a decimal
string (USD), times are ISO 8601 UTC strings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shared.openapi.base import Shape


class Subscription(Shape):
    status: str
    current_period_end: str | None = None
    cancel_at_period_end: bool


class Allowance(Shape):
    granted: str = Field(description="The plan's allowance granted with the last paid invoice")
    used: str = Field(description="Usage charged since then, up to the allowance")
    since: str


class Me(Shape):
    id: str
    email: str
    role: Literal["user", "admin"]
    status: Literal["active", "suspended"]
    plan: str
    balance: str
    frozen: str | None = Field(default=None, description="debt or dispute: spending is refused")
    debt: str = Field(default="0", description="Owed after a refund larger than the credit left")
    subscription: Subscription | None = None
    allowance: Allowance | None = None


class SpendLimits(Shape):
    day: str | None = None
    month: str | None = None
    total: str | None = None


class ApiKey(Shape):
    id: str
    object: Literal["api_key"] = "api_key"
    name: str
    prefix: str
    last4: str
    environment: Literal["live", "test"]
    scopes: list[str]
    expires_at: str | None = None
    ip_allowlist: list[str] | None = None
    allowed_origins: list[str] | None = None
    allowed_models: list[str] | None = None
    spend_limits: SpendLimits
    rate_limits: dict[str, int]
    disabled: bool
    store_history: bool = Field(default=False, description="chat history is kept for this key's requests")
    revoked_at: str | None = None
    revoked: bool
    replaced_by: str | None = None
    budget_key_id: str | None = Field(
        default=None,
        description="The key whose spend and rate-limit counters this key shares (a key minted by a key "
        "with limits, or a rotated key's replacement); null: its own",
    )
    created_at: str
    last_used_at: str | None = None


class NewApiKey(ApiKey):
    key: str = Field(description="The full key, shown this once")


class ApiKeyList(Shape):
    data: list[ApiKey]


class LedgerRow(Shape):
    id: str
    amount: str
    type: str
    balance_after: str
    request_id: str | None = None
    payment_id: str | None = None
    description: str | None = None
    created_at: str


class CreditsPage(Shape):
    currency: Literal["USD"] = "USD"
    balance: str
    held: str = Field(description="Reserved by requests in flight")
    available: str
    data: list[LedgerRow] = Field(description="Ledger rows, newest first")
    has_more: bool
    next_cursor: str | None = None


class TokenCounts(Shape):
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost: str


class RequestRecord(TokenCounts):
    request_id: str
    key_id: str | None = None
    model: str
    provider: str | None = None
    endpoint: str
    status: str
    http_status: int | None = None
    estimated: bool
    byok: bool
    latency_ms: int | None = None
    created_at: str


class DailyUsage(TokenCounts):
    date: str
    model: str
    requests: int
    errors: int


class UsagePage(Shape):
    object: Literal["usage"] = "usage"
    data: list[RequestRecord]
    has_more: bool
    next_cursor: str | None = None
    days: int
    daily: list[DailyUsage]


class ProviderKey(Shape):
    object: Literal["provider_key"] = "provider_key"
    provider: str
    last4: str
    created_at: str
    updated_at: str


class ProviderKeyList(Shape):
    object: Literal["list"] = "list"
    data: list[ProviderKey]


class ProviderKeyIn(Shape):
    api_key: str = Field(description="The provider's key; stored encrypted, shown back as last4 only")


class ProviderKeyDeleted(Shape):
    object: Literal["provider_key"] = "provider_key"
    provider: str
    deleted: Literal[True] = True


class User(Shape):
    id: str
    object: Literal["user"] = "user"
    email: str
    role: Literal["user", "admin"]
    status: Literal["active", "suspended"]
    plan: str
    balance: str
    held: str
    available: str
    created_at: str


class UserWithKeys(User):
    keys: list[ApiKey]


class UserCreated(Shape):
    user: User
    key: NewApiKey


class UserList(Shape):
    data: list[User]
    has_more: bool
    next_cursor: str | None = None


class CreditTransaction(LedgerRow):
    object: Literal["credit_transaction"] = "credit_transaction"
    user_id: str
    balance: str
    replayed: bool = Field(description="True when an idempotency key replayed an earlier change")


class AuditEntry(Shape):
    id: str
    actor_type: str
    actor_id: str | None = None
    action: str
    target_type: str | None = None
    target_id: str | None = None
    details: dict[str, Any] | None = None
    ip: str | None = None
    created_at: str


class AuditPage(Shape):
    data: list[AuditEntry]
    has_more: bool
    next_cursor: str | None = None


class Session(Shape):
    object: Literal["auth.session"] = "auth.session"
    user: User
    created: bool
    linked: bool
    api_key: NewApiKey | None = Field(description="A new key (first sign-in, or create_key), else null")


class ReapResult(Shape):
    expired_holds: int


class PruneResult(Shape):
    pruned_holds: int = Field(description="Closed holds deleted by this run")
    batches: int = Field(description="Transactions it took (each a bounded batch)")
    done: bool = Field(description="False when the run stopped at its bound with more to prune")
