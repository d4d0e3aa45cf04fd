"""Readiness and the public status page (SPEC §8), without secrets."""

from __future__ import annotations

from typing import Any

import anyio

from shared.errors import DependencyUnavailable, NoProviderAvailable
from shared.hot.breaker import CLOSED
from shared.runtime import Runtime

_DB_CHECK_S = 2.0  # a database slower than this to answer `SELECT 1` cannot serve paid requests


async def readiness(rt: Runtime) -> dict[str, Any]:
    """Ready when at least one provider is usable and the database answers.

    The hot-state store is reported, not required: without it limits fall back to per instance
    (or refuse, when configured fail-closed), which `/v1/status` shows as degraded.
    """
    configured = [pid for pid, ep in rt.endpoints.items() if ep.configured]
    if not configured:
        raise NoProviderAvailable("No provider is configured: set <ID>_API_KEY or <ID>_BASE_URL for one.")
    try:
        with anyio.fail_after(_DB_CHECK_S):
            await rt.db.fetch_one("SELECT 1")
    except Exception as exc:  # any failure to answer means: do not route traffic here
        raise DependencyUnavailable(f"The database does not answer ({type(exc).__name__}).") from exc
    return {
        "status": "ready",
        "models": len(rt.catalog.models),
        "providers_configured": len(configured),
        "database": rt.db.dialect,
        "limits": "degraded" if getattr(rt.hot, "degraded", False) else rt.hot.name,
    }


async def public_status(rt: Runtime) -> dict[str, Any]:
    """`/v1/status`: live health from the shared breakers, uptime and incidents from the database
    (empty when the database does not answer: live health is still worth showing)."""
    from shared.routing.probes import status_history

    await rt.health.refresh()
    out = provider_status(rt)
    try:
        with anyio.fail_after(_DB_CHECK_S):
            history = await status_history(rt)
    except Exception:
        history = {"uptime": {}, "incidents": []}
    out.update(history)
    return out


def provider_status(rt: Runtime) -> dict[str, Any]:
    stats = rt.health.snapshot()
    providers = [
        {
            "id": pid,
            "name": ep.provider.name,
            "configured": ep.configured,
            "status": "unconfigured"
            if not ep.configured
            else (
                "degraded"
                if any(s["provider"] == pid and s["status"] == "down" for s in stats)
                or rt.health.provider_state(pid) != CLOSED
                else "operational"
            ),
        }
        for pid, ep in rt.endpoints.items()
    ]
    return {
        "providers": providers,
        "models": stats,
        "breakers": rt.health.breakers(),
        "limits": limits_status(rt),
    }


def limits_status(rt: Runtime) -> dict[str, Any]:
    hot = rt.hot
    degraded = bool(getattr(hot, "degraded", False))
    return {
        "backend": hot.name,
        "degraded": degraded,  # True: the shared store is unreachable and limits are per instance
        "fallback_calls": int(getattr(hot, "fallbacks", 0)),
        "velocity": rt.limiter.velocity.state(),
        "rejections": dict(rt.limiter.rejections),
        "spare_admissions": rt.limiter.spares.state(),  # shared.limits.spares
    }
