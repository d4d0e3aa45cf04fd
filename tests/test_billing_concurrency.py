"""Concurrency (SPEC §4): 50 parallel chat requests through the gateway on loopback, from a user
whose balance covers only some of them, on SQLite and on the real PostgreSQL. No balance ever
below zero, every success charged exactly once, every refusal a 402, the ledger sums to the
balance and no hold is left open."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from shared.billing import to_pico
from tests.conftest import gateway_settings, provision, start_gateway
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply
from tests.store.support import BACKENDS, LEDGER_STATE, check_ledger, database_url, off_main_thread, query

REQUESTS = 50
MODEL = "openai/gpt-4o"  # 2.5 / 10 USD per million tokens (both offers), markup 1.25
MAX_TOKENS = 100
# meter.worst_case: the prompt "hi" counts 2 // 2 + 64 = 65 tokens, plus max_tokens of output:
# (65 × 2.5 + 100 × 10) / 1e6 × 1.25
WORST_CASE = Decimal("0.001453125")
# What each success really costs: the fake's default usage, 11 prompt and 7 completion tokens.
CHARGE = (Decimal(11) * Decimal("2.5") + Decimal(7) * Decimal(10)) / Decimal(1_000_000) * Decimal("1.25")
FITS = 20  # the balance covers this many worst-case reservations at once
BALANCE = WORST_CASE * FITS


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


def test_parallel_requests_never_overspend(
    backend_url: str, fakes: dict[str, Any], openai_fake: OpenAIFake
) -> None:
    assert Decimal("0.000121875") == CHARGE
    settings = gateway_settings(fakes, backend_url)
    account = off_main_thread(provision, settings, "concurrent@example.com", BALANCE)
    # Plan limits are not under test here: the enterprise plan admits 200 concurrent requests.
    query(backend_url, "UPDATE users SET plan_id = 'enterprise' WHERE id = :u", {"u": account.user_id})
    openai_fake.default = Reply(delay=0.5)  # slow upstream: the requests overlap

    server = start_gateway(settings)
    try:
        barrier = threading.Barrier(REQUESTS)
        with openai.OpenAI(
            base_url=f"{server.url}/v1", api_key=account.key, max_retries=0, timeout=30
        ) as client:

            def call(_: int) -> tuple[int, str, dict[str, Any]]:
                barrier.wait(10)
                try:
                    raw = client.chat.completions.with_raw_response.create(
                        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=MAX_TOKENS
                    )
                except openai.APIStatusError as exc:
                    return exc.status_code, exc.response.headers["x-request-id"], exc.response.json()
                return raw.status_code, raw.headers["x-request-id"], {"cost": raw.headers["x-gatewayz-cost"]}

            with ThreadPoolExecutor(REQUESTS) as pool:
                results = list(pool.map(call, range(REQUESTS)))
    finally:
        server.stop()

    successes = [rid for status, rid, _ in results if status == 200]
    refusals = [(rid, body) for status, rid, body in results if status == 402]
    assert len(successes) + len(refusals) == REQUESTS, sorted({s for s, _, _ in results})
    assert len(set(successes)) == len(successes)
    for _, body in refusals:
        assert body["error"]["code"] == "insufficient_credits"
        assert f"may cost up to ${WORST_CASE}" in body["error"]["message"]  # the reservation computed above
    assert all(Decimal(body["cost"]) == CHARGE for status, _, body in results if status == 200)
    # A refusal needs the open holds plus the settled charges to leave less than one reservation,
    # which takes at least FITS admitted requests; and with every request overlapping, some must be refused.
    assert FITS <= len(successes) < REQUESTS
    assert refusals

    user = {"u": account.user_id}
    usage = query(
        backend_url,
        "SELECT request_id, amount_pico, balance_after_pico FROM credit_transactions"
        " WHERE user_id = :u AND type = 'usage'",
        user,
    )
    assert sorted(r["request_id"] for r in usage) == sorted(successes)  # each success charged once
    assert all(r["amount_pico"] == -to_pico(CHARGE) for r in usage)
    # Serialised charges: the balances after them are exactly the chain start − k × charge.
    start = to_pico(BALANCE)
    assert sorted((r["balance_after_pico"] for r in usage), reverse=True) == [
        start - k * to_pico(CHARGE) for k in range(1, len(successes) + 1)
    ]
    balance = check_ledger(
        query(backend_url, LEDGER_STATE, {"user_id": account.user_id})[0]
    )  # sum == balance, never < 0
    assert balance == start - len(successes) * to_pico(CHARGE)

    holds = query(backend_url, "SELECT request_id, status FROM credit_holds WHERE user_id = :u", user)
    assert not [h for h in holds if h["status"] == "open"]
    assert sorted(h["request_id"] for h in holds) == sorted(successes)  # refusals held nothing
    assert all(h["status"] == "settled" for h in holds)
    records = query(
        backend_url,
        "SELECT request_id, status, cost_pico FROM request_records WHERE user_id = :u AND status = 'ok'",
        user,
    )
    assert sorted(r["request_id"] for r in records) == sorted(successes)
    assert all(r["cost_pico"] == to_pico(CHARGE) for r in records)
    refused_ids = {rid for rid, _ in refusals}
    charged = query(
        backend_url,
        "SELECT request_id, cost_pico FROM request_records WHERE user_id = :u AND status <> 'ok'",
        user,
    )
    assert all(r["cost_pico"] == 0 and r["request_id"] in refused_ids for r in charged)
