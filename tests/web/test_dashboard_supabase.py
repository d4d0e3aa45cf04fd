"""Signing in to the dashboard with Supabase Auth (issue 19 §2): an email magic link or an OAuth
provider, through Supabase Auth's implicit flow, ending at the gateway's own `POST /auth/session`.

A gateway of its own (SQLite) with SUPABASE_URL and SUPABASE_ANON_KEY pointing at the fake
Supabase Auth server (tests/fakes/supabase_fake.py: GoTrue's otp, verify, authorize, JWKS and user
endpoints), and the real browser for the flows that need the page's script.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import ADMIN_KEY, gateway_settings, provision, start_gateway
from tests.fakes.server import FakeServer
from tests.fakes.supabase_fake import ANON_KEY, SupabaseFake
from tests.harness import GatewayServer
from tests.web.browser import serious_violations, shot
from tests.web.conftest import csrf_of, make_user

SECRET = "web-supabase-jwt-secret-0123456789-abcdefghij"


@pytest.fixture(scope="module")
def supabase() -> Iterator[SupabaseFake]:
    fake = SupabaseFake(SECRET).start()
    fake.add_signing_key("web-signing-key")
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def sb_gateway(
    fakes: dict[str, FakeServer], supabase: SupabaseFake, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    db = f"sqlite:///{tmp_path_factory.mktemp('web-supabase') / 'gatewayz.db'}"
    extra = {
        "SUPABASE_URL": supabase.url,
        "SUPABASE_ANON_KEY": ANON_KEY,
        "SUPABASE_OAUTH_PROVIDERS": "github",
    }
    provision(gateway_settings(fakes, db, **extra), "bootstrap@example.com", 0)  # migrates
    server = start_gateway(gateway_settings(fakes, db, **extra))
    yield server
    server.stop()


def presession(gateway: GatewayServer, path: str = "/sign-in") -> tuple[str, str]:
    """A page shown before sign-in: its CSRF token and its pre-session cookie."""
    answer = httpx.get(gateway.url + path)
    assert answer.status_code == 200, answer.text
    return csrf_of(answer.text), answer.cookies["gz_presession"]


def post(
    gateway: GatewayServer, path: str, data: dict[str, str], cookie: str | None, flow: str | None = None
) -> httpx.Response:
    cookies = [f"gz_presession={cookie}"] if cookie else []
    cookies += [f"gz_flow={flow}"] if flow else []
    headers = {"cookie": "; ".join(cookies)} if cookies else {}
    return httpx.post(gateway.url + path, data=data, headers=headers, timeout=20)


@dataclass
class Link:
    url: str
    flow: str  # the cookie that marks the browser which asked for it


def request_link(gateway: GatewayServer, supabase: SupabaseFake, email: str) -> Link:
    token, cookie = presession(gateway)
    sent = len(supabase.outbox)
    answer = post(gateway, "/sign-in/email", {"email": email, "csrf_token": token}, cookie)
    assert answer.status_code == 200, answer.text
    assert f"a sign-in link was sent to {email}" in answer.text
    assert len(supabase.outbox) == sent + 1
    return Link(supabase.outbox[-1]["link"], answer.cookies["gz_flow"])


def follow_link(link: Link) -> dict[str, str]:
    """What the browser gets by opening the link: the redirect to the callback, and its fragment."""
    answer = httpx.get(link.url, follow_redirects=False)
    assert answer.status_code == 303
    target = urlsplit(answer.headers["location"])
    return {"path": target.path, **{k: v[0] for k, v in parse_qs(target.fragment).items()}}


def keys_of(gateway: GatewayServer, key: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{gateway.url}/v1/keys", headers={"authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def test_the_magic_link_is_requested_from_supabase_auth_with_the_callback(
    sb_gateway: GatewayServer, supabase: SupabaseFake
) -> None:
    link = request_link(sb_gateway, supabase, "magic@example.com")
    otp = next(r for r in reversed(supabase.requests) if r.path == "/auth/v1/otp")
    assert otp.headers["apikey"] == ANON_KEY
    assert otp.body == {"email": "magic@example.com", "create_user": True, "data": {}}
    assert otp.query["redirect_to"] == f"{sb_gateway.url}/auth/callback"
    landed = follow_link(link)
    assert landed["path"] == "/auth/callback" and landed["token_type"] == "bearer"


def test_a_supabase_session_signs_in_with_a_key_that_ends_with_it(
    sb_gateway: GatewayServer, supabase: SupabaseFake
) -> None:
    link = request_link(sb_gateway, supabase, "session@example.com")
    landed = follow_link(link)
    token, cookie = presession(sb_gateway, "/auth/callback")
    data = {"access_token": landed["access_token"], "csrf_token": token}
    answer = post(sb_gateway, "/sign-in/supabase", data, cookie, link.flow)
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard", answer.text
    assert any(h.startswith('gz_flow=""') for h in answer.headers.get_list("set-cookie"))  # used once
    session = answer.cookies["gz_session"]
    client = httpx.Client(base_url=sb_gateway.url, cookies={"gz_session": session}, timeout=20)
    with client:
        home = client.get("/dashboard")
        assert home.status_code == 200 and "session@example.com" in home.text
        # The key the session holds: made for it, expiring with it, never admin.
        users = httpx.get(
            f"{sb_gateway.url}/admin/users?limit=100", headers={"authorization": f"Bearer {ADMIN_KEY}"}
        ).json()["data"]
        user = next(u for u in users if u["email"] == "session@example.com")
        detail = httpx.get(
            f"{sb_gateway.url}/admin/users/{user['id']}", headers={"authorization": f"Bearer {ADMIN_KEY}"}
        ).json()
        (key,) = detail["keys"]
        assert key["name"] == "dashboard sign-in" and "admin" not in key["scopes"]
        left = datetime.fromisoformat(key["expires_at"].replace("Z", "+00:00")) - datetime.now(UTC)
        assert 11 * 3600 < left.total_seconds() <= 12 * 3600 + 60
        # Sign-out revokes it.
        csrf = csrf_of(home.text)
        out = client.post("/sign-out", data={"csrf_token": csrf})
        assert out.status_code == 303
    detail = httpx.get(
        f"{sb_gateway.url}/admin/users/{user['id']}", headers={"authorization": f"Bearer {ADMIN_KEY}"}
    ).json()
    assert detail["keys"][0]["revoked"] is True


def test_a_bad_token_or_a_missing_csrf_token_signs_nobody_in(
    sb_gateway: GatewayServer, supabase: SupabaseFake
) -> None:
    token, cookie = presession(sb_gateway, "/auth/callback")
    forged = supabase.sign_hs256(supabase.claims(email="forged@example.com"), secret="x" * 40)
    flow = request_link(sb_gateway, supabase, "forger@example.com").flow
    answer = post(
        sb_gateway, "/sign-in/supabase", {"access_token": forged, "csrf_token": token}, cookie, flow
    )
    assert answer.status_code == 401 and "gz_session" not in answer.headers.get("set-cookie", "")
    assert "does not verify" in answer.text or "rejected" in answer.text
    # A real session posted without the page's token (login CSRF) is refused, and so is a link
    # requested without it.
    link = request_link(sb_gateway, supabase, "csrf@example.com")
    landed = follow_link(link)
    answer = post(
        sb_gateway, "/sign-in/supabase", {"access_token": landed["access_token"]}, cookie, link.flow
    )
    assert answer.status_code == 403 and "gz_session" not in answer.headers.get("set-cookie", "")
    sent = len(supabase.outbox)
    answer = post(sb_gateway, "/sign-in/email", {"email": "csrf@example.com", "csrf_token": "0" * 64}, cookie)
    assert answer.status_code == 403 and len(supabase.outbox) == sent


def test_supabase_refusals_are_shown_on_the_sign_in_page(
    sb_gateway: GatewayServer, supabase: SupabaseFake
) -> None:
    supabase.otp_window = 60
    try:
        request_link(sb_gateway, supabase, "twice@example.com")
        token, cookie = presession(sb_gateway)
        answer = post(
            sb_gateway, "/sign-in/email", {"email": "twice@example.com", "csrf_token": token}, cookie
        )
        assert answer.status_code == 429
        assert "you can only request this after 60 seconds" in answer.text
    finally:
        supabase.otp_window = 0
    answer = post(sb_gateway, "/sign-in/email", {"email": "not an address", "csrf_token": token}, cookie)
    assert answer.status_code == 400 and "Enter your email address" in answer.text
    # An administrator's account is never signed in by Supabase (POST /auth/session's 403).
    admin = make_user(sb_gateway, role="admin")
    link = request_link(sb_gateway, supabase, admin.email)
    landed = follow_link(link)
    token, cookie = presession(sb_gateway, "/auth/callback")
    data = {"access_token": landed["access_token"], "csrf_token": token}
    answer = post(sb_gateway, "/sign-in/supabase", data, cookie, link.flow)
    assert answer.status_code == 403 and "administrator" in answer.text
    assert "gz_session" not in answer.headers.get("set-cookie", "")


def test_a_session_sent_by_someone_else_signs_nobody_in(
    sb_gateway: GatewayServer, supabase: SupabaseFake
) -> None:
    """Login CSRF: an attacker's own session, in a callback link sent to a victim whose browser
    never started a sign-in, is refused before anything is exchanged."""
    landed = follow_link(request_link(sb_gateway, supabase, "attacker@example.com"))
    token, cookie = presession(sb_gateway, "/auth/callback")  # the victim's browser, on our page
    answer = post(
        sb_gateway, "/sign-in/supabase", {"access_token": landed["access_token"], "csrf_token": token}, cookie
    )
    assert answer.status_code == 403 and "not started in this browser" in answer.text
    assert "gz_session" not in answer.headers.get("set-cookie", "")
    users = httpx.get(
        f"{sb_gateway.url}/admin/users?limit=100", headers={"authorization": f"Bearer {ADMIN_KEY}"}
    ).json()["data"]
    assert all(u["email"] != "attacker@example.com" for u in users)


def test_without_supabase_there_is_no_email_sign_in(web_gateway: GatewayServer) -> None:
    html = httpx.get(f"{web_gateway.url}/sign-in").text
    assert 'action="/sign-in/email"' not in html and "Continue with" not in html
    assert httpx.get(f"{web_gateway.url}/auth/callback").status_code == 404
    assert httpx.get(f"{web_gateway.url}/sign-in/oauth/github").status_code == 404
    token, cookie = presession(web_gateway)
    answer = post(web_gateway, "/sign-in/email", {"email": "a@example.com", "csrf_token": token}, cookie)
    assert answer.status_code == 404


# --- in the browser ------------------------------------------------------------------------------


def test_a_magic_link_signs_in_in_the_browser(
    page: Any, sb_gateway: GatewayServer, supabase: SupabaseFake
) -> None:
    page.goto(f"{sb_gateway.url}/sign-in")
    shot(page, "sign-in-supabase")
    assert not serious_violations(page)
    page.get_by_label("Email address").fill("browser@example.com")
    page.get_by_role("button", name="Email me a sign-in link").click()
    assert "a sign-in link was sent to browser@example.com" in page.get_by_role("status").inner_text()
    link = supabase.outbox[-1]["link"]
    seen: list[str] = []
    page.on("framenavigated", lambda frame: seen.append(frame.url))
    page.goto(link)
    page.wait_for_url(f"{sb_gateway.url}/dashboard")
    assert "browser@example.com" in page.locator(".who").inner_text()
    cookie = next(c for c in page.context.cookies() if c["name"] == "gz_session")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    # The callback page took the access token out of the address bar (and so of the history).
    callback = [url for url in seen if "/auth/callback" in url]
    assert "access_token=" in callback[0] and callback[-1] == f"{sb_gateway.url}/auth/callback"
    # A used link lands on the callback with Supabase's error, shown as text.
    page.context.clear_cookies()
    page.goto(link)
    page.wait_for_url(re.compile(r"/auth/callback$"))
    alert = page.locator("#callback-status")
    assert alert.inner_text() == "Email link is invalid or has expired Request a new link."
    shot(page, "auth-callback-expired")
    assert not serious_violations(page)


def test_an_oauth_provider_signs_in_in_the_browser(
    page: Any, sb_gateway: GatewayServer, supabase: SupabaseFake
) -> None:
    page.goto(f"{sb_gateway.url}/sign-in")
    page.get_by_role("link", name="Continue with Github").click()  # via /sign-in/oauth/github
    page.wait_for_url(f"{sb_gateway.url}/dashboard")
    assert supabase.oauth_email in page.locator(".who").inner_text()
    authorize = next(r for r in reversed(supabase.requests) if r.path == "/auth/v1/authorize")
    assert authorize.query == {"provider": "github", "redirect_to": f"{sb_gateway.url}/auth/callback"}


def test_a_session_key_expiry_in_the_past_is_refused_and_creates_nothing(
    sb_gateway: GatewayServer, supabase: SupabaseFake
) -> None:
    token = supabase.sign(supabase.claims(email="past@example.com"))
    body = {"access_token": token, "create_key": True, "expires_at": "2001-01-01T00:00:00Z"}
    answer = httpx.post(f"{sb_gateway.url}/auth/session", json=body, timeout=20)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "expires_at"
    users = httpx.get(
        f"{sb_gateway.url}/admin/users?limit=100", headers={"authorization": f"Bearer {ADMIN_KEY}"}
    ).json()["data"]
    assert all(u["email"] != "past@example.com" for u in users)


def test_supabase_auth_out_of_reach_is_a_503_that_starts_nothing(
    fakes: dict[str, FakeServer], tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = f"sqlite:///{tmp_path / 'gatewayz.db'}"
    extra = {"SUPABASE_URL": f"http://127.0.0.1:{port}", "SUPABASE_ANON_KEY": ANON_KEY}
    provision(gateway_settings(fakes, db, **extra), "bootstrap@example.com", 0)
    gateway = start_gateway(gateway_settings(fakes, db, **extra))
    try:
        token, cookie = presession(gateway)
        answer = post(gateway, "/sign-in/email", {"email": "down@example.com", "csrf_token": token}, cookie)
        assert answer.status_code == 503 and "unavailable right now" in answer.text
        assert "gz_flow" not in answer.headers.get("set-cookie", "")
    finally:
        gateway.stop()
