"""The app factory every function uses: request ids, error rendering, the lazily built runtime.

A function module builds its app with `create_app(router)`; `gatewayz serve` builds one app with
every function's router. Errors are rendered here and nowhere else: the OpenAI envelope, or the
Anthropic one on `/v1/messages` routes (SPEC §10).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.telemetry import TelemetryConfig
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import observe
from shared.billing.ledger import new_id
from shared.config import Settings, process_settings
from shared.errors import (
    GatewayError,
    InternalError,
    InvalidRequest,
    LoopDetected,
    NotFound,
    PayloadTooLarge,
    error_for_status,
    render_anthropic,
    render_openai,
    status_of,
)
from shared.limits.limiter import ADMITTING_PATHS
from shared.runtime import Runtime, freeze_heap

log = logging.getLogger("gatewayz")
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id() -> str:
    return new_id("req")


def client_ip(request: Request, settings: Settings) -> str | None:
    """The caller's address: the socket peer, or — only when that peer is a trusted proxy — the
    right-most `X-Forwarded-For` entry that is not itself a trusted proxy."""
    known = (request.scope.get("state") or {}).get("client_ip")
    if known:
        return str(known)
    peer = request.client.host if request.client else None
    if peer is None or not settings.trusted_proxies:
        return peer

    def trusted(ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in net for net in settings.trusted_proxies)

    if not trusted(peer):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not trusted(hop):
            return hop
    return peer


LOOP_MESSAGE = (
    "Loop detected: this request was sent upstream by this gateway and came back to it. A provider's "
    "base URL points at the gateway itself: check the <ID>_BASE_URL settings (OPENAI_BASE_URL and "
    "ANTHROPIC_BASE_URL are also the official SDKs' variables, so a shell set up for an SDK sets them)."
)


class GatewayMiddleware:
    """The one ASGI middleware of every app (one layer: each costs a coroutine and a `send`
    wrapper per request):
    - gives every request an id (the caller's `x-request-id` if sane, echoed back) and a
      server-generated billing id;
    - answers 508 to a request that carries this deployment's own `via` mark (it sent it: a
      provider's base URL leads back here), before anything else is done for it;
    - applies rate-limit layer 1 (per IP, before authentication) except on `/health…`, which a
      load balancer must always reach, and feeds every response status to velocity mode;
    - turns an unhandled bug into a 500 in the route's envelope — never a stack trace.
    """

    def __init__(self, app: ASGIApp, direct: Mapping[str, Route] | None = None) -> None:
        self.app = app
        # Plain routes with a fixed path (the inference routes) are called from here: the layers
        # between this middleware and a route (exception middleware, exit stack, two routers that
        # try every route's pattern in turn) measured at ~10 % of the pipeline's CPU, and such a
        # route needs none of them. Anything else, and any other method, goes through the app.
        self.direct = dict(direct or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = authorization = api_key = via = traceparent = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _SANE_ID.match(candidate):
                    request_id = candidate
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"x-api-key":
                api_key = value.decode("latin-1")
            elif name == b"traceparent":  # W3C trace context: the request's span joins the caller's trace
                traceparent = value.decode("latin-1")
            elif name == b"via":
                via = value.decode("latin-1") if via is None else f"{via}, {value.decode('latin-1')}"
        # The id billing keys on is always ours: a caller's id is echoed and recorded, never trusted
        # to be unique (a retry, or one trace id per conversation, must not collide in the ledger).
        billing_id = new_request_id()
        request_id = request_id or billing_id
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["billing_id"] = billing_id
        state["t0"] = time.perf_counter()
        if traceparent is not None:
            state["traceparent"] = traceparent
        raw = request_id.encode()
        path = str(scope.get("path", ""))
        anthropic = path.startswith("/v1/messages")
        # Anthropic's SDKs read the id from `request-id` (https://platform.claude.com/docs/en/api/errors).
        id_headers = [(b"x-request-id", raw), (b"request-id", raw)] if anthropic else [(b"x-request-id", raw)]
        status = 0
        rt: Runtime | None = None
        counted = False  # in rt.inflight: from admission until the response's last byte is sent

        async def send_with_id(message: Message) -> None:
            nonlocal status, counted
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *id_headers]
            await send(message)
            if counted and message["type"] == "http.response.body" and not message.get("more_body"):
                # Answered: work after the close (a chat history write) no longer makes the SQLite
                # group commit wait for this request (it would hold the caller's next request).
                counted = False
                assert rt is not None
                rt.inflight -= 1

        async def send_error(err: GatewayError) -> None:
            body = render_anthropic(err, request_id) if anthropic else render_openai(err, request_id)
            headers = [(b"content-type", b"application/json")]
            headers += [(k.encode(), v.encode()) for k, v in err.headers.items()]
            await send_with_id({"type": "http.response.start", "status": status_of(err), "headers": headers})
            await send_with_id({"type": "http.response.body", "body": body})

        limited = not path.startswith("/health")
        rt = runtime_for(scope["app"]) if limited else None
        if rt is not None:
            rt.inflight += 1
            counted = True
        try:
            if rt is not None and via is not None:
                state["via"] = via  # passed on upstream, with our own mark after it
                if rt.http.mark and rt.http.mark in via:
                    await send_error(LoopDetected(LOOP_MESSAGE))
                    return
            if rt is not None:
                if time.monotonic() >= rt.catalog_check_at:  # a newer catalog-sync overlay?
                    await rt.refresh_catalog()
                ip = client_ip(Request(scope), rt.settings) or "unknown"
                state["client_ip"] = ip
                key = presented_key(authorization, api_key) if path in ADMITTING_PATHS else None
                if key is not None and rt.keys.knows(key):
                    # A key this instance already verified: no brute force to stop before
                    # authentication, and the admission checks layer 1 in its own call.
                    state["deferred_ip"] = ip
                else:
                    try:
                        await rt.limiter.check_ip(ip)
                    except GatewayError as err:
                        await send_error(err)
                        return
            route = self.direct.get(path)
            if route is not None and scope["method"] in (route.methods or ()):
                await call_direct(route, scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error on %s %s (%s)", scope.get("method"), path, request_id)
            if status:
                raise
            await send_error(InternalError("The gateway failed unexpectedly; the request id identifies it."))
        finally:
            if observe.SINKS:
                observe.http_finished(
                    route_label(scope, self.direct), scope["method"], status or 500, state["t0"], request_id
                )
            if rt is not None:
                if counted:
                    rt.inflight -= 1
                if "deferred_ip" in state:  # failed before its admission: layer 1 still counts it
                    await rt.limiter.count_ip(state.pop("deferred_ip"))
                await rt.limiter.record_response(status or 500, state.get("client_ip") or "unknown")


def route_label(scope: Scope, direct: Mapping[str, Route]) -> str:
    """The route's template (`/v1/models/{model_id:path}`), never the raw path: a metric label
    must have a bounded set of values. A path no route matched is `unmatched`."""
    route = scope.get("route")
    if route is not None and hasattr(route, "path"):
        return str(route.path)
    path = str(scope.get("path", ""))
    return path if path in direct else "unmatched"


async def call_direct(route: Route, scope: Scope, receive: Receive, send: Send) -> None:
    """What Starlette's router and exception middleware do for a plain route, without them: call
    the endpoint, render the errors the app has handlers for, send the response."""
    request = Request(scope, receive)
    try:
        response = await route.endpoint(request)
    except Exception as exc:
        handler = next((h for kind, h in EXCEPTION_HANDLERS if isinstance(exc, kind)), None)
        if handler is None:
            raise
        response = await handler(request, exc)
    await response(scope, receive, send)


def direct_routes(routers: Sequence[APIRouter]) -> dict[str, Route]:
    """The routers' plain Starlette routes with a fixed path (no parameters), by path."""
    return {
        route.path: route
        for router in routers
        for route in router.routes
        if type(route) is Route and "{" not in route.path and route.methods
    }


def presented_key(authorization: str | None, api_key: str | None) -> str | None:
    """The API key a request presents: `Authorization: Bearer <key>` (OpenAI SDKs), else
    `x-api-key` (Anthropic SDKs)."""
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return api_key.strip() if api_key and api_key.strip() else None


def billing_id_of(request: Request) -> str:
    state = request.scope.get("state") or {}
    return str(state.get("billing_id") or new_request_id())


def request_id_of(request: Request) -> str:
    state = request.scope.get("state") or {}
    return str(state.get("request_id") or "")


def started_at(request: Request) -> float:
    state = request.scope.get("state") or {}
    return float(state.get("t0") or time.perf_counter())


MAX_BODY_BYTES = 32 * 1024 * 1024
# The deepest nesting a body may have. The parser takes 1,024 levels but the encoder writes 255,
# and a translator wraps a caller's JSON a few levels deeper still (a tool's schema, a tool
# result): a body is refused here rather than failing when it goes upstream or into a record.
# Real requests stay far below (a JSON schema rarely passes 20).
MAX_JSON_DEPTH = 128


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON containers nest deeper than `limit` (the outermost counts as 1). Level by
    level: ~60 µs for a 50 KB agent request with 760 containers, about two thirds of its parse."""
    level = [value] if type(value) is dict or type(value) is list else []
    for _ in range(limit):
        deeper: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            deeper += [c for c in children if type(c) is dict or type(c) is list]
        if not deeper:
            return False
        level = deeper
    return True


async def json_body(request: Request) -> Any:
    """The request's JSON body; 413 past the size limit, 400 when it does not parse or nests
    deeper than `MAX_JSON_DEPTH`."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The request body exceeds {MAX_BODY_BYTES // (1024 * 1024)} MiB.")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The request body exceeds {MAX_BODY_BYTES // (1024 * 1024)} MiB.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON: {exc.msg} at position {exc.pos}."
        ) from None
    # Nesting deeper than the limit needs more brackets than that: most bodies stop at the count.
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH and too_deep(body):
        raise InvalidRequest(f"The request body is nested deeper than {MAX_JSON_DEPTH} levels.")
    return body


def runtime_of(request: Request) -> Runtime:
    """The app's runtime, built on first use from the app's settings (or the environment)."""
    return runtime_for(request.app)


def runtime_for(app: Any) -> Runtime:
    rt: Runtime | None = getattr(app.state, "runtime", None)
    if rt is None:
        settings: Settings = getattr(app.state, "settings", None) or process_settings()
        rt = app.state.runtime = Runtime.build(settings)
        freeze_heap()  # a function's first request: what it built stays for the instance's life
    return rt


def error_response(request: Request, err: GatewayError) -> Response:
    request_id = request_id_of(request)
    anthropic = request.url.path.startswith("/v1/messages")
    body = render_anthropic(err, request_id) if anthropic else render_openai(err, request_id)
    return Response(body, status_code=status_of(err), headers=err.headers, media_type="application/json")


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(request, exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    loc = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
    return error_response(
        request, InvalidRequest(f"{loc or 'request'}: {first.get('msg', 'invalid')}", param=loc or None)
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        err: GatewayError = NotFound(f"No route for {request.method} {request.url.path}")
    else:
        err = error_for_status(exc.status_code, str(exc.detail))
    err.headers.update(exc.headers or {})
    return error_response(request, err)


# The errors every app renders in its envelope (a route called directly gets the same handlers).
EXCEPTION_HANDLERS: tuple[
    tuple[type[Exception], Callable[[Request, Exception], Awaitable[Response]]], ...
] = (
    (GatewayError, _gateway_error),
    (RequestValidationError, _validation_error),
    (StarletteHTTPException, _http_error),
)


class LazyApp:
    """A function module's ASGI app, built on first use.

    `gatewayz serve` imports every function module for its router and builds one app of them all;
    each module's own app (what Lambda's Mangum handler and Vercel serve) is built only when that
    module itself serves — a FastAPI app costs tens of milliseconds to assemble, and start-up
    time is a target. Attribute access (`app.state`, ...) builds it too.
    """

    def __init__(self, routers: Sequence[APIRouter], title: str) -> None:
        self._routers = routers
        self._title = title
        self._app: FastAPI | None = None

    @property
    def built(self) -> FastAPI:
        if self._app is None:
            self._app = create_app(self._routers, title=self._title)
            if os.environ.get("AWS_LWA_PORT") and os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
                # A streaming function on Lambda (uvicorn under the Web Adapter, no Mangum handler):
                # the same Powertools log line and EMF metrics, from the seam.
                from shared.observe.lambda_handler import observe_web_adapter

                observe_web_adapter(
                    os.environ.get("GATEWAYZ_ASGI_APP", "app").partition(":")[0].rpartition(".")[2]
                )
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.built(scope, receive, send)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.built, name)


def function_app(routers: Sequence[APIRouter], *, title: str) -> Any:
    """The app of one function module (see LazyApp)."""
    return LazyApp(routers, title)


class GatewayApp(FastAPI):
    """A FastAPI app whose OpenAPI document shows every route with its schemas, the plain fast
    routes included (shared.openapi)."""

    def openapi(self) -> dict[str, Any]:
        from shared.openapi.document import document  # with the first /openapi.json, never on start-up

        return document(self)


def create_app(
    routers: Sequence[APIRouter], *, settings: Settings | None = None, title: str = "Gatewayz"
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        rt: Runtime | None = getattr(app.state, "runtime", None)
        if rt is not None:
            await rt.close()

    # FastAPI's native OpenTelemetry checks the environment on every request: off unless asked for.
    otel = os.environ.get("GATEWAYZ_OTEL", "").lower() in ("1", "true", "yes")
    telemetry = (
        None if otel else TelemetryConfig(tracing=False, metrics=False, logs=False, operation_spans=False)
    )
    app = GatewayApp(title=title, lifespan=lifespan, docs_url="/docs", redoc_url=None, telemetry=telemetry)
    app.state.settings = settings
    app.state.runtime = None
    for router in routers:
        app.include_router(router)
    for kind, handler in EXCEPTION_HANDLERS:
        app.add_exception_handler(kind, handler)
    app.add_middleware(GatewayMiddleware, direct=direct_routes(routers))
    return app
