"""Trials and referrals (issue 14), on SQLite and PostgreSQL, each abuse rule under 20 concurrent
attempts; ledger == balance after every test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import Account, provision
from tests.payments.test_stripe_money_in import (
    Stack,
    _run_billing_jobs,
    checkout,
    ledger_matches_balances,
    stack,
    stripe_fake,
)
from tests.store.support import query

__all__ = ["stack", "stripe_fake"]  # the module fixtures, shared


@pytest.fixture
def new_user(stack: Stack) -> Iterator[Any]:
    settings = stack.gateways[0].app.state.runtime.settings

    def make() -> Account:
        email = f"promo-{uuid.uuid4().hex[:12]}@example.com"
        return provision(settings, email, Decimal(0), plan="free", scopes=["billing", "read", "inference"])

    yield make
    ledger_matches_balances(stack.url)


def fresh_ip() -> str:
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"


def test_one_trial_per_user_under_20_concurrent_attempts(stack: Stack, new_user: Any) -> None:
    user = new_user()
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(
            pool.map(
                lambda i: stack.post("/v1/billing/trial", user.key, which=i % 2, ip=fresh_ip()), range(20)
            )
        )
    assert sorted(a.status_code for a in answers) == [200] + [409] * 19, [
        a.text for a in answers if a.status_code != 409
    ]
    assert stack.user(user.user_id)["plan_id"] == "trial" and stack.balance(user.user_id) == Decimal(2)


def test_one_trial_per_ip_per_day_under_20_concurrent_users(stack: Stack, new_user: Any) -> None:
    users = [new_user() for _ in range(20)]
    ip = fresh_ip()
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(
            pool.map(
                lambda iu: stack.post("/v1/billing/trial", iu[1].key, which=iu[0] % 2, ip=ip),
                enumerate(users),
            )
        )
    assert sorted(a.status_code for a in answers) == [200] + [429] * 19
    assert sum(stack.balance(u.user_id) for u in users) == Decimal(2)


def test_a_trial_limits_models_and_its_unused_credits_expire(stack: Stack, new_user: Any) -> None:
    user = new_user()
    started = stack.post("/v1/billing/trial", user.key, ip=fresh_ip())
    assert started.status_code == 200 and started.json()["allowed_models"] == ["openai/gpt-4o-mini"]
    chat = stack.post(
        "/v1/chat/completions",
        user.key,
        {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert chat.status_code == 403, chat.text
    query(
        stack.url,
        "UPDATE trials SET expires_at = :t WHERE user_id = :u",
        {"t": "2000-01-01T00:00:00.000000Z", "u": user.user_id},
    )
    _run_billing_jobs(stack)
    assert stack.user(user.user_id)["plan_id"] == "free" and stack.balance(user.user_id) == 0
    assert [(r["type"], int(r["amount_pico"])) for r in stack.ledger(user.user_id)] == [
        ("trial", 2 * 10**12),
        ("trial", -2 * 10**12),
    ]
    _run_billing_jobs(stack)  # once only
    assert len(stack.ledger(user.user_id)) == 2
    # A paying user cannot start a trial.
    payer = new_user()
    session_id = checkout(stack, payer, "10")
    assert (
        stack.deliver(
            stack.stripe.event("checkout.session.completed", stack.stripe.paid_session(session_id))
        ).status_code
        == 200
    )
    assert stack.post("/v1/billing/trial", payer.key, ip=fresh_ip()).status_code == 409


def referral_code(stack: Stack, account: Account) -> str:
    import httpx

    response = httpx.get(
        stack.gateways[0].url + "/v1/referrals",
        headers={"Authorization": f"Bearer {account.key}"},
        timeout=20,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["code"])


def test_a_referral_pays_both_once_and_refuses_self_and_loops(stack: Stack, new_user: Any) -> None:
    referrer, referee = new_user(), new_user()
    code = referral_code(stack, referrer)
    assert referral_code(stack, referrer) == code  # stable
    assert stack.post("/v1/referrals/apply", referrer.key, {"code": code}).status_code == 409  # self
    assert stack.post("/v1/referrals/apply", referee.key, {"code": code}).status_code == 200
    assert (
        stack.post("/v1/referrals/apply", referrer.key, {"code": referral_code(stack, referee)}).status_code
        == 409
    )  # loop
    assert stack.post("/v1/referrals/apply", referee.key, {"code": "NOSUCHCODE"}).status_code == 404
    for _ in range(2):  # the first purchase pays the bonuses; the second does not
        session_id = checkout(stack, referee, "10")
        assert (
            stack.deliver(
                stack.stripe.event("checkout.session.completed", stack.stripe.paid_session(session_id))
            ).status_code
            == 200
        )
    assert stack.balance(referee.user_id) == Decimal(25) and stack.balance(referrer.user_id) == Decimal(5)
    stats = stack.post("/v1/referrals/apply", referee.key, {"code": code})
    assert stats.status_code == 409  # already referred, and has paid


def test_the_monthly_cap_holds_under_20_concurrent_first_purchases(stack: Stack, new_user: Any) -> None:
    referrer = new_user()
    code = referral_code(stack, referrer)
    referees = [new_user() for _ in range(20)]
    payloads = []
    for referee in referees:
        assert stack.post("/v1/referrals/apply", referee.key, {"code": code}).status_code == 200
        session_id = checkout(stack, referee, "10")
        payloads.append(
            stack.stripe.event("checkout.session.completed", stack.stripe.paid_session(session_id))
        )
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda ip: stack.deliver(ip[1], which=ip[0] % 2), enumerate(payloads)))
    assert [a.status_code for a in answers] == [200] * 20
    assert stack.balance(referrer.user_id) == Decimal(10)  # the cap: 2 bonuses of 5
    assert sum(stack.balance(r.user_id) for r in referees) == Decimal(200 + 10)
