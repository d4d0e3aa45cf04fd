"""What every dashboard page shares: the signed-in context, the CSRF check, the way out.

A page handler is wrapped in `web_page`: it may raise `Leave(response)` anywhere (no session: to
the sign-in page; a failed CSRF check: 403) and the wrapper answers with that response.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from shared.app import runtime_of
from shared.web import gateway
from shared.web.render import PAGE_HEADERS, page, read_form
from shared.web.session import (
    CSRF_FIELD,
    CSRF_HEADER,
    PRESESSION_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Sealer,
    Session,
)

P = ParamSpec("P")


class Leave(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__("leave the page")
        self.response = response


def web_page(handler: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
    @functools.wraps(handler)
    async def wrapped(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return await handler(*args, **kwargs)
        except Leave as leave:
            return leave.response

    return wrapped


def sealer(request: Request) -> Sealer:
    rt = runtime_of(request)
    found: Sealer | None = getattr(rt, "_web_sealer", None)
    if found is None:
        found = Sealer(rt.keys.secret)
        rt._web_sealer = found  # type: ignore[attr-defined]  # one per runtime (its secret)
    return found


def stripe_configured(request: Request) -> bool:
    """Top-up appears only where Stripe Checkout is configured (the payments settings' secret key)."""
    return bool(runtime_of(request).settings.payments.secret_key)


@dataclass
class Ctx:
    """A signed-in page: the request, the session and the caller's profile (`GET /v1/me`)."""

    request: Request
    session: Session
    me: dict[str, Any]
    csrf: str

    @property
    def key(self) -> str:
        return self.session.api_key

    @property
    def is_admin(self) -> bool:
        return self.me.get("role") == "admin"

    async def api(self, method: str, path: str, **kwargs: Any) -> gateway.Answer:
        return await gateway.call(self.request, method, path, key=self.key, **kwargs)

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        return page(
            template,
            status=status,
            me=self.me,
            csrf=self.csrf,
            is_admin=self.is_admin,
            path=self.request.url.path,
            stripe=stripe_configured(self.request),
            **context,
        )


def to_sign_in(message: str | None = None) -> Response:
    target = "/sign-in" + ("?expired=1" if message else "")
    response = RedirectResponse(target, status_code=303, headers=dict(PAGE_HEADERS))
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


async def signed_in(request: Request) -> Ctx:
    """The page's context, or `Leave` to the sign-in page when there is no live session (the
    key is checked again by `GET /v1/me`: a revoked key or suspended user ends the session)."""
    seal = sealer(request)
    session = seal.open(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise Leave(to_sign_in("expired" if SESSION_COOKIE in request.cookies else None))
    answer = await gateway.call(request, "GET", "/v1/me", key=session.api_key)
    if answer.status in (401, 403) or not isinstance(answer.data, dict):
        raise Leave(to_sign_in("expired"))
    if not answer.ok:
        raise Leave(error_page(answer.status, answer.message))
    return Ctx(request, session, answer.data, seal.csrf(session.sid))


def same_origin(request: Request) -> bool:
    """A state-changing request must come from the dashboard's own pages: its `Origin` (or, when
    a browser sends none, its `Referer`) names this host. A second line behind the token."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return True  # no browser omits both on a cross-site POST; the token still decides
    return urlsplit(source).netloc == request.headers.get("host", "")


async def checked_form(ctx: Ctx) -> dict[str, list[str]]:
    """The form of a state-changing request, once its CSRF token has been checked."""
    form = await read_form(ctx.request)
    values = form.get(CSRF_FIELD)
    token = values[0] if values else ctx.request.headers.get(CSRF_HEADER)
    if not same_origin(ctx.request) or not sealer(ctx.request).csrf_ok(ctx.session.sid, token):
        raise Leave(csrf_refused())
    return form


def csrf_refused() -> Response:
    return error_page(
        403,
        "This form could not be verified (a missing or stale security token). Reload the page and try again.",
    )


def error_page(status: int, message: str) -> Response:
    return page(
        "error.html",
        status=status,
        status_code=status,
        message=message,
        me=None,
        csrf="",
        is_admin=False,
        path="",
    )


def session_cookie_args() -> dict[str, Any]:
    return {"path": "/", "secure": True, "httponly": True, "samesite": "strict"}


def set_session(response: Response, sealed: str) -> None:
    response.set_cookie(SESSION_COOKIE, sealed, max_age=SESSION_SECONDS, **session_cookie_args())
    response.delete_cookie(PRESESSION_COOKIE, **session_cookie_args())
