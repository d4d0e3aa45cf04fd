"""A Stripe event that arrives while PostgreSQL is cut off is a 503 (Stripe retries it) and leaves
nothing behind; the redelivery grants the top-up exactly once (issue 14)."""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Any

import httpx

from tests.fakes.stripe_fake import SECRET_KEY, WEBHOOK_SECRET, StripeFake, sign
from tests.faults.conftest import start_faulty


def test_an_event_during_an_outage_is_a_503_and_its_redelivery_grants_once(
    fakes: dict[str, Any], tmp_path: Any
) -> None:
    stripe = StripeFake()
    env = {"STRIPE_SECRET_KEY": SECRET_KEY, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}
    with ExitStack() as stack:
        pg = start_faulty(fakes, "postgres", tmp_path, stack, **env)
        user = pg.account.user_id
        meta = {"gatewayz_user_id": user, "gatewayz_kind": "topup"}
        session = {
            "id": "cs_outage_1",
            "object": "checkout.session",
            "mode": "payment",
            "client_reference_id": user,
            "metadata": meta,
            "amount_total": 1234,
            "currency": "usd",
            "payment_status": "paid",
            "payment_intent": "pi_outage_1",
            "customer": None,
        }
        payload = stripe.event("checkout.session.completed", session)

        def deliver() -> httpx.Response:
            headers = {"Stripe-Signature": sign(payload), "Content-Type": "application/json"}
            return httpx.post(
                pg.server.url + "/webhooks/stripe", content=payload, headers=headers, timeout=20
            )

        before = pg.balance_pico()
        events = pg.rows("SELECT COUNT(*) AS n FROM stripe_events")[0]["n"]
        assert pg.proxy is not None
        pg.proxy.cut()
        try:
            cut = deliver()
        finally:
            pg.proxy.restore()
        assert cut.status_code == 503 and cut.headers["retry-after"], cut.text
        assert pg.rows("SELECT COUNT(*) AS n FROM stripe_events")[0]["n"] == events
        assert pg.balance_pico() == before
        time.sleep(0.2)
        answers = [deliver() for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert [a.json()["status"] for a in answers] == ["processed", "duplicate", "duplicate"]
        assert pg.balance_pico() == before + 1234 * 10**10
        ledger = pg.rows("SELECT SUM(amount_pico) AS s FROM credit_transactions WHERE user_id = :u", u=user)
        assert int(ledger[0]["s"]) == pg.balance_pico()
