"""The probe function (issue 15): scheduled active health checks, incidents reconciled after each
run (`shared.routing.probes`).

On Lambda an EventBridge schedule invokes `run(event, context)` directly. On Vercel a cron calls
`GET /internal/jobs/probes` with `Authorization: Bearer $CRON_SECRET`; without that secret
configured the route refuses every call. `gatewayz probe` runs the same from the CLI.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from shared.app import function_app, runtime_of
from shared.auth import require_cron
from shared.openapi import documented
from shared.routing.probes import run_probes
from shared.runtime import scheduled

router = APIRouter()


@router.get("/internal/jobs/probes")
@documented(
    "Probe the configured offers and reconcile incidents (Vercel cron; Bearer $CRON_SECRET)",
    response="catalog.ProbeRun",
    errors=(401,),
    tag="jobs",
)
async def probes_route(request: Request) -> dict[str, Any]:
    require_cron(request)
    return await run_probes(runtime_of(request))


def run(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge entry: a fresh runtime per run (the loop of each invocation is its own)."""
    return scheduled(run_probes)


app = function_app([router], title="Gatewayz probes")
