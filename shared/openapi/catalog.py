"""Schemas of the catalog and health routes for the OpenAPI document (SPEC §2.4, §8): the shapes
of shared.views.catalog and shared.views.status. Prices are USD per million tokens (per image,
per request for those two) as charged, decimal strings."""

from __future__ import annotations

from typing import Any, Literal

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


class ModelOffer(Shape):
    provider: str
    native_id: str
    context_length: int
    max_output_tokens: int | None = None
    capabilities: list[str]
    pricing: Prices
    status: Literal["available", "down", "unconfigured"]


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
    latency_ms: float
    success_rate: float | None = None


class LimitsHealth(Shape):
    backend: str
    degraded: bool
    fallback_calls: int
    velocity: dict[str, Any]
    rejections: dict[str, int]


class Status(Shape):
    providers: list[ProviderHealth]
    models: list[ModelHealth]
    limits: LimitsHealth
