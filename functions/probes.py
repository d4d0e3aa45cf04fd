"""The probe function (issue 15): scheduled active health checks, incidents reconciled after each
run (`shared.routing.probes`).

On Lambda an EventBridge schedule invokes `run(event, context)` directly. On Vercel a cron calls
`GET /internal/jobs/probes` with `Authorization: Bearer $CRON_SECRET`; without that secret
configured the route refuses every call. `gatewayz probe` runs the same from the CLI.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from shared.app import function_app, runtime_of
from shared.auth import require_cron
from shared.config import Settings
from shared.openapi import documented
from shared.routing.probes import run_probes
from shared.runtime import Runtime

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


async def _run() -> dict[str, Any]:
    rt = Runtime.build(Settings.from_env())
    try:
        return await run_probes(rt)
    finally:
        await rt.close()


def run(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge entry: a fresh runtime per run (the loop of each invocation is its own)."""
    return asyncio.run(_run())


app = function_app([router], title="Gatewayz probes")
