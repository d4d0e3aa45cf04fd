"""The public shapes of the catalog: `/v1/models` (OpenAI list, extended like OpenRouter),
`/v1/models/{id}`, `/v1/providers`, `/v1/gateways`.

Prices are shown as charged (catalog price × markup), USD per million tokens (per image, per
request for those two), as decimal strings. The static part of each model's view is computed
once per process; availability is computed per call from configuration and passive health.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from shared.billing import money
from shared.catalog import Model, Pricing, ResolvedOffer, TokenRates
from shared.errors import InvalidRequest, ModelNotFound
from shared.runtime import Runtime

_BASE_PARAMS = ("max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed", "n", "stream")
_CAP_PARAMS = {
    "tools": ("tools", "tool_choice", "parallel_tool_calls"),
    "json_mode": ("response_format",),
    "json_schema": ("response_format", "structured_outputs"),
    "reasoning": ("reasoning", "reasoning_effort", "include_reasoning"),
    "logprobs": ("logprobs", "top_logprobs"),
}


def _rates_view(rates: TokenRates, markup: Decimal) -> dict[str, str]:
    def m(value: Decimal | None, fallback: Decimal) -> str:
        return money((value if value is not None else fallback) * markup)

    cache_write = rates.cache_write if rates.cache_write is not None else rates.prompt
    return {
        "prompt": m(rates.prompt, rates.prompt),
        "completion": m(rates.completion, rates.completion),
        "cache_read": m(rates.cache_read, rates.prompt),
        "cache_write": m(cache_write, cache_write),
        "cache_write_1h": m(rates.cache_write_1h, cache_write),
        "reasoning": m(rates.reasoning, rates.completion),
    }


def price_view(pricing: Pricing, markup: Decimal) -> dict[str, Any]:
    out: dict[str, Any] = _rates_view(pricing, markup)
    out["image"] = money(pricing.image * markup)
    out["request"] = money(pricing.request * markup)
    if pricing.long_prompt is not None:
        # Above `threshold` prompt tokens every token of the request is billed at these rates.
        tier = pricing.long_prompt
        out["long_prompt"] = {"threshold": tier.threshold, **_rates_view(tier, markup)}
    if pricing.images:
        # An image model priced per generated image: USD per image by "quality/size" (or size).
        out["images"] = {kind: money(price * markup) for kind, price in pricing.images.items()}
    return out


def _supported_parameters(model: Model) -> list[str]:
    params = list(_BASE_PARAMS)
    for cap, names in _CAP_PARAMS.items():
        if cap in model.capabilities:
            params.extend(n for n in names if n not in params)
    return params


def _offer_status(rt: Runtime, offer: ResolvedOffer) -> str:
    endpoint = rt.endpoints.get(offer.provider_id)
    if endpoint is None or not endpoint.configured:
        return "unconfigured"
    return "down" if rt.health.is_down(offer.provider_id, offer.model.id) else "available"


def _static_view(rt: Runtime, model: Model) -> dict[str, Any]:
    markup = rt.settings.markup
    offers = rt.catalog.offers[model.id]
    cheapest = min(offers, key=lambda o: o.pricing.prompt + o.pricing.completion)
    return {
        "id": model.id,
        "object": "model",
        "created": model.created,
        "owned_by": model.owned_by,
        "name": model.name,
        "description": model.description,
        "context_length": model.context_length,
        "max_output_tokens": model.max_output_tokens,
        "pricing": price_view(cheapest.pricing, markup),
        "architecture": {
            "input_modalities": list(model.input_modalities),
            "output_modalities": list(model.output_modalities),
        },
        "dimensions": model.dimensions,
        "capabilities": sorted(model.capabilities),
        "supported_parameters": _supported_parameters(model),
        "aliases": sorted(a for a, target in rt.catalog.aliases.items() if target == model.id),
        "providers": [
            {
                "provider": o.provider_id,
                "native_id": o.offer.native_id,
                "context_length": o.context_length,
                "max_output_tokens": o.max_output_tokens,
                "capabilities": sorted(o.capabilities),
                "pricing": price_view(o.pricing, markup),
            }
            for o in offers
        ],
    }


def model_view(rt: Runtime, model: Model) -> dict[str, Any]:
    views: dict[str, dict[str, Any]] = rt.cache.setdefault("model_views", {})
    static = views.get(model.id)
    if static is None:
        static = views[model.id] = _static_view(rt, model)
    statuses = [_offer_status(rt, o) for o in rt.catalog.offers[model.id]]
    view = dict(static)
    health = rt.health
    view["providers"] = [
        {**p, "status": s, "measured": health.measured(p["provider"], model.id)}
        for p, s in zip(static["providers"], statuses, strict=True)
    ]
    if "available" in statuses:
        view["status"] = "available"
    elif "down" in statuses:
        view["status"] = "down"  # every configured offer is failing: marked, not silently served
    else:
        view["status"] = "unconfigured"
    return view


def list_models(
    rt: Runtime,
    *,
    provider: str | None = None,
    modality: str | None = None,
    q: str | None = None,
    limit: int | None = None,
    after: str | None = None,
) -> dict[str, Any]:
    if provider is not None and provider not in rt.endpoints:
        raise InvalidRequest(f"unknown provider '{provider}'", param="provider")
    models = sorted(rt.catalog.models.values(), key=lambda m: m.id)
    if provider is not None:
        models = [m for m in models if any(o.provider == provider for o in m.offers)]
    if modality is not None:
        models = [m for m in models if modality in m.input_modalities or modality in m.output_modalities]
    if q:
        needle = q.lower()
        models = [m for m in models if needle in m.id.lower() or needle in m.name.lower()]
    if after is not None:
        models = [m for m in models if m.id > after]
    has_more = limit is not None and len(models) > limit
    page = models[:limit] if limit is not None else models
    data = [model_view(rt, m) for m in page]
    return {
        "object": "list",
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def one_model(rt: Runtime, model_id: str) -> dict[str, Any]:
    model = rt.catalog.resolve(model_id)
    if model is None:
        gone = rt.catalog.gone_reason(model_id)
        if gone is not None:
            raise ModelNotFound(gone, param="model")
        raise ModelNotFound(f"The model '{model_id}' does not exist", param="model")
    return model_view(rt, model)


def providers(rt: Runtime) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for model in rt.catalog.models.values():
        for offer in model.offers:
            counts[offer.provider] = counts.get(offer.provider, 0) + 1
    data = [
        {
            "id": pid,
            "name": ep.provider.name,
            "dialect": ep.provider.dialect,
            "site_url": ep.provider.site_url,
            "docs": ep.provider.docs,
            "configured": ep.configured,
            "models": counts.get(pid, 0),
        }
        for pid, ep in rt.endpoints.items()
    ]
    return {"object": "list", "data": data}


def gateways(rt: Runtime) -> dict[str, Any]:
    """The shape the predecessor's frontend reads (slug, name, color, priority, site_url)."""
    data = [
        {
            "slug": pid,
            "name": ep.provider.name,
            "color": ep.provider.color,
            "priority": ep.provider.priority,
            "site_url": ep.provider.site_url,
            "configured": ep.configured,
        }
        for pid, ep in rt.endpoints.items()
    ]
    return {"object": "list", "data": data}
