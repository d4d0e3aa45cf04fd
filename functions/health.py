"""The health function: liveness, readiness and the public provider status (SPEC §8)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from shared.app import function_app, runtime_of
from shared.observe.lambda_handler import lambda_handler
from shared.openapi import documented
from shared.views.status import public_status, readiness
from shared.views.status_page import render_status

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
    "Public status: providers, offers' live health and breakers, uptime, incidents, the limiter's state",
    response="catalog.Status",
    tag="health",
)
async def status(request: Request) -> dict[str, object]:
    return await public_status(runtime_of(request))


@router.get("/status", include_in_schema=False)  # a page for people; its data is /v1/status
async def status_page(request: Request) -> HTMLResponse:
    data = await public_status(runtime_of(request))
    return HTMLResponse(render_status(data), headers={"cache-control": "public, max-age=30"})


app = function_app([router], title="Gatewayz health")
handler = lambda_handler(app, "health")
