"""Sign-in and out (SPEC §5): pasting an API key with the `read` scope, or, where Supabase Auth is
configured (`SUPABASE_URL` and `SUPABASE_ANON_KEY`), an email magic link or an OAuth provider.

Supabase sign-in uses Supabase Auth's implicit flow: the magic link (requested here, server side,
with `POST {SUPABASE_URL}/auth/v1/otp`) or the OAuth round trip (`/auth/v1/authorize`) ends on
`/auth/callback` with the session in the URL fragment, which the browser never sends to a server.
The callback page's script (static/app.js: no inline script under the CSP) takes the access token
out of the address bar and posts it with the page's CSRF token to `/sign-in/supabase`, which
exchanges it at the gateway's own `POST /auth/session` (no back door) for a key made for this
session: it expires with the session and is revoked at sign-out.
https://supabase.com/docs/guides/auth/sessions/implicit-flow

A session is taken only in the browser that started the sign-in (a `gz_flow` cookie, set when the
link is requested or the OAuth round trip begins, for 15 minutes, used once): otherwise anyone
could send a victim a callback link carrying the sender's own session and sign them in to the
sender's account (login CSRF), where they might save provider keys or pay a top-up.

Before sign-in the forms' CSRF tokens are bound to a random pre-session cookie (login CSRF).
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from shared.accounts.identity import AuthNotConfigured, verifier_of
from shared.app import runtime_of
from shared.web import gateway
from shared.web.base import (
    checked_form,
    error_page,
    same_origin,
    sealer,
    set_session,
    signed_in,
    web_page,
)
from shared.web.pages import see_other
from shared.web.render import field, page, read_form
from shared.web.session import CSRF_FIELD, PRESESSION_COOKIE, SESSION_COOKIE, SESSION_SECONDS

router = APIRouter(include_in_schema=False)
PROVIDER = re.compile(r"^[a-z0-9_-]{1,32}$")
EMAIL = re.compile(r"^[^@\s]{1,200}@[^@\s]{1,200}$")
SESSION_KEY_NAME = "dashboard sign-in"
FLOW_COOKIE = "gz_flow"
FLOW_SECONDS = 15 * 60


# --- configuration -----------------------------------------------------------------------------


def supabase_auth(request: Request) -> tuple[str, str] | None:
    """Supabase Auth's URL and API key where the dashboard may use it (both set), else None."""
    try:
        config = verifier_of(runtime_of(request)).config
    except AuthNotConfigured:
        return None
    return (config.url, config.api_key) if config.url and config.api_key else None


def oauth_providers(request: Request) -> list[str]:
    """The OAuth providers enabled in the Supabase project that the operator lists in
    `SUPABASE_OAUTH_PROVIDERS` (e.g. `github,google`)."""
    raw = runtime_of(request).settings.env.get("SUPABASE_OAUTH_PROVIDERS") or ""
    return [p for p in (part.strip().lower() for part in raw.split(",")) if PROVIDER.match(p)]


def callback_url(request: Request) -> str:
    """Where Supabase Auth sends the browser back: `GATEWAYZ_WEB_URL` (the dashboard's public
    origin, which must be in the project's redirect allow list) or this request's own origin."""
    base = runtime_of(request).settings.env.get("GATEWAYZ_WEB_URL") or str(request.base_url)
    return base.rstrip("/") + "/auth/callback"


# --- the pre-session (login CSRF) --------------------------------------------------------------


def presession_page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    """A page shown before sign-in, its forms' token bound to the pre-session cookie (set here
    when the browser has none: a magic link opened from a mail client sends no Strict cookie)."""
    presession = request.cookies.get(PRESESSION_COOKIE) or ""
    fresh = not re.fullmatch(r"[0-9a-f]{32}", presession)
    if fresh:
        presession = os.urandom(16).hex()
    response = page(
        template,
        status=status,
        me=None,
        is_admin=False,
        path=request.url.path,
        csrf=sealer(request).csrf("pre:" + presession),
        **context,
    )
    if fresh:
        response.set_cookie(
            PRESESSION_COOKIE, presession, path="/", secure=True, httponly=True, samesite="strict"
        )
    return response


def presession_ok(request: Request, form: dict[str, list[str]]) -> bool:
    presession = request.cookies.get(PRESESSION_COOKIE)
    token = field(form, CSRF_FIELD)
    return same_origin(request) and sealer(request).csrf_ok(presession and "pre:" + presession, token)


def sign_in_page(
    request: Request, status: int = 200, error: str | None = None, notice: str | None = None
) -> Response:
    supabase = supabase_auth(request)
    oauth = [(p, f"/sign-in/oauth/{p}") for p in oauth_providers(request)] if supabase else []
    return presession_page(
        request,
        "sign_in.html",
        status=status,
        error=error,
        notice=notice,
        expired=request.query_params.get("expired") == "1",
        supabase=supabase is not None,
        oauth=oauth,
    )


def signed_in_as(request: Request, api_key: str, minted: str | None = None) -> Response:
    sealed, _ = sealer(request).seal(api_key, minted=minted)
    response = see_other("/dashboard")
    set_session(response, sealed)
    return response


# --- with an API key ---------------------------------------------------------------------------


@router.get("/")
async def home(request: Request) -> Response:
    live = sealer(request).open(request.cookies.get(SESSION_COOKIE)) is not None
    return see_other("/dashboard" if live else "/sign-in")


@router.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    if sealer(request).open(request.cookies.get(SESSION_COOKIE)) is not None:
        return see_other("/dashboard")
    return sign_in_page(request)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await read_form(request)
    if not presession_ok(request, form):
        return error_page(403, "This sign-in form could not be verified. Reload the page and try again.")
    key = field(form, "api_key")
    if not key:
        return sign_in_page(request, 400, "Paste an API key.")
    answer = await gateway.call(request, "GET", "/v1/me", key=key)
    if not answer.ok:
        hint = " The key needs the read scope." if answer.status == 403 else ""
        return sign_in_page(request, answer.status if answer.status < 500 else 503, answer.message + hint)
    return signed_in_as(request, key)


@router.post("/sign-out")
@web_page
async def sign_out(request: Request) -> Response:
    ctx = await signed_in(request)
    await checked_form(ctx)
    if ctx.session.minted:  # the key made for this session ends with it
        await ctx.api("DELETE", f"/v1/keys/{ctx.session.minted}")
    response = see_other("/sign-in")
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


# --- with Supabase Auth ------------------------------------------------------------------------


def flow_started(response: Response) -> Response:
    """Marks this browser as the one that started a Supabase sign-in (see the module's notes)."""
    response.set_cookie(
        FLOW_COOKIE,
        os.urandom(16).hex(),
        max_age=FLOW_SECONDS,
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    return response


def flow_ended(response: Response) -> Response:
    response.delete_cookie(FLOW_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


async def send_magic_link(supabase: tuple[str, str], email: str, redirect_to: str) -> tuple[int, str]:
    """GoTrue's `POST /auth/v1/otp` (what supabase-js `signInWithOtp` sends): the status, and
    GoTrue's message when it refused. https://supabase.com/docs/reference/api/auth-v1-otp"""
    import httpx  # a sign-in link is rare: no client kept for it

    url, api_key = supabase
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(
                f"{url}/auth/v1/otp",
                params={"redirect_to": redirect_to},
                headers={"apikey": api_key, "authorization": f"Bearer {api_key}"},
                json={"email": email, "create_user": True, "data": {}},
            )
    except httpx.HTTPError:
        return 503, ""
    try:
        body = answer.json()
    except ValueError:
        body = None
    message = ""
    if isinstance(body, dict):
        found = body.get("msg") or body.get("message") or body.get("error_description")
        message = str(found)[:300] if found else ""
    return answer.status_code, message


@router.post("/sign-in/email")
async def sign_in_email(request: Request) -> Response:
    form = await read_form(request)
    if not presession_ok(request, form):
        return error_page(403, "This sign-in form could not be verified. Reload the page and try again.")
    supabase = supabase_auth(request)
    if supabase is None:
        return error_page(404, "Email sign-in is not available on this deployment.")
    email = field(form, "email")
    if not EMAIL.match(email):
        return sign_in_page(request, 400, "Enter your email address.")
    status, message = await send_magic_link(supabase, email, callback_url(request))
    if status == 200:
        notice = f"Check your email: a sign-in link was sent to {email}. Open it in this browser."
        return flow_started(sign_in_page(request, notice=notice))
    if 400 <= status < 500 and status not in (401, 403):  # the address, or too many links: say so
        return sign_in_page(request, status, message or "Supabase Auth refused this address.")
    # Its API key refused (a deployment fault) or unreachable: the user can only retry later.
    return sign_in_page(request, 503, "Email sign-in is unavailable right now; try again later.")


@router.get("/sign-in/oauth/{provider}")
async def sign_in_oauth(request: Request, provider: str) -> Response:
    """The OAuth round trip through Supabase Auth (`GET /auth/v1/authorize`), from this browser."""
    supabase = supabase_auth(request)
    if supabase is None or provider not in oauth_providers(request):
        return error_page(404, "This sign-in is not available on this deployment.")
    query = urlencode({"provider": provider, "redirect_to": callback_url(request)})
    return flow_started(see_other(f"{supabase[0]}/auth/v1/authorize?{query}"))


@router.get("/auth/callback")
async def auth_callback(request: Request) -> Response:
    """Where Supabase Auth returns: the session is in the fragment, which only the page's script
    reads; it posts the access token to `/sign-in/supabase`."""
    if supabase_auth(request) is None:
        return error_page(404, "Supabase sign-in is not available on this deployment.")
    return presession_page(request, "auth_callback.html")


@router.post("/sign-in/supabase")
async def sign_in_supabase(request: Request) -> Response:
    form = await read_form(request)
    if not presession_ok(request, form):
        return error_page(403, "This sign-in form could not be verified. Reload the page and try again.")
    token = field(form, "access_token")
    if not token:
        return sign_in_page(request, 400, "The sign-in link carried no session. Request a new link.")
    if not re.fullmatch(r"[0-9a-f]{32}", request.cookies.get(FLOW_COOKIE) or ""):
        return sign_in_page(
            request,
            403,
            "This sign-in was not started in this browser (or took over 15 minutes). Sign in again "
            "here, and open the email's link in the browser where you asked for it.",
        )
    ends = datetime.fromtimestamp(time.time() + SESSION_SECONDS, UTC).isoformat()
    body = {"access_token": token, "create_key": True, "key_name": SESSION_KEY_NAME, "expires_at": ends}
    answer = await gateway.call(request, "POST", "/auth/session", key=None, json=body)
    key = answer.data.get("api_key") if answer.ok and isinstance(answer.data, dict) else None
    if not isinstance(key, dict) or not isinstance(key.get("key"), str):
        status = answer.status if not answer.ok and answer.status < 500 else 503
        message = answer.message if not answer.ok else "No key was issued."
        return flow_ended(sign_in_page(request, status, message))
    return flow_ended(signed_in_as(request, key["key"], minted=str(key["id"])))
