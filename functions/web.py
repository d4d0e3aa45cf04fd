"""The web function: the dashboard (SPEC §5 pages) over the JSON API, server-rendered.

Every page reads and writes through the gateway's own routes in process (shared.web.gateway), so
this function's app includes the routers it calls: account, auth (Supabase sign-in exchanges its
token at `POST /auth/session`), billing (top-up checkout, coupons), catalog, admin, health, history (the settings page's chat history switches) and chat
(the playground streams through the real `POST /v1/chat/completions`). It is deployed like the
streaming functions (Lambda Web Adapter behind a Function URL), so the playground streams on
Lambda too; Mangum's `handler` is kept for a buffered deployment.
"""

from __future__ import annotations

from functions import account, admin, auth, billing, catalog, chat, health, history
from shared.app import function_app
from shared.observe.lambda_handler import lambda_handler
from shared.web import router

app = function_app(
    [
        router,
        chat.router,
        account.router,
        auth.router,
        billing.router,
        catalog.router,
        admin.router,
        health.router,
        history.router,
    ],
    title="Gatewayz web",
)
handler = lambda_handler(app, "web")
