"""The dashboard over plain HTTP: the session cookie's flags, CSRF on state-changing forms, XSS
inertness, one user's pages closed to another, and that every page renders."""

from __future__ import annotations

import httpx

from tests.harness import GatewayServer
from tests.web.conftest import WebUser, csrf_of, make_user, page_text, sign_in, signed_in_client

PAGES = [
    "/dashboard",
    "/dashboard/keys",
    "/dashboard/credits",
    "/dashboard/usage",
    "/dashboard/models",
    "/dashboard/playground",
    "/dashboard/settings",
]


def api_keys(gateway: GatewayServer, key: str) -> list[dict]:
    answer = httpx.get(f"{gateway.url}/v1/keys", headers={"authorization": f"Bearer {key}"})
    assert answer.status_code == 200
    return answer.json()["data"]


def test_sign_in_sets_a_strict_http_only_secure_cookie(web_gateway: GatewayServer, web_user: WebUser) -> None:
    answer = sign_in(web_gateway, web_user.key)
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard"
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("gz_session="))
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= flags
    assert web_user.key not in cookie  # sealed, not the key in clear


def test_sign_in_without_its_token_is_refused(web_gateway: GatewayServer, web_user: WebUser) -> None:
    answer = httpx.post(f"{web_gateway.url}/sign-in", data={"api_key": web_user.key})
    assert answer.status_code == 403
    assert "gz_session" not in answer.headers.get("set-cookie", "")


def test_a_bad_key_does_not_sign_in(web_gateway: GatewayServer) -> None:
    answer = sign_in(web_gateway, "gw_live_not-a-key")
    assert answer.status_code == 401 and "gz_session" not in answer.headers.get("set-cookie", "")


def test_every_page_renders_and_no_page_opens_without_a_session(
    web_gateway: GatewayServer, web_user: WebUser
) -> None:
    client = signed_in_client(web_gateway, web_user.key)
    for path in PAGES:
        html = page_text(client, path)
        assert web_user.email in html, path
    for path in PAGES:
        answer = httpx.get(web_gateway.url + path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/sign-in"), path


def test_state_changing_forms_need_the_csrf_token(web_gateway: GatewayServer, web_user: WebUser) -> None:
    client = signed_in_client(web_gateway, web_user.key)
    before = api_keys(web_gateway, web_user.key)
    key_id = before[0]["id"]
    forged = [
        ("/dashboard/keys", {"name": "forged"}),
        (f"/dashboard/keys/{key_id}/revoke", {}),
        (f"/dashboard/keys/{key_id}/rotate", {"grace_seconds": "0"}),
        (f"/dashboard/keys/{key_id}/disabled", {"disabled": "true"}),
        ("/dashboard/settings/provider-keys", {"provider": "openai", "api_key": "sk-x"}),
        ("/dashboard/credits/redeem", {"code": "ANYCODE"}),
        ("/sign-out", {}),
    ]
    for path, data in forged:
        for token in (None, "0" * 64):
            body = dict(data) if token is None else {**data, "csrf_token": token}
            answer = client.post(path, data=body)
            assert answer.status_code == 403, (path, token, answer.status_code)
    # A token from the right session but a foreign Origin is refused too.
    token = csrf_of(page_text(client, "/dashboard/keys"))
    answer = client.post(
        "/dashboard/keys", data={"name": "x", "csrf_token": token}, headers={"origin": "https://evil.example"}
    )
    assert answer.status_code == 403
    assert api_keys(web_gateway, web_user.key) == before  # nothing changed
    assert client.get("/dashboard").status_code == 200  # still signed in


def test_a_playground_call_without_the_csrf_header_is_refused(
    web_gateway: GatewayServer, web_user: WebUser
) -> None:
    client = signed_in_client(web_gateway, web_user.key)
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert client.post("/dashboard/playground/chat", json=body).status_code == 403


def test_markup_in_a_key_name_is_shown_as_text(web_gateway: GatewayServer, web_user: WebUser) -> None:
    payload = '<script>alert("k")</script><img src=x onerror=alert(1)>'
    created = httpx.post(
        f"{web_gateway.url}/v1/keys",
        headers={"authorization": f"Bearer {web_user.key}"},
        json={"name": payload[:100], "allowed_models": ["openai/<b>*"][:0] or ["openai/*"]},
    )
    assert created.status_code == 200, created.text
    html = page_text(signed_in_client(web_gateway, web_user.key), "/dashboard/keys")
    assert payload[:100] not in html
    assert "&lt;script&gt;alert(&#34;k&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    models = page_text(signed_in_client(web_gateway, web_user.key), "/dashboard/models?q=%3Cscript%3E")
    assert "<script>" not in models.split("</header>", 1)[1]


def test_one_user_cannot_see_another_users_pages(web_gateway: GatewayServer, web_user: WebUser) -> None:
    other = make_user(web_gateway)
    httpx.post(
        f"{web_gateway.url}/v1/keys",
        headers={"authorization": f"Bearer {other.key}"},
        json={"name": "others-secret-project"},
    )
    client = signed_in_client(web_gateway, web_user.key)
    for path in PAGES:
        html = page_text(client, path)
        assert other.email not in html and "others-secret-project" not in html, path
    other_key = api_keys(web_gateway, other.key)[0]["id"]
    token = csrf_of(page_text(client, "/dashboard/keys"))
    answer = client.post(f"/dashboard/keys/{other_key}/revoke", data={"csrf_token": token})
    assert answer.status_code == 404
    assert not api_keys(web_gateway, other.key)[0]["revoked"]


def test_the_admin_pages_are_refused_to_a_user(web_gateway: GatewayServer, web_user: WebUser) -> None:
    client = signed_in_client(web_gateway, web_user.key)
    assert client.get("/dashboard/admin/users").status_code == 403
    assert client.get("/dashboard/admin/health").status_code == 403
    assert client.get("/dashboard/admin/audit").status_code == 403
    token = csrf_of(page_text(client, "/dashboard"))
    answer = client.post(
        f"/dashboard/admin/users/{web_user.id}/credits",
        data={"csrf_token": token, "amount": "100", "reason": "self-grant"},
    )
    assert answer.status_code == 403
    me = httpx.get(f"{web_gateway.url}/v1/me", headers={"authorization": f"Bearer {web_user.key}"}).json()
    assert me["balance"] == "10.00" or me["balance"].startswith("10")


def test_a_revoked_key_ends_its_session(web_gateway: GatewayServer, web_user: WebUser) -> None:
    client = signed_in_client(web_gateway, web_user.key)
    key_id = api_keys(web_gateway, web_user.key)[0]["id"]
    token = csrf_of(page_text(client, "/dashboard/keys"))
    answer = client.post(f"/dashboard/keys/{key_id}/revoke", data={"csrf_token": token})
    assert answer.status_code == 303
    answer = client.get("/dashboard")
    assert answer.status_code == 303 and answer.headers["location"] == "/sign-in?expired=1"
