"""Money in through Stripe (SPEC §6), end to end on SQLite and PostgreSQL: the gateway calls the
fake Stripe API through the real `stripe` library (STRIPE_API_BASE), and the tests deliver the
events Stripe would send, signed with Stripe's scheme, to `POST /webhooks/stripe`.

After every test the ledger equals every balance (SPEC §4).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY, Account, gateway_settings, provision, start_gateway
from tests.fakes.stripe_fake import SECRET_KEY, WEBHOOK_SECRET, StripeFake, sign
from tests.harness import GatewayServer
from tests.store.support import BACKENDS, database_url, query

PRICES = {"price_pro_monthly": 2000, "price_enterprise_monthly": 50000}


@dataclass
class Stack:
    url: str  # the database
    gateways: list[GatewayServer]
    stripe: StripeFake

    def post(
        self, path: str, key: str, body: dict[str, Any] | None = None, which: int = 0, ip: str = "127.0.0.1"
    ) -> httpx.Response:
        return httpx.post(
            self.gateways[which].url + path,
            json=body or {},
            headers={"Authorization": f"Bearer {key}", "X-Forwarded-For": ip},
            timeout=20,
        )

    def deliver(self, payload: bytes, which: int = 0, signature: str | None = None) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        headers["Stripe-Signature"] = sign(payload) if signature is None else signature
        return httpx.post(
            self.gateways[which].url + "/webhooks/stripe", content=payload, headers=headers, timeout=20
        )

    def user(self, user_id: str) -> dict[str, Any]:
        return query(self.url, "SELECT * FROM users WHERE id = :id", {"id": user_id})[0]

    def balance(self, user_id: str) -> Decimal:
        return Decimal(int(self.user(user_id)["balance_pico"])) / 10**12

    def ledger(self, user_id: str) -> list[dict[str, Any]]:
        return query(
            self.url,
            "SELECT type, amount_pico, payment_id FROM credit_transactions WHERE user_id = :id ORDER BY created_at, id",
            {"id": user_id},
        )

    def events(self) -> int:
        return int(query(self.url, "SELECT COUNT(*) AS n FROM stripe_events")[0]["n"])


@pytest.fixture(scope="module")
def stripe_fake() -> Iterator[StripeFake]:
    fake = StripeFake(PRICES).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    fakes: dict[str, Any],
    stripe_fake: StripeFake,
) -> Iterator[Stack]:
    with database_url(request.param, tmp_path_factory.mktemp("payments")) as url:
        settings = gateway_settings(
            fakes,
            url,
            STRIPE_SECRET_KEY=SECRET_KEY,
            STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
            STRIPE_API_BASE=stripe_fake.url,
            STRIPE_PRICE_PRO="price_pro_monthly",
            STRIPE_PRICE_ENTERPRISE="price_enterprise_monthly",
            GATEWAYZ_TOPUP_MIN_USD="5",
            GATEWAYZ_TOPUP_MAX_USD="500",
            GATEWAYZ_TRIAL_CREDITS_USD="2",
            GATEWAYZ_TRIAL_MODELS="openai/gpt-4o-mini",
            GATEWAYZ_REFERRAL_BONUS_USD="5",
            GATEWAYZ_REFERRAL_MONTHLY_CAP="2",
            GATEWAYZ_TRUSTED_PROXIES="127.0.0.1/32",  # the trial tests call "from" many addresses
        )
        bootstrap = provision(settings, "bootstrap@example.com", Decimal(0))  # migrates
        gateways = [start_gateway(settings), start_gateway(settings)]  # two instances, one database
        stack = Stack(url, gateways, stripe_fake)
        # Each route's first call, one instance at a time: pydantic builds some schemas lazily on
        # first use, and two server threads of this one test process doing so at once raced
        # (AttributeError: __pydantic_core_schema__, seen once in ~12 runs). A deployed process
        # serves from one thread.
        for which in (0, 1):
            stack.post("/v1/billing/trial", bootstrap.key, which=which)
            stack.post("/v1/billing/redeem", bootstrap.key, {"code": "WARMUP"}, which=which)
            stack.post("/v1/referrals/apply", bootstrap.key, {"code": "WARMUP"}, which=which)
        try:
            yield stack
        finally:
            for gateway in gateways:
                gateway.stop()
            ledger_matches_balances(url)


def ledger_matches_balances(url: str) -> None:
    rows = query(
        url,
        "SELECT u.id, u.balance_pico, COALESCE((SELECT SUM(amount_pico) FROM credit_transactions t "
        "WHERE t.user_id = u.id), 0) AS total FROM users u",
    )
    assert all(int(r["balance_pico"]) == int(r["total"]) for r in rows), rows


@pytest.fixture
def buyer(stack: Stack, request: pytest.FixtureRequest) -> Iterator[Account]:
    name = f"buyer-{uuid.uuid4().hex[:12]}"
    settings = stack.gateways[0].app.state.runtime.settings
    account = provision(
        settings, f"{name}@example.com", Decimal(0), plan="free", scopes=["billing", "read", "inference"]
    )
    yield account
    ledger_matches_balances(stack.url)


def checkout(stack: Stack, account: Account, amount: str) -> str:
    response = stack.post("/v1/billing/checkout", account.key, {"amount_usd": amount})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["url"].startswith("https://checkout.stripe.com/")
    return str(body["id"])


def test_checkout_carries_the_metadata_contract(stack: Stack, buyer: Account) -> None:
    session_id = checkout(stack, buyer, "25.50")
    sent = next(r.body for r in reversed(stack.stripe.requests) if r.path == "/v1/checkout/sessions")
    meta = {"gatewayz_user_id": buyer.user_id, "gatewayz_kind": "topup"}
    assert sent["mode"] == "payment" and sent["client_reference_id"] == buyer.user_id
    assert sent["metadata"] == meta and sent["payment_intent_data"] == {"metadata": meta}
    assert sent["line_items"][0]["price_data"]["unit_amount"] == "2550"
    assert stack.stripe.sessions[session_id]["amount_total"] == 2550
    assert stack.balance(buyer.user_id) == 0  # credits come only from the webhook


@pytest.mark.parametrize("amount", ["4.99", "500.01", "10.001", "-5", "abc"])
def test_checkout_refuses_amounts_out_of_bounds(stack: Stack, buyer: Account, amount: str) -> None:
    before = len(stack.stripe.requests)
    response = stack.post("/v1/billing/checkout", buyer.key, {"amount_usd": amount})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "amount_usd"
    assert len(stack.stripe.requests) == before  # nothing was asked of Stripe


def test_a_paid_session_delivered_five_times_to_two_instances_grants_once(
    stack: Stack, buyer: Account
) -> None:
    session_id = checkout(stack, buyer, "20")
    payload = stack.stripe.event("checkout.session.completed", stack.stripe.paid_session(session_id))
    with ThreadPoolExecutor(max_workers=5) as pool:
        answers = list(pool.map(lambda i: stack.deliver(payload, which=i % 2), range(5)))
    assert [a.status_code for a in answers] == [200] * 5
    statuses = sorted(a.json()["status"] for a in answers)
    assert statuses == ["duplicate"] * 4 + ["processed"]
    assert stack.balance(buyer.user_id) == Decimal(20)
    purchases = [r for r in stack.ledger(buyer.user_id) if r["type"] == "purchase"]
    assert (
        len(purchases) == 1
        and purchases[0]["payment_id"] == stack.stripe.sessions[session_id]["payment_intent"]
    )


def test_an_unpaid_session_waits_for_the_async_payment(stack: Stack, buyer: Account) -> None:
    session_id = checkout(stack, buyer, "10")
    pending = stack.stripe.event(
        "checkout.session.completed", stack.stripe.paid_session(session_id, "unpaid")
    )
    assert stack.deliver(pending).status_code == 200
    assert stack.balance(buyer.user_id) == 0
    paid = stack.stripe.paid_session(session_id)
    assert (
        stack.deliver(stack.stripe.event("checkout.session.async_payment_succeeded", paid)).status_code == 200
    )
    assert stack.balance(buyer.user_id) == Decimal(10)
    # The same session completed again under another event id grants nothing more.
    assert stack.deliver(stack.stripe.event("checkout.session.completed", paid)).status_code == 200
    assert stack.balance(buyer.user_id) == Decimal(10)


@pytest.mark.parametrize(
    "signature",
    ["", "t=1,v1=00", "garbage", "WRONG-SECRET", "STALE"],
)
def test_a_bad_signature_is_a_400_and_writes_nothing(stack: Stack, buyer: Account, signature: str) -> None:
    session_id = checkout(stack, buyer, "10")
    payload = stack.stripe.event("checkout.session.completed", stack.stripe.paid_session(session_id))
    if signature == "WRONG-SECRET":
        signature = sign(payload, "whsec_someone_else")
    elif signature == "STALE":
        signature = sign(payload, timestamp=int(__import__("time").time()) - 301)
    events = stack.events()
    headers = {"Content-Type": "application/json"}
    if signature:
        headers["Stripe-Signature"] = signature
    response = httpx.post(
        stack.gateways[0].url + "/webhooks/stripe", content=payload, headers=headers, timeout=20
    )
    assert response.status_code == 400, response.text
    assert stack.events() == events and stack.balance(buyer.user_id) == 0
    # A body changed after signing fails too.
    tampered = payload.replace(b'"amount_total": 1000', b'"amount_total": 99900')
    assert stack.deliver(tampered, signature=sign(payload)).status_code == 400
    assert stack.balance(buyer.user_id) == 0


def test_refund_after_spend_claws_back_records_debt_and_freezes(stack: Stack, buyer: Account) -> None:
    session_id = checkout(stack, buyer, "10")
    assert (
        stack.deliver(
            stack.stripe.event("checkout.session.completed", stack.stripe.paid_session(session_id))
        ).status_code
        == 200
    )
    # Spend $8 of it (an operator's claw-back stands in for usage: both are ledger debits).
    spent = httpx.post(
        f"{stack.gateways[0].url}/admin/users/{buyer.user_id}/credits",
        json={"amount": "-8", "reason": "usage"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=20,
    )
    assert spent.status_code == 200, spent.text
    # A partial refund of $1 takes $1; the full refund then takes the $1 left and owes $8.
    partial = stack.stripe.event("charge.refunded", stack.stripe.refunded_charge(session_id, 100))
    assert stack.deliver(partial).status_code == 200
    assert stack.balance(buyer.user_id) == Decimal(1)
    full = stack.stripe.event("charge.refunded", stack.stripe.refunded_charge(session_id, 1000))
    assert stack.deliver(full).status_code == 200
    user = stack.user(buyer.user_id)
    assert stack.balance(buyer.user_id) == 0
    assert int(user["debt_pico"]) == 8 * 10**12 and user["spend_frozen"] == "debt"
    # A replayed refund (same event) and the same total again (another event) change nothing.
    assert stack.deliver(full).json()["status"] == "duplicate"
    again = stack.stripe.event("charge.refunded", stack.stripe.refunded_charge(session_id, 1000))
    assert stack.deliver(again).status_code == 200
    assert int(stack.user(buyer.user_id)["debt_pico"]) == 8 * 10**12
    # Inference is refused while frozen (a real chat call through the gateway).
    chat = stack.post(
        "/v1/chat/completions",
        buyer.key,
        {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert chat.status_code == 403 and chat.json()["error"]["code"] == "account_frozen", chat.text
    # The next top-up pays the debt first and lifts the freeze.
    second = checkout(stack, buyer, "20")
    assert (
        stack.deliver(
            stack.stripe.event("checkout.session.completed", stack.stripe.paid_session(second))
        ).status_code
        == 200
    )
    user = stack.user(buyer.user_id)
    assert stack.balance(buyer.user_id) == Decimal(12)
    assert int(user["debt_pico"]) == 0 and user["spend_frozen"] is None
    refunds = [r for r in stack.ledger(buyer.user_id) if r["type"] == "refund"]
    assert [int(r["amount_pico"]) for r in refunds] == [-(10**12), -(10**12), -8 * 10**12]


def test_a_dispute_freezes_spending_until_an_operator_lifts_it(stack: Stack, buyer: Account) -> None:
    session_id = checkout(stack, buyer, "10")
    assert (
        stack.deliver(
            stack.stripe.event("checkout.session.completed", stack.stripe.paid_session(session_id))
        ).status_code
        == 200
    )
    pi = stack.stripe.sessions[session_id]["payment_intent"]
    dispute = {
        "id": "dp_1",
        "object": "dispute",
        "payment_intent": pi,
        "amount": 1000,
        "status": "needs_response",
    }
    assert stack.deliver(stack.stripe.event("charge.dispute.created", dispute)).status_code == 200
    assert stack.user(buyer.user_id)["spend_frozen"] == "dispute"
    lifted = httpx.post(
        f"{stack.gateways[1].url}/admin/users/{buyer.user_id}/unfreeze",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=20,
    )
    assert lifted.status_code == 200, lifted.text
    assert stack.user(buyer.user_id)["spend_frozen"] is None


def test_unknown_events_are_acknowledged_ignored_and_counted(stack: Stack) -> None:
    payload = stack.stripe.event("customer.tax_id.created", {"id": "txi_1", "object": "tax_id"})
    response = stack.deliver(payload)
    assert response.status_code == 200 and response.json()["status"] == "ignored"
    counts = httpx.get(
        stack.gateways[0].url + "/admin/stripe/events",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=20,
    ).json()["data"]
    assert {"type": "customer.tax_id.created", "status": "ignored", "count": 1} in counts


def test_an_event_for_an_unknown_user_is_a_5xx_so_stripe_retries(stack: Stack, buyer: Account) -> None:
    session_id = checkout(stack, buyer, "10")
    session = stack.stripe.paid_session(session_id)
    session["metadata"] = {**session["metadata"], "gatewayz_user_id": "usr_nobody"}
    session["client_reference_id"] = "usr_nobody"
    payload = stack.stripe.event("checkout.session.completed", session)
    events = stack.events()
    assert stack.deliver(payload).status_code == 500
    assert stack.events() == events  # not stored: the retry will be processed


def test_subscription_lifecycle(stack: Stack, buyer: Account) -> None:
    response = stack.post("/v1/billing/subscribe", buyer.key, {"plan": "pro"})
    assert response.status_code == 200, response.text
    session_id = response.json()["id"]
    sent = next(r.body for r in reversed(stack.stripe.requests) if r.path == "/v1/checkout/sessions")
    meta = {"gatewayz_user_id": buyer.user_id, "gatewayz_kind": "subscription", "gatewayz_plan": "pro"}
    assert sent["mode"] == "subscription" and sent["subscription_data"] == {"metadata": meta}
    assert sent["line_items"] == [{"price": "price_pro_monthly", "quantity": "1"}]
    fake = stack.stripe
    assert (
        stack.deliver(fake.event("checkout.session.completed", fake.paid_session(session_id))).status_code
        == 200
    )
    sub = fake.subscription(session_id, "price_pro_monthly")
    assert stack.deliver(fake.event("customer.subscription.created", sub)).status_code == 200
    assert stack.user(buyer.user_id)["plan_id"] == "pro"
    # The portal now has a customer to open.
    portal = httpx.get(
        stack.gateways[0].url + "/v1/billing/portal",
        headers={"Authorization": f"Bearer {buyer.key}"},
        timeout=20,
    )
    assert portal.status_code == 200 and portal.json()["url"].startswith("https://billing.stripe.com/")
    # invoice.paid grants the monthly allowance once per invoice, whatever the deliveries.
    invoice = fake.invoice(sub, "price_pro_monthly")
    first = fake.event("invoice.paid", invoice)
    assert stack.deliver(first).status_code == 200 and stack.deliver(first, which=1).status_code == 200
    assert (
        stack.deliver(fake.event("invoice.paid", invoice)).status_code == 200
    )  # another event, same invoice
    assert stack.balance(buyer.user_id) == Decimal(20)
    assert (
        stack.deliver(fake.event("invoice.paid", fake.invoice(sub, "price_pro_monthly"))).status_code == 200
    )
    assert stack.balance(buyer.user_id) == Decimal(40)
    me = httpx.get(
        stack.gateways[1].url + "/v1/me", headers={"Authorization": f"Bearer {buyer.key}"}, timeout=20
    ).json()
    assert me["plan"] == "pro" and me["subscription"]["status"] == "active"
    assert me["subscription"]["current_period_end"] and me["subscription"]["cancel_at_period_end"] is False
    assert me["allowance"] == {"granted": "20", "used": "0", "since": me["allowance"]["since"]}
    # Upgrade, then cancel at period end (the plan stays), then deleted (Free).
    upgraded = fake.subscription(session_id, "price_enterprise_monthly", sub_id=sub["id"])
    assert stack.deliver(fake.event("customer.subscription.updated", upgraded)).status_code == 200
    assert stack.user(buyer.user_id)["plan_id"] == "enterprise"
    ending = fake.subscription(
        session_id, "price_enterprise_monthly", cancel_at_period_end=True, sub_id=sub["id"]
    )
    assert stack.deliver(fake.event("customer.subscription.updated", ending)).status_code == 200
    assert stack.user(buyer.user_id)["plan_id"] == "enterprise"
    gone = fake.subscription(session_id, "price_enterprise_monthly", status="canceled", sub_id=sub["id"])
    assert stack.deliver(fake.event("customer.subscription.deleted", gone)).status_code == 200
    assert stack.user(buyer.user_id)["plan_id"] == "free"


def test_a_failed_renewal_downgrades_after_the_grace_period(stack: Stack, buyer: Account) -> None:
    session_id = stack.post("/v1/billing/subscribe", buyer.key, {"plan": "pro"}).json()["id"]
    fake = stack.stripe
    assert (
        stack.deliver(fake.event("checkout.session.completed", fake.paid_session(session_id))).status_code
        == 200
    )
    sub = fake.subscription(session_id, "price_pro_monthly")
    assert stack.deliver(fake.event("customer.subscription.created", sub)).status_code == 200
    failed = fake.invoice(sub, "price_pro_monthly")
    assert stack.deliver(fake.event("invoice.payment_failed", failed)).status_code == 200
    assert stack.user(buyer.user_id)["plan_id"] == "pro"  # within the grace period
    _run_billing_jobs(stack)
    assert stack.user(buyer.user_id)["plan_id"] == "pro"
    query(
        stack.url,
        "UPDATE subscriptions SET grace_until = :t WHERE id = :id",
        {"t": "2000-01-01T00:00:00.000000Z", "id": sub["id"]},
    )
    _run_billing_jobs(stack)
    assert stack.user(buyer.user_id)["plan_id"] == "free"
    # Paying later restores the plan and grants that invoice's allowance.
    assert (
        stack.deliver(fake.event("invoice.paid", fake.invoice(sub, "price_pro_monthly"))).status_code == 200
    )
    assert stack.user(buyer.user_id)["plan_id"] == "pro" and stack.balance(buyer.user_id) == Decimal(20)


def _run_billing_jobs(stack: Stack) -> None:
    from functions.jobs import run_billing_jobs
    from shared.runtime import Runtime
    from tests.store.support import run_async

    settings = stack.gateways[0].app.state.runtime.settings

    async def run() -> None:
        rt = Runtime.build(settings)
        try:
            await run_billing_jobs(rt)
        finally:
            await rt.close()

    run_async(run)
