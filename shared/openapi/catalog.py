"""Schemas of the catalog and health routes for the OpenAPI document (SPEC §2.4, §8): the shapes
of shared.views.catalog and shared.views.status. Prices are USD per million tokens (per image,
per request for those two) as charged, decimal strings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shared.openapi.base import Shape


class Prices(Shape):
    prompt: str
    completion: str
    cache_read: str
    cache_write: str
    reasoning: str
    image: str
    request: str
    images: dict[str, str] | None = None  # image models priced per image: by "quality/size"


class Architecture(Shape):
    input_modalities: list[str]
    output_modalities: list[str]


class Measured(Shape):
    """EWMAs of every instance's real traffic to this offer (shared through the hot-state store)."""

    latency_ms: float  # time to first byte
    tokens_per_s: float  # output tokens per second after the first byte
    samples: int


class ModelOffer(Shape):
    provider: str
    native_id: str
    context_length: int
    max_output_tokens: int | None = None
    capabilities: list[str]
    pricing: Prices
    status: Literal["available", "down", "unconfigured"]
    measured: Measured | None = None


class ModelObject(Shape):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    name: str
    description: str
    context_length: int
    max_output_tokens: int | None = None
    dimensions: int | None = None  # embedding models: the default vector length
    pricing: Prices
    architecture: Architecture
    capabilities: list[str]
    supported_parameters: list[str]
    aliases: list[str]
    providers: list[ModelOffer]
    status: Literal["available", "down", "unconfigured"]


class ModelList(Shape):
    object: Literal["list"] = "list"
    data: list[ModelObject]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


class ProviderObject(Shape):
    id: str
    name: str
    dialect: str
    site_url: str | None = None
    docs: str | None = None
    configured: bool
    models: int


class ProviderList(Shape):
    object: Literal["list"] = "list"
    data: list[ProviderObject]


class GatewayObject(Shape):
    slug: str
    name: str
    color: str | None = None
    priority: int | None = None
    site_url: str | None = None
    configured: bool


class GatewayList(Shape):
    object: Literal["list"] = "list"
    data: list[GatewayObject]


class Liveness(Shape):
    status: Literal["ok"] = "ok"


class Readiness(Shape):
    status: Literal["ready"] = "ready"
    models: int
    providers_configured: int
    database: str
    limits: str


class ProviderHealth(Shape):
    id: str
    name: str
    configured: bool
    status: Literal["operational", "degraded", "unconfigured"]


class ModelHealth(Shape):
    provider: str
    model: str
    status: Literal["up", "down"]
    breaker: Literal["closed", "open", "half-open"]
    latency_ms: float
    tokens_per_s: float
    samples: int


class BreakerHealth(Shape):
    """A breaker that is not plainly closed (times in ms since the epoch)."""

    scope: Literal["offer", "provider"]
    provider: str
    model: str | None = None
    state: Literal["open", "half-open", "saturated", "closed"]
    open_since_ms: int | None = None
    last_failure_ms: int | None = None
    retry_in_ms: int


class LimitsHealth(Shape):
    backend: str
    degraded: bool
    fallback_calls: int
    velocity: dict[str, Any]
    rejections: dict[str, int]
    spare_admissions: dict[str, int]  # taken since start, waiting now (a busy key's next admission)


class Uptime(Shape):
    """Share of successful probes (null: none in the span), and the latest probes' latencies."""

    h24: float | None = Field(default=None, alias="24h")
    d7: float | None = Field(default=None, alias="7d")
    latency_ms: list[int]


class Incident(Shape):
    id: str
    provider: str
    model: str | None = None  # null: the whole provider
    started_at: str
    resolved_at: str | None = None
    status: Literal["ongoing", "resolved"]


class Status(Shape):
    providers: list[ProviderHealth]
    models: list[ModelHealth]
    breakers: list[BreakerHealth]
    uptime: dict[str, Uptime]  # per provider, from the scheduled probes
    incidents: list[Incident]  # ongoing, and those of the last 7 days
    limits: LimitsHealth


class ProbeRun(Shape):
    probed: int
    failed: int
    incidents_opened: int
    incidents_resolved: int


class PriceChange(Shape):
    """An upstream price that differs from the catalog's (USD per million tokens, before markup)."""

    model: str
    provider: str
    from_: dict[str, str] = Field(alias="from")
    to: dict[str, str]
    applied: bool  # False: the model is pinned, the catalog keeps its price
    pinned: bool


class CatalogSyncReport(Shape):
    """One catalog sync: what each provider listed, what changed and what was not applied."""

    id: str | None  # None: no sync has run yet
    created_at: str | None = None
    dry_run: bool = False
    providers: dict[str, dict[str, Any]] = {}  # id → {status: ok|error|skipped, listed | error | reason}
    prices: dict[str, Any] | None = None  # {source, models}
    added: list[dict[str, Any]] = []  # {model, providers, pricing}
    offers_added: list[dict[str, Any]] = []
    removed: list[dict[str, Any]] = []  # {model, providers}: now a 404 with the reason
    offers_removed: list[dict[str, Any]] = []
    restored: list[str] = []
    price_changes: list[PriceChange] = []
    unpriced: list[dict[str, Any]] = []  # listed, but the price source does not price it: not served
    ignored_lists: list[dict[str, Any]] = []
    pinned: list[str] = []  # on the diff: the models pinned now


class CatalogPinResult(Shape):
    model: str
    pinned: bool
