"""Reserved money stays reserved, and a caller is told what was charged (SPEC §4; issue 10,
defect 14), through the gateway on SQLite and on the real PostgreSQL.

- An operator's claw-back takes at most the available credit (balance minus open holds): the
  requests in flight keep their reservations and are charged in full.
- Where a charge had to be capped (the upstream overran its reservation and the balance could not
  cover it), `x-gatewayz-cost`, `usage.cost` and the request record all say what was charged.
"""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests import test_account_routes as accounts
from tests.conftest import ADMIN_KEY
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply
from tests.store.support import LEDGER_STATE, check_ledger
from tests.test_account_routes import ALL_BUT_ADMIN, Deployment, assert_envelope

deployment = accounts.deployment  # the same fixture: a gateway per backend for this module
HELLO = [{"role": "user", "content": "hi"}]
PICO = Decimal(10) ** 12


def gpt4o(tokens_in: int, tokens_out: int) -> Decimal:
    """openai/gpt-4o at the catalog's 2.5 / 10 USD per million, markup 1.25."""
    return (tokens_in * Decimal("2.5") + tokens_out * Decimal(10)) / Decimal(1_000_000) * Decimal("1.25")


def charged(deployment: Deployment, user_id: str) -> dict[str, Decimal]:
    """request id → what the ledger charged, and what the request record says it cost."""
    usage = deployment.rows(
        "SELECT request_id, amount_pico FROM credit_transactions WHERE user_id = :u AND type = 'usage'",
        {"u": user_id},
    )
    records = deployment.rows(
        "SELECT request_id, cost_pico FROM request_records WHERE user_id = :u", {"u": user_id}
    )
    ledger = {r["request_id"]: -Decimal(r["amount_pico"]) / PICO for r in usage}
    assert ledger == {r["request_id"]: Decimal(r["cost_pico"]) / PICO for r in records if r["cost_pico"]}
    return ledger


def held(deployment: Deployment, key: str) -> Decimal:
    with deployment.http(key) as http:
        return Decimal(http.get("/v1/credits").json()["held"])


def test_a_claw_back_leaves_requests_in_flight_their_reserved_money(
    deployment: Deployment, openai_fake: OpenAIFake
) -> None:
    user = deployment.user("0.01", "enterprise", scopes=ALL_BUT_ADMIN)
    openai_fake.script(
        "gpt-4o", Reply(delay=1.0, input=200, output=100), Reply(delay=1.0, input=200, output=100)
    )
    sdk = deployment.sdk(user.key)
    answers: list[Any] = []

    def call() -> None:
        answers.append(
            sdk.chat.completions.with_raw_response.create(
                model="openai/gpt-4o", messages=HELLO, max_tokens=200
            )
        )

    calls = [threading.Thread(target=call) for _ in range(2)]
    for thread in calls:
        thread.start()
    try:
        deadline = time.monotonic() + 5
        while len(openai_fake.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        reserved = held(deployment, user.key)
        assert len(openai_fake.requests) == 2 and reserved > 0  # both in flight, their worst cases held
        with deployment.http(ADMIN_KEY) as admin:
            before = deployment.counts()
            everything = admin.post(
                f"/admin/users/{user.user_id}/credits", json={"amount": "-0.01", "reason": "claw back"}
            )
            error = assert_envelope(everything, 400)
            assert error["code"] == "balance_below_zero" and "held for requests in flight" in error["message"]
            assert deployment.counts() == before
            available = Decimal("0.01") - reserved
            taken = admin.post(
                f"/admin/users/{user.user_id}/credits",
                json={"amount": str(-available), "reason": "claw back"},
            )
            assert taken.status_code == 200 and Decimal(taken.json()["balance"]) == reserved
    finally:
        for thread in calls:
            thread.join(10)

    # Each request is charged in full, and says so.
    full = gpt4o(200, 100)
    assert len(answers) == 2
    for raw in answers:
        assert Decimal(raw.headers["x-gatewayz-cost"]) == full
        assert Decimal(str(json.loads(raw.http_response.content)["usage"]["cost"])) == full
    assert sorted(charged(deployment, user.user_id).values()) == [full, full]
    state = deployment.rows(LEDGER_STATE, {"user_id": user.user_id})[0]
    assert Decimal(check_ledger(state)) / PICO == reserved - 2 * full


def _stream_usage_cost(deployment: Deployment, key: str) -> tuple[Decimal, str]:
    """The `usage.cost` of the final chunk of a streamed call, read as the exact JSON number."""
    body = {
        "model": "openai/gpt-4o",
        "messages": HELLO,
        "max_tokens": 1,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with (
        deployment.http(key) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    usage = json.loads(events[-2], parse_float=Decimal)["usage"]
    return Decimal(usage["cost"]), response.headers["x-request-id"]


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_a_charge_capped_at_the_balance_is_what_the_caller_is_told(
    deployment: Deployment, openai_fake: OpenAIFake, stream: bool
) -> None:
    user = deployment.user("0.01", "enterprise", scopes=["inference", "read"])
    # The upstream ignores max_tokens and bills 100,000 output tokens: $1.25, far above the hold
    # (the worst case of max_tokens 1) and above the whole balance.
    openai_fake.script("gpt-4o", Reply(input=10, output=100_000))
    if stream:
        told, _ = _stream_usage_cost(deployment, user.key)
    else:
        with deployment.http(user.key) as http:
            response = http.post(
                "/v1/chat/completions", json={"model": "openai/gpt-4o", "messages": HELLO, "max_tokens": 1}
            )
        assert response.status_code == 200, response.text
        assert Decimal(response.headers["x-gatewayz-cost"]) == Decimal("0.01")
        told = Decimal(str(json.loads(response.content, parse_float=Decimal)["usage"]["cost"]))
    assert gpt4o(10, 100_000) > Decimal("0.01")
    assert told == Decimal("0.01")  # the balance, all that could be charged
    assert list(charged(deployment, user.user_id).values()) == [Decimal("0.01")]
    assert check_ledger(deployment.rows(LEDGER_STATE, {"user_id": user.user_id})[0]) == 0


def test_an_uncapped_charge_is_told_as_is(deployment: Deployment, openai_fake: OpenAIFake) -> None:
    user = deployment.user("1", "enterprise", scopes=["inference", "read"])
    openai_fake.script("gpt-4o", Reply(input=10, output=100))
    with httpx.Client(base_url=deployment.url, headers={"authorization": f"Bearer {user.key}"}) as http:
        response = http.post("/v1/chat/completions", json={"model": "openai/gpt-4o", "messages": HELLO})
    assert Decimal(response.headers["x-gatewayz-cost"]) == gpt4o(10, 100)
    assert list(charged(deployment, user.user_id).values()) == [gpt4o(10, 100)]
