"""The dashboard in a real browser: Playwright for Python driving Debian's headless Chromium
(one browser for the module), against the local server's app. Screenshots of each page are saved
under .gatewayz/test-artifacts/web/ (GATEWAYZ_TEST_ARTIFACTS overrides); axe-core (vendored in
tests/web/vendor) must find no serious or critical violation on any page."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import httpx

from tests.conftest import ADMIN_KEY
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply
from tests.harness import GatewayServer
from tests.web.browser import serious_violations, shot, sign_in
from tests.web.conftest import WebUser, make_user


def balance(gateway: GatewayServer, key: str) -> Decimal:
    me = httpx.get(f"{gateway.url}/v1/me", headers={"authorization": f"Bearer {key}"}).json()
    return Decimal(me["balance"])


def test_a_user_signs_in_manages_a_key_and_chats(
    page: Any, web_gateway: GatewayServer, web_user: WebUser, openai_fake: OpenAIFake
) -> None:
    sign_in(page, web_gateway, web_user.key)
    assert page.locator("#balance").inner_text() == "$10.0000"
    cookie = next(c for c in page.context.cookies() if c["name"] == "gz_session")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # no script reads the session

    # Create a restricted key: its secret is shown once, with a copy button.
    page.get_by_role("link", name="Keys").click()
    page.get_by_label("Name", exact=True).fill("ci <b>bot</b>")
    page.get_by_label("inference", exact=True).check()
    page.get_by_label("Allowed models (globs, one a line)").fill("openai/*")
    page.get_by_label("per day", exact=True).fill("1.50")
    page.get_by_label("requests per minute", exact=True).fill("10")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("The new key").input_value()
    assert re.fullmatch(r"gw_live_\S+", secret)
    assert page.get_by_role("button", name="Copy").is_visible()
    shot(page, "keys-new-secret")
    row = page.locator("tr", has_text="ci <b>bot</b>")
    assert "openai/*" in row.inner_text() and "day ≤ $1.50" in row.inner_text()
    page.goto(f"{web_gateway.url}/dashboard/keys")
    assert secret not in page.content()  # once only
    # The new key works, with its restrictions.
    assert (
        httpx.get(f"{web_gateway.url}/v1/models", headers={"authorization": f"Bearer {secret}"}).status_code
        == 200
    )

    # Rotate it, then revoke the new secret's key.
    page.get_by_role("button", name="Rotate ci <b>bot</b>").click()
    rotated = page.get_by_label("The new key").input_value()
    assert rotated != secret and rotated.startswith("gw_live_")
    page.get_by_role("button", name="Revoke ci <b>bot</b>").first.click()
    page.wait_for_url(re.compile(r"done=revoked"))
    assert page.get_by_role("status").inner_text() == "The key was revoked."

    # The playground streams an answer from the fake upstream; the balance pays for it.
    openai_fake.script("gpt-4o-mini", Reply(text="<img src=x onerror=alert(1)> streamed answer", chunks=4))
    before = balance(web_gateway, web_user.key)
    page.get_by_role("link", name="Playground").click()
    page.get_by_label("Model").fill("openai/gpt-4o-mini")
    page.get_by_label("Message").fill("Say <script>alert(2)</script> hi")
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".conversation li").nth(1).locator(".content")
    page.wait_for_function("() => document.getElementById('answer-meta').textContent.includes('Cost')")
    assert answer.inner_text() == "<img src=x onerror=alert(1)> streamed answer"
    assert page.locator(".conversation img, .conversation script").count() == 0  # inert text
    assert "openai:200" in page.locator("#answer-meta").inner_text()
    shot(page, "playground-answer")
    after = balance(web_gateway, web_user.key)
    assert after < before
    page.get_by_role("link", name="Overview").click()
    assert page.locator("#balance").inner_text() == f"${after.quantize(Decimal('0.0001')):,}"

    # Sign out: the session is gone.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{web_gateway.url}/sign-in")
    page.goto(f"{web_gateway.url}/dashboard")
    assert page.url.startswith(f"{web_gateway.url}/sign-in")


def test_every_page_is_accessible_and_screenshotted(page: Any, web_gateway: GatewayServer) -> None:
    admin = make_user(web_gateway, role="admin")
    chat = httpx.post(  # something to chart: usage by model, provider and key, spend per key
        f"{web_gateway.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {admin.key}"},
        json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        timeout=20,
    )
    assert chat.status_code == 200, chat.text
    sign_in(page, web_gateway, admin.key)
    pages = [
        "",
        "/keys",
        "/credits",
        "/usage",
        "/models",
        "/playground",
        "/settings",
        "/admin/users",
        "/admin/audit",
        "/admin/health",
    ]
    found = {}
    for suffix in pages:
        page.goto(f"{web_gateway.url}/dashboard{suffix}")
        name = suffix.strip("/").replace("/", "-") or "overview"
        shot(page, name)
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            violations = serious_violations(page)
            if violations:
                found[f"{name} ({scheme})"] = violations
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto(f"{web_gateway.url}/dashboard/keys")
    shot(page, "keys-phone")
    found.update({"keys (phone)": v} for v in [serious_violations(page)] if v)
    page.context.clear_cookies()
    page.goto(f"{web_gateway.url}/sign-in")
    shot(page, "sign-in")
    if v := serious_violations(page):
        found["sign-in"] = v
    assert not found, found


def test_the_models_page_filters_as_you_type(
    page: Any, web_gateway: GatewayServer, web_user: WebUser
) -> None:
    sign_in(page, web_gateway, web_user.key)
    page.goto(f"{web_gateway.url}/dashboard/models")
    total = page.locator("#models tbody tr").count()
    page.get_by_label("Search").fill("claude")
    page.wait_for_function(f"() => document.querySelectorAll('#models tbody tr').length < {total}")
    ids = page.locator("#models tbody tr td:first-child code").all_inner_texts()
    assert ids and all("claude" in i for i in ids)


def test_the_ledger_pages_and_an_admin_grant_reaches_the_user(
    page: Any, browser: Any, web_gateway: GatewayServer, web_user: WebUser
) -> None:
    for i in range(22):  # more than one ledger page
        answer = httpx.post(
            f"{web_gateway.url}/admin/users/{web_user.id}/credits",
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
            json={"amount": "0.01", "reason": f"seed {i}"},
        )
        assert answer.status_code == 200
    admin = make_user(web_gateway, role="admin")
    sign_in(page, web_gateway, admin.key)
    page.goto(f"{web_gateway.url}/dashboard/admin/users?q={web_user.email}")
    page.get_by_label(f"Amount in USD for {web_user.email}").fill("5")
    page.get_by_label(f"Reason for {web_user.email}").fill("welcome <gift>")
    page.get_by_role("button", name=f"Grant credits to {web_user.email}").click()
    page.wait_for_url(re.compile(r"done=credited"))

    user_context = browser.new_context()
    user_page = user_context.new_page()
    try:
        sign_in(user_page, web_gateway, web_user.key)
        assert user_page.locator("#balance").inner_text() == "$15.2200"
        user_page.get_by_role("link", name="Credits").click()
        assert user_page.locator("tbody tr").first.inner_text().count("welcome <gift>") == 1
        user_page.get_by_role("link", name="Older").click()
        assert "seed 0" in user_page.locator("tbody").inner_text()
        user_page.get_by_role("link", name="Newest").click()
        assert "welcome <gift>" in user_page.locator("tbody").inner_text()
        # A user is refused the operators' pages.
        response = user_page.goto(f"{web_gateway.url}/dashboard/admin/users")
        assert response.status == 403
    finally:
        user_context.close()


def test_keyboard_alone_reaches_the_content_and_the_navigation(
    page: Any, web_gateway: GatewayServer, web_user: WebUser
) -> None:
    page.goto(f"{web_gateway.url}/sign-in")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "api_key"
    page.keyboard.type(web_user.key)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{web_gateway.url}/dashboard")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # the skip link
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Shift+Tab")
    visited = []
    for _ in range(12):
        page.keyboard.press("Tab")
        visited.append(page.evaluate("document.activeElement.textContent.trim()"))
    assert "Keys" in visited
    while page.evaluate("document.activeElement.textContent.trim()") != "Keys":
        page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{web_gateway.url}/dashboard/keys")
