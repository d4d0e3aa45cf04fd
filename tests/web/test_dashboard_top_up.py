"""Top-up from the dashboard: where Stripe is configured, the credits page's form opens a Stripe
Checkout Session through the payments route (its amount and the SPEC §6 metadata), and credits
arrive only by the webhook; where it is not, the form is absent and the route refuses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import gateway_settings, provision, start_gateway
from tests.fakes.stripe_fake import SECRET_KEY, WEBHOOK_SECRET, StripeFake
from tests.harness import GatewayServer
from tests.web.conftest import csrf_of, make_user, page_text, signed_in_client


@pytest.fixture(scope="module")
def stripe_gateway(
    fakes: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayServer, StripeFake]]:
    stripe = StripeFake().start()
    db = f"sqlite:///{tmp_path_factory.mktemp('web-stripe') / 'gatewayz.db'}"
    settings = gateway_settings(
        fakes,
        db,
        STRIPE_SECRET_KEY=SECRET_KEY,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        STRIPE_API_BASE=stripe.url,
    )
    provision(settings, "bootstrap@example.com", 0)  # migrates the database
    server = start_gateway(settings)
    yield server, stripe
    server.stop()
    stripe.stop()


def test_top_up_opens_stripe_checkout_for_the_signed_in_user(
    stripe_gateway: tuple[GatewayServer, StripeFake],
) -> None:
    gateway, stripe = stripe_gateway
    user = make_user(gateway, credits="0")
    client = signed_in_client(gateway, user.key)
    html = page_text(client, "/dashboard/credits")
    assert 'action="/dashboard/credits/top-up"' in html
    answer = client.post("/dashboard/credits/top-up", data={"amount": "25", "csrf_token": csrf_of(html)})
    assert answer.status_code == 303, answer.text
    session = next(iter(stripe.sessions.values()))
    assert answer.headers["location"] == session["url"]
    assert session["amount_total"] == 2500 and session["client_reference_id"] == user.id
    assert session["metadata"] == {"gatewayz_user_id": user.id, "gatewayz_kind": "topup"}
    # Nothing is granted before Stripe's webhook says the payment is made.
    assert "$0.00" in page_text(client, "/dashboard/credits")


def test_without_stripe_there_is_no_top_up(web_gateway: GatewayServer) -> None:
    user = make_user(web_gateway)
    client = signed_in_client(web_gateway, user.key)
    html = page_text(client, "/dashboard/credits")
    assert "/dashboard/credits/top-up" not in html
    answer = client.post("/dashboard/credits/top-up", data={"amount": "25", "csrf_token": csrf_of(html)})
    assert answer.status_code == 404
