"""The local server: every function's routes in one ASGI app (`gatewayz serve`)."""

from __future__ import annotations

from fastapi import FastAPI

from shared.app import create_app
from shared.config import Settings


def create_server_app(settings: Settings | None = None) -> FastAPI:
    # Imported here so that importing shared/ never imports the function modules.
    from functions import (
        account,
        admin,
        auth,
        billing,
        catalog,
        chat,
        embeddings,
        health,
        history,
        images,
        jobs,
        messages,
        probes,
        responses,
        web,
        webhooks,
    )

    routers = [
        chat.router,  # first: the hot path's routes are matched before any other
        messages.router,
        responses.router,
        embeddings.router,
        images.router,
        health.router,
        catalog.router,
        auth.router,
        account.router,  # with the BYOK routes of functions.provider_keys
        admin.router,
        history.router,
        jobs.router,
        probes.router,
        billing.router,
        webhooks.router,
        web.router,  # the dashboard's pages (its app also includes the routers it calls)
    ]
    from shared import observe
    from shared.observe import prometheus
    from shared.observe.errors import configure_sentry

    observe.configure_from_env()
    configure_sentry()  # SENTRY_DSN: unhandled errors to Sentry, scrubbed
    if prometheus.enabled():  # GATEWAYZ_METRICS=1 or GATEWAYZ_METRICS_TOKEN: /metrics and its backend
        prometheus.sink()
        routers.append(prometheus.metrics_router())
    return create_app(routers, settings=settings, title="Gatewayz")
