"""Sentry, opt-in by `SENTRY_DSN`: errors only, no request bodies, no secrets.

Only the logging integration is enabled: the gateway middleware logs every unhandled error with
its traceback (`log.exception`), which becomes one Sentry event. No framework integration patches
the request path, no trace is sampled, frames carry no local variables (an API key is a local
somewhere) and there are no breadcrumbs (upstream URLs may hold a key). `before_send` keeps the
request's method and path only, drops the user, and redacts anything shaped like a key or a
bearer token that is left in a message.
"""

from __future__ import annotations

import os
import re
from typing import Any

# Gateway keys (gw_live_…, gw_admin_…), provider keys (sk-…, sk-ant-…, AIza…), bearer tokens, JWTs.
_SECRET = re.compile(
    r"(gw_[A-Za-z0-9_]{8,}|sk-[A-Za-z0-9_-]{6,}|AIza[0-9A-Za-z_-]{20,}|Bearer\s+\S+"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)"
)
REDACTED = "[redacted]"
_enabled = False


def redact(value: Any) -> Any:
    if isinstance(value, str):
        return _SECRET.sub(REDACTED, value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def scrub(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sentry's `before_send`: what leaves the process."""
    request = event.get("request")
    if isinstance(request, dict):
        url = str(request.get("url", "")).split("?", 1)[0]
        event["request"] = {"method": request.get("method"), "url": url}
    for field in ("user", "breadcrumbs", "extra"):
        event.pop(field, None)
    return redact(event)


def configure_sentry() -> bool:
    """Initialise Sentry when SENTRY_DSN is set (idempotent); whether it is on."""
    global _enabled
    dsn = os.environ.get("SENTRY_DSN", "")
    if not dsn or _enabled:
        return _enabled
    import logging

    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=os.environ.get("SENTRY_ENVIRONMENT") or None,
        release=os.environ.get("SENTRY_RELEASE") or None,
        default_integrations=False,
        auto_enabling_integrations=False,
        integrations=[LoggingIntegration(level=None, event_level=logging.ERROR)],
        include_local_variables=False,
        max_breadcrumbs=0,
        before_send=scrub,  # type: ignore[arg-type]
    )
    _enabled = True
    return True


def flush() -> None:
    """On Lambda, before the invocation returns (the environment may be frozen right after)."""
    if _enabled:
        import sentry_sdk

        sentry_sdk.flush(timeout=2)


def disable() -> None:
    """Back to no Sentry (tests)."""
    global _enabled
    if _enabled:
        import sentry_sdk

        sentry_sdk.flush(timeout=2)
        # A client without a DSN sends nothing; no integration is set up by it (a bare init()
        # would patch every framework it finds).
        sentry_sdk.init(default_integrations=False, auto_enabling_integrations=False)
    _enabled = False
