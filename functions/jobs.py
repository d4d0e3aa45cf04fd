"""Scheduled jobs (SPEC §1): the expired-hold reaper.

On Lambda an EventBridge schedule invokes `reap_holds(event, context)` directly. On Vercel a cron
calls `GET /internal/jobs/reap-holds` with `Authorization: Bearer $CRON_SECRET` (Vercel's own
convention); without that secret configured the route refuses every call.
"""

from __future__ import annotations

import asyncio
import hmac
import os
from typing import Any

from fastapi import APIRouter, Request

from shared.app import function_app, runtime_of
from shared.auth import request_key
from shared.config import Settings
from shared.errors import AuthenticationFailed
from shared.openapi import documented
from shared.runtime import Runtime

router = APIRouter()


@router.get("/internal/jobs/reap-holds")
@documented(
    "Expire unsettled credit holds (Vercel cron; Bearer $CRON_SECRET)",
    response="accounts.ReapResult",
    errors=(401,),
    tag="jobs",
)
async def reap_route(request: Request) -> dict[str, Any]:
    secret = os.environ.get("CRON_SECRET", "")
    given = request_key(request) or ""
    if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
        raise AuthenticationFailed("This job runs on the operator's schedule only.")
    return {"expired_holds": await runtime_of(request).ledger.reap()}


async def _reap() -> int:
    rt = Runtime.build(Settings.from_env())
    try:
        return await rt.ledger.reap()
    finally:
        await rt.close()


def reap_holds(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge entry: a fresh runtime per run (the loop of each invocation is its own)."""
    return {"expired_holds": asyncio.run(_reap())}


app = function_app([router], title="Gatewayz jobs")
