"""A settlement, once started, lands (SPEC §4: what was generated is billed, exactly once).

On PostgreSQL, with the gateway under uvicorn on a real socket: the test holds a user's row lock,
so that a settlement waits in the database exactly while the interruption arrives; then it lets
go and reads the ledger.

What can interrupt a settlement (issue 10, the meter's shield):
- a client that hangs up cannot: uvicorn only flags the connection (it never cancels the task that
  serves the request), and the SSE response settles in that same task. The first test shows it.
- the server can: at shutdown (a deploy, a scale-in) uvicorn cancels the tasks still running once
  its graceful-shutdown timeout has passed. The meter's `anyio.CancelScope(shield=True)` did not
  stop that (a cancel scope's shield does not stop a task's `cancel()`), and charges were lost: a
  settlement waiting for a connection never ran, and one already in the database was cut off when
  the runtime closed. The ledger now runs every settlement in a task of its own, awaited through
  `asyncio.shield`, and the runtime waits for those before it closes the database. The second test
  fails without either part.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from shared.billing.ledger_sql import LOCK_USER
from shared.config import Settings
from shared.runtime import Runtime
from shared.server import create_server_app
from shared.store.postgres import PostgresDatabase
from tests.conftest import Account, gateway_settings, provision
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import FakeServer, Reply
from tests.harness import GatewayServer
from tests.store.support import LEDGER_STATE, check_ledger, migrate_url, postgres_schema, query

HELLO = [{"role": "user", "content": "hi"}]


class Deployment:
    def __init__(self, settings: Settings, account: Account, server: GatewayServer) -> None:
        self.settings = settings
        self.account = account
        self.server = server

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return query(self.settings.database_url, sql, params)

    def usage(self) -> list[dict[str, Any]]:
        return self.rows(
            "SELECT t.amount_pico, r.status, r.cost_pico FROM credit_transactions t "
            "JOIN request_records r ON r.request_id = t.request_id WHERE t.user_id = :u AND t.type = 'usage'",
            {"u": self.account.user_id},
        )

    def settlement_waiting(self) -> bool:
        """Whether a settlement of this user waits for a lock (its call names the user)."""
        rows = self.rows(
            "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE :pattern",
            {"pattern": f"%settle%{self.account.user_id}%"},
        )
        return bool(rows[0]["n"])


@pytest.fixture
def deployment(fakes: dict[str, FakeServer]) -> Iterator[Deployment]:
    with postgres_schema() as url:
        migrate_url(url)
        settings = gateway_settings(fakes, url)
        account = provision(settings, "settles@example.com", Decimal(5))
        app = create_server_app(settings)
        app.state.runtime = Runtime.build(settings)
        server = GatewayServer(app)
        server.server.config.timeout_graceful_shutdown = 0.2  # then uvicorn cancels what still runs
        deployment = Deployment(settings, account, server.start())
        try:
            yield deployment
        finally:
            server.stop()


def _until(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_client_hanging_up_during_settlement_is_still_billed(
    deployment: Deployment, openai_fake: OpenAIFake
) -> None:
    openai_fake.script("gpt-4o", Reply(chunks=200, chunk_delay=0.02))
    first_chunk = threading.Event()
    hang_up = threading.Event()

    def stream() -> None:
        body = {"model": "openai/gpt-4o", "messages": HELLO, "stream": True}
        headers = {"authorization": f"Bearer {deployment.account.key}"}
        with (
            httpx.Client(base_url=deployment.server.url, timeout=20) as http,
            http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response,
        ):
            for _ in response.iter_raw():
                first_chunk.set()
                hang_up.wait(10)
                return  # closing the response closes the connection: the client is gone

    client = threading.Thread(target=stream)
    client.start()
    assert first_chunk.wait(10)
    with psycopg.connect(deployment.settings.database_url, autocommit=False) as locker:
        locker.execute(LOCK_USER.replace(":user_id", "%s"), (deployment.account.user_id,))
        hang_up.set()
        client.join(10)
        _until(deployment.settlement_waiting, "the settlement waits for the user's row")
        time.sleep(0.3)  # the gateway has long seen the disconnect; nothing cancels the settlement
        locker.rollback()
    _until(lambda: deployment.usage(), "the charge lands")
    (charge,) = deployment.usage()
    assert charge["status"] == "cancelled" and -charge["amount_pico"] == charge["cost_pico"] > 0
    check_ledger(deployment.rows(LEDGER_STATE, {"user_id": deployment.account.user_id})[0])


def test_a_server_cancelling_requests_during_settlement_still_bills_them(
    deployment: Deployment, openai_fake: OpenAIFake
) -> None:
    """Two requests finish upstream while the gateway shuts down: the first one's settlement waits
    in the database for the user's row (the test holds it), the second one's waits for a database
    connection (the pool has one). uvicorn then cancels both tasks; both must be charged."""
    db = deployment.server.runtime.db
    assert isinstance(db, PostgresDatabase)
    db.max_size = 1  # its pool, opened by the first request below, lends one connection
    other = provision(deployment.settings, "settles-too@example.com", Decimal(5))
    openai_fake.script(
        "gpt-4o", Reply(delay=0.3, input=100, output=50), Reply(delay=0.8, input=100, output=50)
    )
    log = _Lines()
    logging.getLogger("uvicorn.error").addHandler(log)
    outcome: list[Any] = []

    def call(key: str) -> None:
        try:
            outcome.append(
                httpx.post(
                    f"{deployment.server.url}/v1/chat/completions",
                    json={"model": "openai/gpt-4o", "messages": HELLO},
                    headers={"authorization": f"Bearer {key}"},
                    timeout=20,
                )
            )
        except httpx.HTTPError as exc:
            outcome.append(exc)

    clients = [threading.Thread(target=call, args=(a.key,)) for a in (deployment.account, other)]
    try:
        clients[0].start()
        _until(lambda: len(openai_fake.requests) == 1, "the first request is upstream (its hold taken)")
        clients[1].start()
        _until(lambda: len(openai_fake.requests) == 2, "the second request is upstream (its hold taken)")
        with psycopg.connect(deployment.settings.database_url, autocommit=False) as locker:
            locker.execute(LOCK_USER.replace(":user_id", "%s"), (deployment.account.user_id,))
            _until(deployment.settlement_waiting, "the first settlement waits for the user's row")
            _until(lambda: openai_fake.requests[1].completed, "the second request's answer is read")
            time.sleep(0.2)  # its settlement now waits for the one connection
            deployment.server.server.should_exit = True  # a deploy: the server shuts down
            _until(lambda: any("Cancel 2" in m for m in log.messages), "uvicorn cancels both tasks")
            locker.rollback()
        deployment.server.thread.join(15)  # the runtime closes after what it still owes the ledger
        for client in clients:
            client.join(10)
    finally:
        logging.getLogger("uvicorn.error").removeHandler(log)
    full = (100 * Decimal("2.5") + 50 * Decimal(10)) / Decimal(1_000_000) * Decimal("1.25")
    for user_id in (deployment.account.user_id, other.user_id):
        charges = query(
            deployment.settings.database_url,
            "SELECT t.amount_pico, r.status FROM credit_transactions t JOIN request_records r "
            "ON r.request_id = t.request_id WHERE t.user_id = :u AND t.type = 'usage'",
            {"u": user_id},
        )
        which = "first" if user_id == deployment.account.user_id else "second"
        assert charges == [{"amount_pico": -int(full * 10**12), "status": "ok"}], which
        holds = deployment.rows("SELECT status FROM credit_holds WHERE user_id = :u", {"u": user_id})
        assert holds == [{"status": "settled"}]
        check_ledger(deployment.rows(LEDGER_STATE, {"user_id": user_id})[0])
