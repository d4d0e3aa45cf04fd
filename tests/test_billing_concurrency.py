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


SPARE_CHARGE = (
    (Decimal(11) * Decimal("2.5") + Decimal(95) * Decimal(10)) / Decimal(1_000_000) * Decimal("1.25")
)


def test_two_instances_on_spare_holds_never_overspend(
    fakes: dict[str, Any], openai_fake: OpenAIFake, tmp_path: Path
) -> None:
    """Two gateways on one PostgreSQL, each a lone stream of the same user's requests — so each
    runs on spare holds (shared.billing.spares) — until the balance runs out: every success is
    charged its full cost (a spare is a reservation: nothing is ever capped), the balance never
    goes below zero and equals its ledger, each instance ran on spares, and none is left."""
    assert Decimal("0.001221875") == SPARE_CHARGE
    with database_url("postgres", tmp_path) as url:
        settings = gateway_settings(fakes, url, GATEWAYZ_SPARE_HOLD_SECONDS="5")
        account = off_main_thread(provision, settings, "spare-pair@example.com", WORST_CASE * 40)
        query(
            url,
            "CREATE TABLE hold_log (request_id TEXT); "
            "CREATE FUNCTION log_hold() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN INSERT INTO hold_log VALUES (NEW.request_id); RETURN NEW; END $$; "
            "CREATE TRIGGER log_hold AFTER INSERT ON credit_holds FOR EACH ROW EXECUTE FUNCTION log_hold()",
        )
        openai_fake.default = Reply(output=95)  # most of the 100-token budget: the balance runs out
        servers = [start_gateway(settings), start_gateway(settings)]
        try:

            def stream(server: Any) -> list[tuple[int, str, str]]:
                seen = []
                with openai.OpenAI(
                    base_url=f"{server.url}/v1", api_key=account.key, max_retries=0, timeout=30
                ) as client:
                    for _ in range(200):
                        try:
                            raw = client.chat.completions.with_raw_response.create(
                                model=MODEL,
                                messages=[{"role": "user", "content": "hi"}],
                                max_tokens=MAX_TOKENS,
                            )
                        except openai.APIStatusError as exc:
                            seen.append(
                                (exc.status_code, exc.response.headers["x-request-id"], exc.code or "")
                            )
                            break
                        seen.append(
                            (raw.status_code, raw.headers["x-request-id"], raw.headers["x-gatewayz-cost"])
                        )
                return seen

            with ThreadPoolExecutor(2) as pool:
                runs = list(pool.map(stream, servers))
        finally:
            for server in servers:
                server.stop()  # each drops its spare
        for seen in runs:
            *served, last = seen
            assert last[:1] == (402,) and last[2] == "insufficient_credits", last
            assert served and all(
                status == 200 and Decimal(cost) == SPARE_CHARGE for status, _, cost in served
            )
        successes = [rid for seen in runs for _, rid, _ in seen[:-1]]
        balance = check_ledger(query(url, LEDGER_STATE, {"user_id": account.user_id})[0])
        assert balance == to_pico(WORST_CASE * 40) - len(successes) * to_pico(SPARE_CHARGE) >= 0
        logged = {r["request_id"] for r in query(url, "SELECT request_id FROM hold_log")}
        for seen in runs:  # most of each instance's requests sent no reservation
            own = sum(rid in logged for _, rid, _ in seen[:-1])
            assert own < len(seen) / 2, (own, len(seen))
        assert (
            query(
                url,
                "SELECT id FROM credit_holds WHERE user_id = :u AND status = 'open'",
                {"u": account.user_id},
            )
            == []
        )
