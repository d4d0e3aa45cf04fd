"""The health function: liveness, readiness and the public provider status (SPEC §8)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from shared.app import function_app, runtime_of
from shared.observe.lambda_handler import lambda_handler
from shared.openapi import documented
from shared.views.status import provider_status, readiness

router = APIRouter()


@router.get("/health")
@documented("Liveness (no I/O)", response="catalog.Liveness", tag="health")
async def health() -> dict[str, str]:
    return {"status": "ok"}  # liveness: no I/O


@router.get("/health/ready")
@documented(
    "Readiness: a provider configured and the database answering",
    response="catalog.Readiness",
    errors=(503,),
    tag="health",
)
async def ready(request: Request) -> dict[str, object]:
    return await readiness(runtime_of(request))


@router.get("/v1/status")
@documented(
    "Public status: providers, models' passive health, the limiter's state",
    response="catalog.Status",
    tag="health",
)
async def status(request: Request) -> dict[str, object]:
    return provider_status(runtime_of(request))


app = function_app([router], title="Gatewayz health")
handler = lambda_handler(app, "health")
