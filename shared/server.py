"""The local server: every function's routes in one ASGI app (`gatewayz serve`)."""

from __future__ import annotations

from fastapi import FastAPI

from shared.app import create_app
from shared.config import Settings


def create_server_app(settings: Settings | None = None) -> FastAPI:
    # Imported here so that importing shared/ never imports the function modules.
    from functions import account, admin, auth, catalog, chat, health, jobs, messages, responses, web

    routers = [
        chat.router,  # first: the hot path's routes are matched before any other
        messages.router,
        responses.router,
        health.router,
        catalog.router,
        auth.router,
        account.router,  # with the BYOK routes of functions.provider_keys
        admin.router,
        jobs.router,
        web.router,  # the dashboard's pages (its app also includes the routers it calls)
    ]
    return create_app(routers, settings=settings, title="Gatewayz")
