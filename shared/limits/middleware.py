"""Layer 1 as a plain ASGI middleware: every API request is checked against its IP's budget before
any authentication runs, and every response feeds the velocity detector.

Liveness and readiness probes (`/health…`) are exempt: a load balancer must always reach them.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import GatewayError, render_anthropic, render_openai, status_of


class IPLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith("/health"):
            await self.app(scope, receive, send)
            return
        from shared.app import runtime_for
        from shared.auth import client_ip

        rt = runtime_for(scope["app"])
        ip = client_ip(Request(scope), rt.settings) or "unknown"
        scope.setdefault("state", {})["client_ip"] = ip
        try:
            await rt.limiter.check_ip(ip)
        except GatewayError as err:
            await rt.limiter.record_response(status_of(err))
            request_id = str((scope.get("state") or {}).get("request_id") or "")
            body = (
                render_anthropic(err, request_id)
                if path.startswith("/v1/messages")
                else render_openai(err, request_id)
            )
            headers = [(k.encode(), v.encode()) for k, v in err.headers.items()]
            await send(
                {
                    "type": "http.response.start",
                    "status": status_of(err),
                    "headers": [(b"content-type", b"application/json"), *headers],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            await rt.limiter.record_response(status)
