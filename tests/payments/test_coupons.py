"""Coupons (issue 14): admin-created codes redeemed exactly once per user under 20 concurrent
attempts, a total cap held under concurrency across two instances, expiry and plan restrictions,
and a top-up bonus paid by the next top-up's webhook. SQLite and PostgreSQL; ledger == balance."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY, Account, provision
from tests.payments.test_stripe_money_in import Stack, checkout, ledger_matches_balances, stack, stripe_fake

__all__ = ["stack", "stripe_fake"]  # the module fixtures, shared


@pytest.fixture
def new_user(stack: Stack) -> Iterator[Any]:
    settings = stack.gateways[0].app.state.runtime.settings

    def make(plan: str = "free") -> Account:
        email = f"coupon-{uuid.uuid4().hex[:12]}@example.com"
        return provision(settings, email, Decimal(0), plan=plan, scopes=["billing", "read"])

    yield make
    ledger_matches_balances(stack.url)


def coupon(stack: Stack, **body: Any) -> str:
    code = "C" + uuid.uuid4().hex[:10].upper()
    response = httpx.post(
        stack.gateways[0].url + "/admin/coupons",
        json={"code": code, **body},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=20,
    )
    assert response.status_code == 200, response.text
    return code


def redeem(stack: Stack, account: Account, code: str, which: int = 0) -> httpx.Response:
    return stack.post("/v1/billing/redeem", account.key, {"code": code}, which=which)


def test_a_code_is_redeemed_once_per_user_under_20_concurrent_attempts(stack: Stack, new_user: Any) -> None:
    code = coupon(stack, kind="credits", credits="3.50")
    user = new_user()
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda i: redeem(stack, user, code.lower(), which=i % 2), range(20)))
    assert sorted(a.status_code for a in answers) == [200] + [409] * 19
    assert stack.balance(user.user_id) == Decimal("3.5")
    assert [r["type"] for r in stack.ledger(user.user_id)] == ["coupon"]


def test_the_total_cap_holds_under_concurrency(stack: Stack, new_user: Any) -> None:
    code = coupon(stack, kind="credits", credits="1", max_redemptions=3)
    users = [new_user() for _ in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda iu: redeem(stack, iu[1], code, which=iu[0] % 2), enumerate(users)))
    assert sorted(a.status_code for a in answers) == [200] * 3 + [409] * 17
    assert sum(stack.balance(u.user_id) for u in users) == Decimal(3)
    listed = httpx.get(
        stack.gateways[1].url + "/admin/coupons", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=20
    ).json()["data"]
    assert next(c for c in listed if c["code"] == code)["redemptions"] == 3


def test_plan_restrictions_unknown_codes_and_per_user_counts(stack: Stack, new_user: Any) -> None:
    pro_only = coupon(stack, kind="credits", credits="2", plans=["pro"])
    free_user, pro_user = new_user(), new_user("pro")
    assert redeem(stack, free_user, pro_only).status_code == 409
    assert redeem(stack, pro_user, pro_only).status_code == 200
    assert redeem(stack, free_user, "NOSUCHCODE").status_code == 404
    twice = coupon(stack, kind="credits", credits="1", per_user=2)
    assert [redeem(stack, free_user, twice).status_code for _ in range(3)] == [200, 200, 409]
    assert stack.balance(free_user.user_id) == Decimal(2) and stack.balance(pro_user.user_id) == Decimal(2)


def test_bad_coupon_bodies_are_400s_and_create_nothing(stack: Stack) -> None:
    for body in (
        {"code": "X", "kind": "credits", "credits": "1"},
        {"code": "GOODCODE1", "kind": "credits"},
        {"code": "GOODCODE2", "kind": "topup_bonus"},
        {"code": "GOODCODE3", "kind": "credits", "credits": "1", "expires_at": "2001-01-01T00:00:00Z"},
        {"code": "GOODCODE4", "kind": "other", "credits": "1"},
    ):
        response = httpx.post(
            stack.gateways[0].url + "/admin/coupons",
            json=body,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=20,
        )
        assert response.status_code == 400, (body, response.text)


def test_a_topup_bonus_is_paid_by_the_next_topup(stack: Stack, new_user: Any) -> None:
    code = coupon(stack, kind="topup_bonus", bonus_percent=10)
    user = new_user()
    response = redeem(stack, user, code)
    assert response.status_code == 200 and response.json()["status"] == "pending"
    assert stack.balance(user.user_id) == 0
    session_id = checkout(stack, user, "20")
    payload = stack.stripe.event("checkout.session.completed", stack.stripe.paid_session(session_id))
    assert stack.deliver(payload).status_code == 200
    assert stack.deliver(payload, which=1).json()["status"] == "duplicate"
    assert stack.balance(user.user_id) == Decimal(22)
    assert sorted(r["type"] for r in stack.ledger(user.user_id)) == ["coupon", "purchase"]
    # Used: the next top-up has no bonus.
    second = checkout(stack, user, "10")
    assert (
        stack.deliver(
            stack.stripe.event("checkout.session.completed", stack.stripe.paid_session(second))
        ).status_code
        == 200
    )
    assert stack.balance(user.user_id) == Decimal(32)
