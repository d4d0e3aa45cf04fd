"""Readiness and the public status page (SPEC §8), without secrets."""

from __future__ import annotations

from typing import Any

from shared.errors import NoProviderAvailable
from shared.runtime import Runtime


async def readiness(rt: Runtime) -> dict[str, Any]:
    """Ready when the catalog and provider table loaded and at least one provider is usable.

    (Database and cache checks join here when those stores land.)
    """
    configured = [pid for pid, ep in rt.endpoints.items() if ep.configured]
    if not configured:
        raise NoProviderAvailable("No provider is configured: set <ID>_API_KEY or <ID>_BASE_URL for one.")
    return {"status": "ready", "models": len(rt.catalog.models), "providers_configured": len(configured)}


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
                else "operational"
            ),
        }
        for pid, ep in rt.endpoints.items()
    ]
    return {"providers": providers, "models": stats, "limits": limits_status(rt)}


def limits_status(rt: Runtime) -> dict[str, Any]:
    hot = rt.hot
    degraded = bool(getattr(hot, "degraded", False))
    return {
        "backend": hot.name,
        "degraded": degraded,  # True: the shared store is unreachable and limits are per instance
        "fallback_calls": int(getattr(hot, "fallbacks", 0)),
        "velocity": rt.limiter.velocity.state(),
        "rejections": dict(rt.limiter.rejections),
    }
