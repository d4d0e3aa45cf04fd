"""Billing end to end (SPEC §4) through the gateway on loopback and the official `openai` SDK, on
SQLite and on the real PostgreSQL: cached tokens billed once at their own rates (exact decimals in
the response, the ledger and the request record), nothing charged when every provider failed, a
stream cut off by the client billed for what was generated, free models free, idempotent grants
through the CLI, and the hot-path budget of database round trips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from shared.billing import to_pico
from shared.billing.ledger import new_id
from shared.store import Database, Row, Step, open_database
from tests.conftest import Account, gateway_settings, provision, start_gateway
from tests.fakes.anthropic_fake import AnthropicFake
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply
from tests.harness import GatewayServer
from tests.store.support import (
    BACKENDS,
    LEDGER_STATE,
    check_ledger,
    database_url,
    migrate_url,
    new_user,
    off_main_thread,
    open_holds_after_spares,
    query,
    run_async,
)

D = Decimal
MILLION = D(1_000_000)
MARKUP = D("1.25")
KEY_SECRET = "cli-test-key-secret-0123456789abcdef"


class Gateway:
    """A gateway on loopback with its database URL and a caller with plenty of credits."""

    def __init__(self, url: str, server: GatewayServer, account: Account) -> None:
        self.url = url
        self.server = server
        self.account = account

    def rows(self, sql: str, **params: Any) -> list[Row]:
        return query(self.url, sql, params)

    def balance(self) -> Decimal:
        row = query(self.url, LEDGER_STATE, {"user_id": self.account.user_id})[0]
        return D(check_ledger(row)) / D(10) ** 12

    def usage_rows(self, request_id: str) -> list[Row]:
        return self.rows(
            "SELECT amount_pico, key_id FROM credit_transactions WHERE request_id = :r AND type = 'usage'",
            r=request_id,
        )

    def record(self, request_id: str) -> Row | None:
        found = self.rows("SELECT * FROM request_records WHERE request_id = :r", r=request_id)
        return found[0] if found else None

    def hold_status(self, request_id: str) -> str | None:
        found = self.rows("SELECT status FROM credit_holds WHERE request_id = :r", r=request_id)
        return str(found[0]["status"]) if found else None

    def open_holds(self) -> int:
        return len(open_holds_after_spares(self.url, self.account.user_id))

    def wait_for_record(self, request_id: str, timeout: float = 5.0) -> Row:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.record(request_id)
            if found is not None:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no request record for {request_id} after {timeout}s")


@pytest.fixture(scope="module", params=BACKENDS)
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fakes: dict[str, Any]
) -> Iterator[Gateway]:
    with database_url(request.param, tmp_path_factory.mktemp("billing")) as url:
        settings = gateway_settings(fakes, url)
        account = off_main_thread(provision, settings, "billing@example.com", D(1000))
        query(url, "UPDATE users SET plan_id = 'enterprise' WHERE id = :u", {"u": account.user_id})
        server = start_gateway(settings)
        try:
            yield Gateway(url, server, account)
        finally:
            server.stop()


@pytest.fixture(autouse=True)
def _fresh_health(request: pytest.FixtureRequest) -> None:
    """Passive health (breakers) starts clean in every test that uses the shared gateway."""
    if "gw" in request.fixturenames:
        request.getfixturevalue("gw").server.runtime.health.reset()


@pytest.fixture
def sdk(gw: Gateway, openai_fake: OpenAIFake, anthropic_fake: AnthropicFake) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{gw.server.url}/v1", api_key=gw.account.key, max_retries=0, timeout=20
    ) as client:
        yield client


def body_of(raw: Any) -> dict[str, Any]:
    return json.loads(raw.http_response.content)


def token_counts(rec: dict[str, Any]) -> tuple[int, int, int, int]:
    """A request record's (input, cache read, cache write, output) tokens."""
    return (rec["input_tokens"], rec["cache_read_tokens"], rec["cache_write_tokens"], rec["output_tokens"])


# --- cached tokens -------------------------------------------------------------------------------


def test_openai_cache_reads_are_billed_once_at_their_rate(
    gw: Gateway, sdk: openai.OpenAI, openai_fake: OpenAIFake
) -> None:
    # OpenAI counts cached tokens inside prompt_tokens: 1234 uncached + 5678 cache reads.
    openai_fake.script("gpt-4o", Reply(input=1234, cached=5678, output=321))
    before = gw.balance()
    raw = sdk.chat.completions.with_raw_response.create(
        model="openai/gpt-4o", messages=[{"role": "user", "content": "cached?"}], max_tokens=500
    )
    # (1234 × 2.5 + 5678 × 1.25 + 321 × 10) / 1e6 × 1.25 — not 6912 × 2.5, not 5678 twice.
    expected = (D(1234) * D("2.5") + D(5678) * D("1.25") + D(321) * D(10)) / MILLION * MARKUP
    assert expected == D("0.016740625")
    usage = body_of(raw)["usage"]
    assert usage["prompt_tokens"] == 6912 and usage["prompt_tokens_details"]["cached_tokens"] == 5678
    assert D(str(usage["cost"])) == expected
    assert D(raw.headers["x-gatewayz-cost"]) == expected
    request_id = raw.headers["x-request-id"]
    charged = gw.usage_rows(request_id)
    assert [r["amount_pico"] for r in charged] == [-to_pico(expected)]
    assert charged[0]["key_id"] is not None
    rec = gw.record(request_id)
    assert rec is not None
    assert token_counts(rec) == (1234, 5678, 0, 321)
    assert (rec["cost_pico"], rec["status"], rec["provider"], bool(rec["estimated"])) == (
        to_pico(expected),
        "ok",
        "openai",
        False,
    )
    assert gw.hold_status(request_id) == "settled"
    assert gw.balance() == before - expected


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_anthropic_cache_reads_and_writes_are_billed_once_at_their_rates(
    gw: Gateway, sdk: openai.OpenAI, anthropic_fake: AnthropicFake, stream: bool
) -> None:
    # Anthropic reports cache reads and writes apart from input_tokens.
    anthropic_fake.script(
        "claude-sonnet-4-20250514", Reply(input=1111, cached=2222, cache_write=333, output=444)
    )
    before = gw.balance()
    expected = (D(1111) * D(3) + D(2222) * D("0.3") + D(333) * D("3.75") + D(444) * D(15)) / MILLION * MARKUP
    assert expected == D("0.0148854375")
    kwargs: dict[str, Any] = {
        "model": "anthropic/claude-sonnet-4",
        "messages": [{"role": "user", "content": "cached?"}],
        "max_tokens": 1000,
    }
    if stream:
        with sdk.chat.completions.with_streaming_response.create(
            **kwargs, stream=True, stream_options={"include_usage": True}
        ) as response:
            request_id = response.headers["x-request-id"]
            chunks = list(response.parse())
        usage = chunks[-1].usage
        assert usage is not None
        usage_json = usage.model_dump()
        assert D(str((usage.model_extra or {})["cost"])) == expected
    else:
        raw = sdk.chat.completions.with_raw_response.create(**kwargs)
        request_id = raw.headers["x-request-id"]
        usage_json = body_of(raw)["usage"]
        assert D(str(usage_json["cost"])) == expected
        assert D(raw.headers["x-gatewayz-cost"]) == expected
    assert usage_json["prompt_tokens"] == 1111 + 2222 + 333
    assert usage_json["completion_tokens"] == 444
    assert usage_json["prompt_tokens_details"]["cached_tokens"] == 2222
    assert [r["amount_pico"] for r in gw.usage_rows(request_id)] == [-to_pico(expected)]
    rec = gw.record(request_id)
    assert rec is not None
    assert token_counts(rec) == (1111, 2222, 333, 444)
    assert (rec["cost_pico"], rec["provider"], bool(rec["estimated"])) == (
        to_pico(expected),
        "anthropic",
        False,
    )
    assert gw.balance() == before - expected


# --- nothing billable ----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_request_failing_on_every_provider_charges_nothing(
    gw: Gateway, sdk: openai.OpenAI, openai_fake: OpenAIFake, stream: bool
) -> None:
    openai_fake.default = Reply(status=503, error_message="overloaded")  # every gpt-4o offer fails
    before = gw.balance()
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(
            model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=50, stream=stream
        )
    assert caught.value.status_code >= 500
    request_id = caught.value.response.headers["x-request-id"]
    upstream_calls = [r for r in openai_fake.requests if r.path.endswith("/chat/completions")]
    assert {r.path.split("/")[1] for r in upstream_calls} == {"openai", "openrouter"}  # both offers tried
    assert gw.usage_rows(request_id) == []
    assert gw.hold_status(request_id) == "released"
    rec = gw.record(request_id)
    assert rec is not None and (rec["status"], rec["cost_pico"]) == ("error", 0)
    assert rec["http_status"] == caught.value.status_code
    assert gw.open_holds() == 0
    assert gw.balance() == before


def test_a_free_model_costs_nothing_and_writes_no_ledger_row(
    gw: Gateway, sdk: openai.OpenAI, openai_fake: OpenAIFake
) -> None:
    openai_fake.script("openai/gpt-oss-20b:free", Reply(input=500, output=700))
    before = gw.balance()
    raw = sdk.chat.completions.with_raw_response.create(
        model="openai/gpt-oss-20b:free", messages=[{"role": "user", "content": "free?"}], max_tokens=800
    )
    assert D(str(body_of(raw)["usage"]["cost"])) == 0
    assert D(raw.headers["x-gatewayz-cost"]) == 0
    request_id = raw.headers["x-request-id"]
    assert gw.usage_rows(request_id) == []
    assert gw.hold_status(request_id) is None  # a free request holds nothing
    rec = gw.record(request_id)
    assert rec is not None
    assert (rec["status"], rec["cost_pico"], rec["input_tokens"], rec["output_tokens"]) == ("ok", 0, 500, 700)
    assert gw.balance() == before


# --- a stream cut off by the client --------------------------------------------------------------


def sse_content_events(response: httpx.Response, wanted: int) -> int:
    """Read the stream until `wanted` content deltas arrived; return how many were read."""
    seen = 0
    for line in response.iter_lines():
        if line.startswith("data: {"):
            chunk = json.loads(line[6:])
            if any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or ()):
                seen += 1
                if seen >= wanted:
                    break
    return seen


def test_a_stream_cut_off_by_the_client_is_billed_for_what_was_generated(
    gw: Gateway, openai_fake: OpenAIFake
) -> None:
    text = "".join(f"word{i:03d} " for i in range(200))  # 1600 characters
    body = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "talk"}], "stream": True}
    headers = {"authorization": f"Bearer {gw.account.key}"}
    with httpx.Client(base_url=gw.server.url, headers=headers, timeout=20) as http:
        # The whole stream, for reference: billed from the upstream's own usage.
        openai_fake.script("gpt-4o", Reply(text=text, chunks=20, input=40, output=1000))
        with http.stream("POST", "/v1/chat/completions", json=body) as full:
            assert full.status_code == 200
            full_id = full.headers["x-request-id"]
            assert sse_content_events(full, 10_000) == 20
        full_rec = gw.wait_for_record(full_id)
        assert not full_rec["estimated"] and full_rec["output_tokens"] == 1000
        full_cost = full_rec["cost_pico"]
        assert full_cost == to_pico((D(40) * D("2.5") + D(1000) * D(10)) / MILLION * MARKUP)

        # The same answer, paced, and the caller hangs up after two content events. The upstream
        # sends its usage only at the end, so what was generated is counted with the estimator.
        openai_fake.script("gpt-4o", Reply(text=text, chunks=20, chunk_delay=0.1, input=40, output=1000))
        before = gw.balance()
        with http.stream("POST", "/v1/chat/completions", json=body) as cut:
            assert cut.status_code == 200
            cut_id = cut.headers["x-request-id"]
            assert sse_content_events(cut, 2) == 2
    rec = gw.wait_for_record(cut_id)
    assert bool(rec["estimated"]) is True
    assert rec["status"] == "cancelled"
    assert 0 < rec["output_tokens"] < 1000 and rec["input_tokens"] > 0
    # The estimate is priced like any usage: (input × 2.5 + output × 10) / 1e6 × 1.25, exactly.
    priced = (D(rec["input_tokens"]) * D("2.5") + D(rec["output_tokens"]) * D(10)) / MILLION * MARKUP
    assert rec["cost_pico"] == to_pico(priced)
    assert 0 < rec["cost_pico"] < full_cost
    assert [r["amount_pico"] for r in gw.usage_rows(cut_id)] == [-rec["cost_pico"]]
    assert gw.hold_status(cut_id) == "settled"
    assert gw.balance() == before - D(rec["cost_pico"]) / D(10) ** 12
    # The gateway hung up on the upstream too: the fake never finished writing that stream.
    deadline = time.monotonic() + 3
    while openai_fake.open_streams and time.monotonic() < deadline:
        time.sleep(0.05)
    assert openai_fake.open_streams == 0
    assert openai_fake.requests[-1].completed is False


# --- the caller's request id ---------------------------------------------------------------------


def test_a_reused_caller_request_id_is_served_and_billed_each_time(
    gw: Gateway, sdk: openai.OpenAI, openai_fake: OpenAIFake
) -> None:
    """Callers set `x-request-id` for tracing and may reuse it (a retry, a conversation id): each
    request must still be served and billed once — the ledger cannot key on the caller's id."""
    trace = new_id("trace")
    before = gw.balance()
    expected = (D(11) * D("2.5") + D(7) * D(10)) / MILLION * MARKUP  # the fake's default usage
    for _ in range(2):
        raw = sdk.chat.completions.with_raw_response.create(
            model="openai/gpt-4o",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=50,
            extra_headers={"x-request-id": trace},
        )
        assert raw.status_code == 200
    assert gw.balance() == before - 2 * expected
    assert gw.open_holds() == 0


def test_a_reused_request_id_cannot_release_another_requests_hold(
    gw: Gateway, sdk: openai.OpenAI, openai_fake: OpenAIFake
) -> None:
    """While a request is in flight its reservation must keep counting. A second request that
    reuses its `x-request-id` (here to a free model, which needs no hold of its own) must not
    close that hold: otherwise parallel requests can spend far beyond what their holds allow."""
    trace = new_id("trace")
    openai_fake.script("gpt-4o", Reply(delay=0.8))
    messages: list[Any] = [{"role": "user", "content": "hi"}]
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(
            lambda: sdk.chat.completions.create(
                model="openai/gpt-4o",
                messages=messages,
                max_tokens=1000,
                extra_headers={"x-request-id": trace},
            )
        )
        # Found by the user, not by the caller's id: the ledger may key the hold on its own id.
        deadline = time.monotonic() + 5
        while gw.open_holds() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gw.open_holds() == 1
        try:
            sdk.chat.completions.create(
                model="openai/gpt-oss-20b:free", messages=messages, extra_headers={"x-request-id": trace}
            )
        except openai.APIStatusError:
            pass
        still_in_flight = not slow.done()
        open_now = gw.open_holds()
        assert slow.result().choices
    assert still_in_flight
    assert open_now == 1, "the in-flight request's hold was closed by another request"
    assert gw.open_holds() == 0


# --- idempotent grants through the CLI -----------------------------------------------------------


def gatewayz(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "gatewayz"
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=60, check=False)


async def _user_with_credits(url: str, credits: Decimal) -> str:
    db = open_database(url)
    try:
        return await new_user(db, credits)
    finally:
        await db.close()


@pytest.fixture(params=BACKENDS)
def cli_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAYZ_", "SUPABASE_", "UPSTASH_"))}
    with database_url(request.param, tmp_path) as url:
        env = {**base, "GATEWAYZ_DATABASE_URL": url}
        if request.param == "postgres":
            env["GATEWAYZ_KEY_SECRET"] = KEY_SECRET
        yield url, env


def test_a_replayed_cli_grant_changes_nothing(cli_env: tuple[str, dict[str, str]]) -> None:
    url, env = cli_env
    migrate_url(url)
    user_id = run_async(lambda: _user_with_credits(url, D(1)))
    grant = ("credits", "grant", "--user", user_id, "--amount", "2.000000000001", "--reason", "promo")

    first = gatewayz(env, *grant, "--idempotency-key", "promo-2026-11")
    assert first.returncode == 0, first.stderr
    out1 = json.loads(first.stdout)
    assert out1["applied"] is True and out1["user_id"] == user_id
    assert out1["balance"] == "3.000000000001"
    assert out1["transaction_id"].startswith("txn_")

    replay = gatewayz(env, *grant, "--idempotency-key", "promo-2026-11")
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout) == {**out1, "applied": False}

    rows = query(
        url,
        "SELECT id, amount_pico, type, idempotency_key FROM credit_transactions WHERE user_id = :u"
        " ORDER BY created_at",
        {"u": user_id},
    )
    assert [(r["amount_pico"], r["type"], r["idempotency_key"]) for r in rows] == [
        (1_000_000_000_000, "grant", None),
        (2_000_000_000_001, "grant", "promo-2026-11"),
    ]
    assert rows[1]["id"] == out1["transaction_id"]
    assert check_ledger(query(url, LEDGER_STATE, {"user_id": user_id})[0]) == 3_000_000_000_001


# --- the hot-path budget -------------------------------------------------------------------------


class CountingDatabase(Database):
    """A test-only proxy that counts transactions (each is one database round trip)."""

    def __init__(self, inner: Database) -> None:
        self.inner = inner
        self.dialect = inner.dialect
        self.calls: list[str] = []

    async def transaction(self, steps: Sequence[Step]) -> list[list[Row]]:
        self.calls.append(" | ".join(" ".join(sql.split()[:3]) for sql, _ in steps))
        return await self.inner.transaction(steps)

    async def execute_script(self, script: str) -> None:
        await self.inner.execute_script(script)

    async def close(self) -> None:
        await self.inner.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_warm_request_makes_two_database_round_trips_one_on_a_spare_hold(
    backend: str, tmp_path: Path, fakes: dict[str, Any], openai_fake: OpenAIFake
) -> None:
    from shared.runtime import Runtime
    from shared.server import create_server_app

    with database_url(backend, tmp_path) as url:
        settings = gateway_settings(fakes, url)
        account = off_main_thread(provision, settings, "budget@example.com", D(10))
        rt = Runtime.build(settings)
        counting = CountingDatabase(rt.db)
        rt.db = rt.ledger.db = rt.keys.db = rt.accounts.db = counting
        app = create_server_app(settings)
        app.state.runtime = rt
        server = GatewayServer(app).start()
        counts: dict[str, list[str]] = {}
        try:
            with openai.OpenAI(
                base_url=f"{server.url}/v1", api_key=account.key, max_retries=0, timeout=20
            ) as client:

                def measure(name: str, model: str, stream: bool) -> None:
                    counting.calls.clear()
                    messages: list[Any] = [{"role": "user", "content": "hi"}]
                    if stream:
                        chunks = list(
                            client.chat.completions.create(
                                model=model, messages=messages, max_tokens=20, stream=True
                            )
                        )
                        assert chunks
                    else:
                        assert client.chat.completions.create(
                            model=model, messages=messages, max_tokens=20
                        ).choices
                    counts[name] = list(counting.calls)

                measure("cold", "openai/gpt-4o", False)
                measure("warm", "openai/gpt-4o", False)
                measure("warm stream", "openai/gpt-4o", True)
                measure("warm free", "openai/gpt-oss-20b:free", False)
                measure("warm free stream", "openai/gpt-oss-20b:free", True)
        finally:
            server.stop()
    summary = {name: len(calls) for name, calls in counts.items()}
    # Cold: the key's lookup, and the newest catalog-sync overlay's id (read once per
    # GATEWAYZ_CATALOG_REFRESH_SECONDS per instance), before the two of every request.
    assert counts["cold"][0].startswith("SELECT id FROM"), counts
    # On PostgreSQL the warm request's settlement (the key's second in a row) also writes a spare
    # hold, which the next request takes: it sends no reservation (shared.billing.spares).
    on_spare = 1 if backend == "postgres" else 2
    assert summary == {
        "cold": 4,
        "warm": 2,
        "warm stream": on_spare,
        "warm free": 1,
        "warm free stream": 1,
    }, counts
    # The reservation: the user's row lock first where the database needs one (PostgreSQL).
    assert "INSERT INTO credit_holds" in counts["warm"][0]
    assert "INSERT INTO request_records" in counts["warm"][1]
    spare_written = "INSERT INTO credit_holds" in counts["warm"][1]
    assert spare_written == (backend == "postgres")
