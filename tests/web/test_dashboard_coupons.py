"""Coupon redemption on the credits page (issue 19 §3), through `POST /v1/billing/redeem`: the
credits reach the balance with their ledger row, the API's refusals are the page's message and
change nothing, and the form needs its CSRF token."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

import httpx

from tests.conftest import ADMIN_KEY
from tests.harness import GatewayServer
from tests.web.browser import serious_violations, shot, sign_in
from tests.web.conftest import WebUser, csrf_of, make_user, page_text, signed_in_client


def coupon(gateway: GatewayServer, credits: str = "2.50", **extra: Any) -> str:
    code = f"WEB{os.urandom(4).hex().upper()}"
    answer = httpx.post(
        f"{gateway.url}/admin/coupons",
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        json={"code": code, "kind": "credits", "credits": credits, **extra},
    )
    assert answer.status_code == 200, answer.text
    return code


def balance(gateway: GatewayServer, key: str) -> Decimal:
    me = httpx.get(f"{gateway.url}/v1/me", headers={"authorization": f"Bearer {key}"}).json()
    return Decimal(me["balance"])


def test_a_coupon_adds_its_credits_once(web_gateway: GatewayServer, web_user: WebUser) -> None:
    code = coupon(web_gateway)
    client = signed_in_client(web_gateway, web_user.key)
    token = csrf_of(page_text(client, "/dashboard/credits"))
    answer = client.post("/dashboard/credits/redeem", data={"csrf_token": token, "code": code.lower()})
    assert answer.status_code == 200, answer.text
    assert f"Coupon {code} redeemed: $2.50 added to your balance." in answer.text
    assert balance(web_gateway, web_user.key) == Decimal("12.50")
    assert f"coupon {code}" in answer.text  # its ledger row, on the page that answered
    again = client.post("/dashboard/credits/redeem", data={"csrf_token": token, "code": code})
    assert again.status_code == 409 and "cannot be redeemed on this account" in again.text
    unknown = client.post("/dashboard/credits/redeem", data={"csrf_token": token, "code": "NOSUCHCODE"})
    assert unknown.status_code == 404 and "No coupon NOSUCHCODE" in unknown.text
    bad = client.post("/dashboard/credits/redeem", data={"csrf_token": token, "code": "<b>x</b>"})
    assert bad.status_code == 400 and "<b>x</b>" not in bad.text
    assert balance(web_gateway, web_user.key) == Decimal("12.50")


def test_a_coupon_form_without_its_token_redeems_nothing(
    web_gateway: GatewayServer, web_user: WebUser
) -> None:
    code = coupon(web_gateway)
    client = signed_in_client(web_gateway, web_user.key)
    answer = client.post("/dashboard/credits/redeem", data={"code": code})
    assert answer.status_code == 403
    assert balance(web_gateway, web_user.key) == Decimal("10")
    token = csrf_of(page_text(client, "/dashboard/credits"))  # the coupon is still there to redeem
    assert (
        client.post("/dashboard/credits/redeem", data={"csrf_token": token, "code": code}).status_code == 200
    )


def test_a_coupon_is_redeemed_in_the_browser(
    page: Any, web_gateway: GatewayServer, web_user: WebUser
) -> None:
    code = coupon(web_gateway, "1")
    sign_in(page, web_gateway, web_user.key)
    page.get_by_role("link", name="Credits").click()
    page.get_by_label("Coupon code").fill(code)
    page.get_by_role("button", name="Redeem").click()
    assert page.get_by_role("status").inner_text() == f"Coupon {code} redeemed: $1.00 added to your balance."
    assert page.locator("tbody tr").first.inner_text().count(f"coupon {code}") == 1
    shot(page, "credits-coupon-redeemed")
    assert not serious_violations(page)


def test_the_ledger_filter_reaches_past_the_first_page(web_gateway: GatewayServer) -> None:
    """Coupons older than a page of grants are still found by the type filter, and the filter
    stays on the next page."""
    user = make_user(web_gateway)
    codes = [coupon(web_gateway, "0.10") for _ in range(22)]
    with signed_in_client(web_gateway, user.key) as client:
        token = csrf_of(page_text(client, "/dashboard/credits"))
        for code in codes:
            assert (
                client.post("/dashboard/credits/redeem", data={"csrf_token": token, "code": code}).status_code
                == 200
            )
    for i in range(25):  # a page and more of newer grants
        answer = httpx.post(
            f"{web_gateway.url}/admin/users/{user.id}/credits",
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
            json={"amount": "0.01", "reason": f"newer {i}"},
        )
        assert answer.status_code == 200
    client = signed_in_client(web_gateway, user.key)
    first = page_text(client, "/dashboard/credits?type=coupon")
    body = first.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert body.count("<tr>") == 20 and "newer" not in body
    assert all(f"coupon {c}" in body for c in codes[2:]) and f"coupon {codes[0]}<" not in body
    older = first.split('rel="next"', 1)[0].rsplit('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert older.startswith("/dashboard/credits?type=coupon&cursor=")
    second = page_text(client, older).split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert second.count("<tr>") == 2 and f"coupon {codes[0]}" in second and f"coupon {codes[1]}" in second
    assert 'rel="next"' not in page_text(client, older)
