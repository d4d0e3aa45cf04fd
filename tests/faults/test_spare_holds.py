"""Spare holds through the gateway (shared.billing.spares, issue 20 item 3): a key with a steady
stream of requests runs on holds its previous settlements wrote — no reservation of its own —
and a spare behaves like any reservation: it never turns a request that fits into a 402, it stops
with a frozen account, a request the rate limiter refuses gives it back, and nobody's spare
outlives its time or its gateway.

Which holds were written, and for which request, is read from the database itself: a trigger logs
every hold inserted (`hold_log`)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.billing import from_pico
from shared.billing.ledger import Ledger
from shared.store import open_database
from tests.conftest import gateway_settings, provision
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply
from tests.faults.conftest import CREDITS, Faulty, start_faulty, wait_until
from tests.faults.test_reserve_beside_admission import log_holds, trace
from tests.store.support import run_async


def holds_logged(gw: Faulty) -> list[str]:
    return [r["request_id"] for r in gw.rows("SELECT request_id FROM hold_log")]


def spares_open(gw: Faulty) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in gw.rows(
            "SELECT request_id, amount_pico FROM credit_holds WHERE user_id = :u AND status = 'open' "
            "AND request_id LIKE 'spare%'",
            u=gw.account.user_id,
        )
    ]


def request_id(answer: httpx.Response) -> str:
    assert answer.status_code == 200, answer.text
    return answer.headers["x-request-id"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_steady_stream_of_requests_runs_on_spare_holds_on_postgres(
    backend: str, fakes: dict[str, Any], tmp_path: Path
) -> None:
    """After one request of its own, each of the key's requests takes the hold the previous
    settlement wrote: no reservation is sent for it, and it is charged and recorded as ever. The
    last spare is dropped when the gateway closes. SQLite writes no spare (a reservation there is
    a local transaction)."""
    with ExitStack() as stack:
        gw = start_faulty(fakes, backend, tmp_path, stack, GATEWAYZ_SPARE_HOLD_SECONDS="30")
        log_holds(gw)
        before = gw.balance_pico()
        ids = [request_id(gw.chat()) for _ in range(6)]
        logged = holds_logged(gw)
        if backend == "sqlite":
            assert logged == ids and spares_open(gw) == []
        else:
            assert logged[0] == ids[0]  # the first reserved its own hold...
            assert not set(ids[1:]) & set(logged)  # ...the others none: they ran on spares
            assert len(logged) == 7 and all(r.startswith("spare_") for r in logged[1:])
            assert [s["request_id"] for s in spares_open(gw)] == [logged[-1]]  # the last one waits
        charged = 0
        for rid in ids:
            assert trace(gw, rid)["request_records"] == 1 and trace(gw, rid)["credit_transactions"] == 1
            charged -= int(
                gw.rows("SELECT amount_pico FROM credit_transactions WHERE request_id = :r", r=rid)[0][
                    "amount_pico"
                ]
            )
        assert charged > 0 and gw.balance_pico() == before - charged  # the ledger check runs too
        gw.server.stop()
        assert gw.open_holds() == []  # closing the gateway dropped the spare


def test_a_spare_never_turns_a_request_that_fits_into_a_402(fakes: dict[str, Any], tmp_path: Path) -> None:
    """The credit a spare holds is the account's: a request that does not fit in the rest of it
    drops this instance's spares of the user and is tried again."""
    with ExitStack() as stack:
        gw = start_faulty(fakes, "postgres", tmp_path, stack, GATEWAYZ_SPARE_HOLD_SECONDS="30")
        big = request_id(gw.chat(max_tokens=4000))
        big_amount = int(
            gw.rows("SELECT amount_pico FROM credit_holds WHERE request_id = :r", r=big)[0]["amount_pico"]
        )
        for _ in range(2):  # the second one's settlement writes a spare of a small request's size
            request_id(gw.chat(max_tokens=1000))
        (spare,) = spares_open(gw)
        assert spare["amount_pico"] < big_amount
        # Take away all but half a spare less than the big request needs: with the spare held,
        # it does not fit; without it, it does.
        available = gw.balance_pico() - spare["amount_pico"]
        claw_back = available - (big_amount - spare["amount_pico"] // 2)
        change_balance(gw, -claw_back)
        again = gw.chat(max_tokens=4000)
        assert again.status_code == 200, again.text
        assert trace(gw, spare["request_id"])["credit_holds"] == 0  # it was dropped for this one


def change_balance(gw: Faulty, pico: int) -> None:
    async def run() -> None:
        db = open_database(gw.url)
        try:
            result = await Ledger(db).change_balance(
                gw.account.user_id, from_pico(pico), type="adjustment", description="test", actor_type="admin"
            )
            assert result.applied
        finally:
            await db.close()

    run_async(run)


def test_a_frozen_account_stops_at_once_on_spares_too(fakes: dict[str, Any], tmp_path: Path) -> None:
    """A freeze reaches a key that runs on spares within one request: the settlements write no
    spare for a frozen account, and the request after is refused."""
    with ExitStack() as stack:
        gw = start_faulty(fakes, "postgres", tmp_path, stack, GATEWAYZ_SPARE_HOLD_SECONDS="30")
        for _ in range(3):
            request_id(gw.chat())
        assert len(spares_open(gw)) == 1
        gw.rows("UPDATE users SET spend_frozen = 'dispute' WHERE id = :u RETURNING id", u=gw.account.user_id)
        after = [gw.chat() for _ in range(3)]
        assert after[0].status_code in (200, 403)  # it may run on the spare written before
        assert [a.status_code for a in after[1:]] == [403, 403]
        assert all(a.json()["error"]["code"] == "account_frozen" for a in after if a.status_code == 403)
        assert spares_open(gw) == []  # none written since the freeze (the one taken is closed)


def test_a_request_the_limiter_refuses_gives_its_spare_back(fakes: dict[str, Any], tmp_path: Path) -> None:
    """A key allowed 5 requests a minute: the sixth takes the waiting spare and is refused — a 429
    that leaves no trace, and the spare waits on for the key's next request until it is dropped
    (its time here: 0.3 s)."""
    with ExitStack() as stack:
        gw = start_faulty(fakes, "postgres", tmp_path, stack, GATEWAYZ_SPARE_HOLD_SECONDS="30")
        settings = gateway_settings(fakes, gw.url)
        gw.account = provision(
            settings, "spare-429@example.com", CREDITS, rate_limits={"requests_per_minute": 5}
        )
        log_holds(gw)
        for _ in range(5):
            request_id(gw.chat())
        (spare,) = spares_open(gw)
        logged = holds_logged(gw)
        refused = gw.chat()
        assert refused.status_code == 429, refused.text
        assert trace(gw, refused.headers["x-request-id"]) == {
            "credit_holds": 0,
            "request_records": 0,
            "credit_transactions": 0,
        }
        assert spares_open(gw) == [spare] and holds_logged(gw) == logged  # given back, nothing written


def test_spares_nobody_takes_are_dropped_and_keys_with_spend_limits_get_none(
    fakes: dict[str, Any], tmp_path: Path
) -> None:
    with ExitStack() as stack:
        gw = start_faulty(fakes, "postgres", tmp_path, stack)  # the tests' spare time: 0.3 s
        for _ in range(3):
            request_id(gw.chat())
        assert len(spares_open(gw)) == 1
        gw.spares_dropped()  # within a second: it would fail after five
        assert gw.open_holds() == []

        settings = gateway_settings(fakes, gw.url)
        gw.account = provision(settings, "spare-capped@example.com", CREDITS, spend_limit_day=Decimal(50))
        log_holds(gw)
        ids = [request_id(gw.chat()) for _ in range(4)]
        assert holds_logged(gw) == ids  # each reserved its own: its holds count toward its limit


def test_a_spare_the_database_outage_kept_is_dropped_when_it_returns(
    fakes: dict[str, Any], tmp_path: Path
) -> None:
    """The database goes away while a spare waits: its drop fails and is tried again until the
    database is back — nothing is left behind."""
    with ExitStack() as stack:
        gw = start_faulty(fakes, "postgres", tmp_path, stack)  # the tests' spare time: 0.3 s
        for _ in range(3):
            request_id(gw.chat())
        (spare,) = spares_open(gw)
        assert gw.proxy is not None
        gw.proxy.cut()
        time.sleep(1.5)  # the spare's time runs out; its drop finds no database (and tries again)
        assert spares_open(gw) == [spare]
        gw.proxy.restore()
        assert gw.invariants(open_holds=0) > 0  # waits for the spare to go (5 s at most)


def test_no_spare_is_written_while_another_request_of_the_user_is_in_flight(
    fakes: dict[str, Any], openai_fake: OpenAIFake, tmp_path: Path
) -> None:
    """A spare's settlement takes the user's turn with the reservations until its commit: with
    another of the user's requests in flight, none is written (that request's reservation would
    wait for it); the last one to end, alone again, writes one."""
    with ExitStack() as stack:
        gw = start_faulty(fakes, "postgres", tmp_path, stack, GATEWAYZ_SPARE_HOLD_SECONDS="30")
        gw.account = provision(gateway_settings(fakes, gw.url), "spare-busy@example.com", CREDITS)
        for _ in range(2):  # the second one's settlement writes a spare
            request_id(gw.chat())
        log_holds(gw)
        taken = spares_open(gw)  # the one the slow request will take (and hold until it ends)
        assert len(taken) == 1
        openai_fake.script("gpt-4o", Reply(delay=0.8))
        sent = len(openai_fake.requests)
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(gw.chat)  # takes the spare, then waits on its upstream
            wait_until(lambda: len(openai_fake.requests) > sent, "the slow request upstream")
            fast = request_id(gw.chat())  # reserves, and settles while the slow one runs
            assert holds_logged(gw) == [fast] and spares_open(gw) == taken  # no new spare
            slow_id = request_id(slow.result(timeout=10))
        (spare,) = spares_open(gw)  # written by the slow one's settlement
        assert holds_logged(gw) == [fast, spare["request_id"]] and slow_id not in holds_logged(gw)
