"""The database fails under the gateway (issue 10, defects 1 and 6): PostgreSQL behind a proxy the
test cuts — before a request's reservation, between its reservation and settlement, in the middle
of the settlement — and a restart that kills every pooled connection.

Every answer is a 503 `dependency_unavailable` with a retry-after (never a 500), nothing is half
written, the balance stays equal to its ledger, a stranded hold is left to the reaper's window, and
the caller's one concurrency slot is free again — even while the database is still down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.billing.ledger import new_id
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply
from tests.faults.conftest import Faulty, assert_unavailable, in_background, wait_until
from tests.faults.proxy import application_name

NATIVE = "gpt-4o"


@pytest.mark.parametrize("stream", [False, True])
def test_a_cut_before_the_reservation_is_a_503_and_frees_the_slot(
    pg: Faulty, openai_fake: OpenAIFake, stream: bool
) -> None:
    before = pg.balance_pico()
    assert pg.proxy is not None
    pg.proxy.cut()
    # Twice while the database is down: the first request's slot must be free for the second (the
    # key allows one at a time), or this user is locked out for the slot's lease (~11 minutes).
    for _ in range(2):
        assert_unavailable(pg.chat(stream=stream))
    assert len(openai_fake.requests) == 1  # only the warm-up: nobody called an upstream unpaid
    pg.proxy.restore()
    assert pg.invariants() == before


def test_a_cut_between_reservation_and_settlement_strands_only_the_hold(
    pg: Faulty, openai_fake: OpenAIFake
) -> None:
    before = pg.balance_pico()
    assert pg.proxy is not None
    openai_fake.script(NATIVE, Reply(delay=0.5))
    answer = in_background(pg.chat)
    wait_until(lambda: len(openai_fake.requests) == 2, "the upstream call")  # reserved, now waiting
    pg.proxy.cut()
    assert_unavailable(answer())
    pg.proxy.restore()
    # Not charged; its hold is open until the reaper expires it; the slot is free.
    assert pg.invariants(open_holds=1) == before


def test_a_cut_in_the_middle_of_a_stream_ends_it_with_an_error_frame(
    pg: Faulty, openai_fake: OpenAIFake
) -> None:
    before = pg.balance_pico()
    assert pg.proxy is not None
    openai_fake.script(NATIVE, Reply(chunks=4, chunk_delay=0.2))
    with pg.stream() as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        assert "chat.completion.chunk" in first
        pg.proxy.cut()  # the stream goes on; its settlement will find no database
        rest = [line.removeprefix("data: ") for line in lines if line.startswith("data:")]
    assert rest[-1] == "[DONE]"
    error = json.loads(rest[-2])["error"]
    assert error["code"] == "dependency_unavailable" and error["request_id"]
    pg.proxy.restore()
    assert pg.invariants(open_holds=1) == before


@pytest.mark.parametrize("forward", [False, True], ids=["before-the-server", "answer-lost"])
def test_a_cut_during_the_settlement_charges_at_most_once(
    pg: Faulty, openai_fake: OpenAIFake, forward: bool
) -> None:
    """Cut as the settlement's call leaves: either the server never got it (not charged, hold
    stranded) or it committed and its answer was lost (charged once, hold closed). The caller gets
    a 503 either way, and the two states never mix."""
    before = pg.balance_pico()
    assert pg.proxy is not None
    pg.proxy.cut_when(b"gz_settle_", forward=forward)
    assert_unavailable(pg.chat())
    pg.proxy.restore()
    if forward:
        wait_until(lambda: pg.balance_pico() < before, "the committed settlement")
        charged = pg.rows(
            "SELECT COUNT(*) AS n FROM credit_transactions WHERE user_id = :u AND type = 'usage'",
            u=pg.account.user_id,
        )[0]["n"]
        assert charged == 2  # the warm-up and this one: once each
        assert pg.invariants(open_holds=0) < before
    else:
        time.sleep(0.2)
        assert pg.invariants(open_holds=1) == before


def test_every_route_answers_503_while_the_database_is_down(pg: Faulty) -> None:
    user = pg.account.user_id
    audit_before = pg.rows("SELECT COUNT(*) AS n FROM audit_log")[0]["n"]
    keys_before = pg.rows("SELECT COUNT(*) AS n FROM api_keys")[0]["n"]
    before = pg.balance_pico()
    assert pg.proxy is not None
    pg.proxy.cut()
    credit = {"amount": "5", "reason": "outage test", "idempotency_key": new_id("idem")}
    for response in (
        pg.get("/v1/me"),
        pg.get("/v1/credits"),
        pg.get("/v1/usage"),
        pg.get("/v1/usage/summary"),
        pg.get("/v1/activity"),
        pg.get("/v1/rankings"),  # public, first call of this process: nothing cached yet
        pg.send("POST", "/v1/keys", json={"name": "during the outage", "rate_limits": {"concurrency": 1}}),
        pg.get("/admin/users", admin=True),
        pg.get(f"/admin/users/{user}", admin=True),
        pg.send("POST", f"/admin/users/{user}/credits", admin=True, json=credit),
        pg.send("POST", "/admin/users", admin=True, json={"email": "new@example.com"}),
        pg.get("/admin/audit", admin=True),
        pg.get("/admin/analytics", admin=True),
        pg.get("/v1/sessions"),
        pg.get("/v1/history/settings"),
        pg.send("POST", "/v1/feedback", json={"request_id": "req_outage", "thumbs": "up"}),
        pg.get("/v1/shared/" + "t" * 40),  # public
        pg.get("/admin/feedback", admin=True),
        pg.get("/admin/catalog/diff", admin=True),
        # A key this instance never saw must be looked up: not a 401, and no failed-auth count.
        pg.chat(key="gw_live_" + "x" * 43),
    ):
        assert_unavailable(response)
    pg.proxy.restore()
    assert pg.rows("SELECT COUNT(*) AS n FROM audit_log")[0]["n"] == audit_before
    assert pg.rows("SELECT COUNT(*) AS n FROM api_keys")[0]["n"] == keys_before
    assert pg.invariants() == before
    assert pg.get(f"/admin/users/{user}", admin=True).status_code == 200


def test_a_restart_that_killed_every_pooled_connection_fails_no_request(pg: Faulty) -> None:
    """PostgreSQL terminates each session when it restarts (FATAL 57P01, then the end of the
    stream): the pool finds them dead before lending them, and requests just work."""
    assert pg.proxy is not None
    killed = pg.rows(
        "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity WHERE application_name = :name",
        name=application_name(pg.proxy),
    )
    assert killed and all(r["done"] for r in killed)
    time.sleep(0.1)  # the goodbyes reach the gateway's sockets
    for _ in range(3):
        response = pg.chat()
        assert response.status_code == 200, response.text


def test_connections_cut_and_restored_meanwhile_fail_no_request(pg: Faulty) -> None:
    assert pg.proxy is not None
    pg.proxy.cut()
    pg.proxy.restore()
    for _ in range(3):
        response = pg.chat()
        assert response.status_code == 200, response.text
    pg.invariants()


def test_the_cli_says_the_database_is_unavailable_instead_of_a_traceback(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "GATEWAYZ_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nothing_listens_here",
        "GATEWAYZ_KEY_SECRET": "cli-faults-key-secret-0123456789abcdef",
    }
    binary = Path(sys.executable).with_name("gatewayz")
    done = subprocess.run(
        [str(binary), "users", "create", "--email", "cli@example.com"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "database is unavailable" in done.stderr and "Traceback" not in done.stderr
