"""The credit reservation sent alongside the rate-limit admission (issue 20, item 3;
shared/limits/forecast.py): when this instance's last admission of the key left room, both round
trips run at once. The limiter still has the last word: a request it refuses leaves no hold, no
request record and no charge behind, whatever the reservation did meanwhile; a refusal of the
ledger frees the admission's slot; a flood of refused requests reaches the database at most once.

Which reservations were sent is read from the database itself: a trigger logs every hold inserted
(`hold_log`), so a hold that was written and then dropped is still seen to have been sent.

Spare holds and spare admissions are off here (`SPARES_OFF`): a key with a steady stream of
requests would run on them (tests/faults/test_spare_holds.py, tests/limits/test_spare_admissions.py)
and send no reservation or admission of its own; this is the path of the others (the first requests
of a key, serverless instances).
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.store import open_database
from tests.conftest import gateway_settings, provision, start_gateway
from tests.faults.conftest import CREDITS, Faulty, assert_unavailable, start_faulty
from tests.limits.conftest import RedisProcess, redis_client, redis_url
from tests.store.support import run_async

SPARES_OFF = {"GATEWAYZ_SPARE_HOLD_SECONDS": "0", "GATEWAYZ_SPARE_ADMISSION_SECONDS": "0"}

HOLD_LOG = {
    "postgres": """
        CREATE TABLE hold_log (request_id TEXT);
        CREATE FUNCTION log_hold() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO hold_log VALUES (NEW.request_id); RETURN NEW; END $$;
        CREATE TRIGGER log_hold AFTER INSERT ON credit_holds FOR EACH ROW EXECUTE FUNCTION log_hold();
    """,
    "sqlite": """
        CREATE TABLE hold_log (request_id TEXT);
        CREATE TRIGGER log_hold AFTER INSERT ON credit_holds
        BEGIN INSERT INTO hold_log VALUES (NEW.request_id); END;
    """,
}


def log_holds(gw: Faulty) -> None:
    async def run() -> None:
        db = open_database(gw.url)
        try:
            await db.execute_script(HOLD_LOG[gw.backend])
        finally:
            await db.close()

    run_async(run)


def limited(gw: Faulty, fakes: dict[str, Any], requests_per_minute: int, **env: str) -> Faulty:
    """The gateway's caller becomes a new account whose key allows `requests_per_minute` (and
    any number at once: with one concurrent request, nothing is ever sent alongside), with one
    request admitted: the admission the next one's forecast reads."""
    settings = gateway_settings(fakes, gw.url, **env)
    email = f"beside-{requests_per_minute}@example.com"
    gw.account = provision(settings, email, CREDITS, rate_limits={"requests_per_minute": requests_per_minute})
    first = gw.chat()
    assert first.status_code == 200, first.text
    return gw


def holds_sent(gw: Faulty) -> set[str]:
    return {r["request_id"] for r in gw.rows("SELECT request_id FROM hold_log")}


def trace(gw: Faulty, request_id: str) -> dict[str, int]:
    """What the database holds of one request: its holds (any status), records, ledger rows."""
    return {
        table: int(gw.rows(f"SELECT COUNT(*) AS n FROM {table} WHERE request_id = :r", r=request_id)[0]["n"])
        for table in ("credit_holds", "request_records", "credit_transactions")
    }


def chat(url: str, gw: Faulty, **body: Any) -> httpx.Response:
    payload = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hello"}], **body}
    return gw.http.post(f"{url}/v1/chat/completions", json=payload, headers=gw.headers())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_request_the_limiter_refuses_after_its_reservation_was_sent_leaves_nothing(
    backend: str, fakes: dict[str, Any], e2e_redis: str, tmp_path: Path
) -> None:
    """Two instances share the key's limit of 6 requests a minute. Instance A admits 2 (room for
    4 more, as far as it knows), B spends the other 4; A's next request is sent to the ledger and
    the limiter at once, and the limiter refuses it: a 429 with nothing of it left in the database.
    A's requests after that refusal take turns (admission first): none reaches the ledger."""
    with ExitStack() as stack:
        gw = start_faulty(fakes, backend, tmp_path, stack, GATEWAYZ_REDIS_URL=e2e_redis, **SPARES_OFF)
        limited(gw, fakes, 6, GATEWAYZ_REDIS_URL=e2e_redis, **SPARES_OFF)
        log_holds(gw)
        other = start_gateway(gateway_settings(fakes, gw.url, GATEWAYZ_REDIS_URL=e2e_redis, **SPARES_OFF))
        stack.callback(other.stop)
        assert gw.chat().status_code == 200  # A: 2 of 6
        for _ in range(4):
            assert chat(other.url, gw).status_code == 200  # B: 6 of 6
        before = gw.balance_pico()
        refused = gw.chat()
        assert refused.status_code == 429, refused.text
        request_id = refused.headers["x-request-id"]
        assert request_id in holds_sent(gw)  # its reservation was sent alongside the admission
        assert trace(gw, request_id) == {"credit_holds": 0, "request_records": 0, "credit_transactions": 0}
        sent = holds_sent(gw)
        for _ in range(3):  # a flood after the refusal
            assert gw.chat().status_code == 429
        assert holds_sent(gw) == sent  # none of it reached the ledger
        assert gw.balance_pico() == before and gw.open_holds() == []


def test_a_refusal_of_the_ledger_beside_an_admission_frees_the_slot(
    fakes: dict[str, Any], e2e_redis: str, tmp_path: Path
) -> None:
    """A request whose worst case the balance cannot cover, sent to both at once: a 402, its
    concurrency slot released at once, no hold, no charge."""
    with ExitStack() as stack:
        gw = start_faulty(fakes, "postgres", tmp_path, stack, GATEWAYZ_REDIS_URL=e2e_redis, **SPARES_OFF)
        limited(gw, fakes, 100, GATEWAYZ_REDIS_URL=e2e_redis, **SPARES_OFF)
        log_holds(gw)
        before = gw.balance_pico()
        too_dear = gw.chat(max_tokens=9_000_000)  # ~$112 of gpt-4o output; the account has $100
        assert too_dear.status_code == 402, too_dear.text
        assert too_dear.json()["error"]["code"] == "insufficient_credits"
        request_id = too_dear.headers["x-request-id"]
        assert request_id not in holds_sent(gw)
        client = redis_client(int(e2e_redis.rsplit("/", 1)[1]))
        try:
            assert client.zcard(f"rl:user:{gw.account.user_id}:conc") == 0  # the slot is free
        finally:
            client.close()
        assert trace(gw, request_id)["credit_transactions"] == 0
        assert gw.balance_pico() == before
        gw.invariants()


def test_a_limiter_outage_beside_a_reservation_is_a_503_that_drops_the_hold(
    fakes: dict[str, Any], redis_process: RedisProcess, tmp_path: Path
) -> None:
    """Limits fail closed and Redis goes away after an admission that left room: the next request
    is sent to both, the limiter cannot answer (a 503), and the hold its reservation wrote is gone."""
    redis_process.start()
    with ExitStack() as stack:
        env = {
            "GATEWAYZ_REDIS_URL": redis_url(0, redis_process.port),
            "GATEWAYZ_LIMITS_FAIL_CLOSED": "1",
            **SPARES_OFF,
        }
        gw = limited(start_faulty(fakes, "postgres", tmp_path, stack, **env), fakes, 100, **env)
        log_holds(gw)
        before = gw.balance_pico()
        redis_process.stop()
        down = gw.chat()
        assert_unavailable(down)
        request_id = down.headers["x-request-id"]
        assert request_id in holds_sent(gw)
        assert trace(gw, request_id) == {"credit_holds": 0, "request_records": 0, "credit_transactions": 0}
        assert gw.balance_pico() == before and gw.open_holds() == []
