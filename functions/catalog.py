"""The catalog function: models, providers and gateways (SPEC §2.4). Public and read-only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response

from shared.app import function_app, runtime_of
from shared.observe.lambda_handler import lambda_handler
from shared.openapi import documented
from shared.views import analytics
from shared.views.catalog import gateways, list_models, one_model, providers

router = APIRouter()


@router.get("/v1/models")
@documented(
    "List models (OpenAI list shape, extended like OpenRouter)",
    response="catalog.ModelList",
    errors=(400,),
    tag="catalog",
)
async def models(
    request: Request,
    provider: str | None = None,
    modality: str | None = None,
    q: str | None = Query(default=None, max_length=200),
    limit: int | None = Query(default=None, ge=1, le=1000),
    after: str | None = None,
) -> dict[str, object]:
    rt = runtime_of(request)
    await rt.health.refresh()  # the offers' measured latency and breaker states
    return list_models(rt, provider=provider, modality=modality, q=q, limit=limit, after=after)


@router.get("/v1/models/{model_id:path}")
@documented("One model, by id or alias", response="catalog.ModelObject", errors=(404,), tag="catalog")
async def model(request: Request, model_id: str) -> dict[str, object]:
    rt = runtime_of(request)
    await rt.health.refresh()
    return one_model(rt, model_id)


@router.get("/v1/providers")
@documented("The provider table", response="catalog.ProviderList", tag="catalog")
async def provider_list(request: Request) -> dict[str, object]:
    return providers(runtime_of(request))


@router.get("/v1/gateways")
@documented(
    "The provider table in the shape the predecessor's frontend reads",
    response="catalog.GatewayList",
    tag="catalog",
)
async def gateway_list(request: Request) -> dict[str, object]:
    return gateways(runtime_of(request))


@router.get("/v1/rankings")
@documented(
    "Models ranked by tokens and by requests over the last day, week or month (public, from the rollups)",
    response="analytics.Rankings",
    errors=(400,),
    tag="catalog",
)
async def rankings(
    request: Request,
    response: Response,
    period: str = Query(default="week", max_length=16),
    limit: int = Query(default=20, ge=1, le=100),
) -> dict[str, Any]:
    # Every user's traffic, no user data: shared caches may keep it as long as the process does.
    response.headers["cache-control"] = f"public, max-age={int(analytics.RANKINGS_TTL_S)}"
    return await analytics.rankings(runtime_of(request), period, limit)


app = function_app([router], title="Gatewayz catalog")
handler = lambda_handler(app, "catalog")
