"""Rate limits end to end (SPEC §7, issue 4): gateways on loopback with limits of their own, driven
by the official `openai` SDK (httpx where a caller sends no key at all), against the fake upstream.

Every test starts its own gateway(s) on a SQLite file of its own: in-process (tests/harness.py),
except the two instances that share Redis, which are `gatewayz serve` processes (as deployed: one
interpreter and event loop each) on Redis logical DB 14, flushed around the test. The outage test
starts and stops a redis-server of its own. Every client is 127.0.0.1: tests that need several
client IPs trust 127.0.0.1 as a proxy (GATEWAYZ_TRUSTED_PROXIES) and send `X-Forwarded-For`.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from shared.tokens import estimate_prompt
from tests.conftest import Account, provision
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply
from tests.harness import GatewayServer
from tests.limits.conftest import Gateways, RedisProcess

MODEL, NATIVE = "openai/gpt-4o", "gpt-4o"
FREE_MODEL = "meta-llama/llama-3.3-70b-instruct:free"  # served by openrouter, an OpenAI-dialect row
HELLO = [{"role": "user", "content": "hello"}]
DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s|(\d+)ms)$")
PROXY = {"GATEWAYZ_TRUSTED_PROXIES": "127.0.0.1/32"}


def sdk(gw: GatewayServer, key: str, ip: str | None = None) -> openai.OpenAI:
    headers = {"x-forwarded-for": ip} if ip else None
    return openai.OpenAI(
        base_url=f"{gw.url}/v1", api_key=key, max_retries=0, timeout=20, default_headers=headers
    )


def async_sdk(url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)


def status(gw: GatewayServer) -> dict[str, Any]:
    # From an address of its own, so that polling never spends a test IP's budget.
    r = httpx.get(f"{gw.url}/v1/status", headers={"x-forwarded-for": "192.0.2.250"}, timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json()["limits"])


def duration_ms(text: str) -> int:
    m = DURATION.match(text)
    assert m, f"not an OpenAI reset duration: {text!r}"
    h, mi, s, ms = (int(g) if g else 0 for g in m.groups())
    return ((h * 60 + mi) * 60 + s) * 1000 + ms


def assert_rate_headers(headers: Any) -> dict[str, int]:
    """The six `x-ratelimit-*` headers are there and parse; returns them as numbers (ms for resets)."""
    out: dict[str, int] = {}
    for kind in ("requests", "tokens"):
        out[f"limit-{kind}"] = int(headers[f"x-ratelimit-limit-{kind}"])
        out[f"remaining-{kind}"] = int(headers[f"x-ratelimit-remaining-{kind}"])
        out[f"reset-{kind}"] = duration_ms(headers[f"x-ratelimit-reset-{kind}"])
        assert 0 <= out[f"remaining-{kind}"] <= out[f"limit-{kind}"]
    return out


def migrated(settings: Any, email: str) -> Account:
    """The database is migrated (by provisioning an account nobody uses in the test)."""
    return provision(settings, email, Decimal(0))


def assert_rate_limited(err: openai.APIStatusError) -> int:
    """A 429 in the OpenAI envelope with a `retry-after` in whole seconds; returns it."""
    assert err.status_code == 429
    body = err.response.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    assert body["error"]["code"] == "rate_limit_exceeded" and err.code == "rate_limit_exceeded"
    retry_after = err.response.headers["retry-after"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    return int(retry_after)


def once_admitted(client: openai.OpenAI, deadline: float, why: str) -> Any:
    """A completion as soon as the limits admit one (retried every 50 ms); fails past `deadline`
    (a `time.monotonic()` value) with `why`."""
    while True:
        try:
            return client.chat.completions.create(model=MODEL, messages=HELLO)
        except openai.RateLimitError:
            assert time.monotonic() < deadline, why
            time.sleep(0.05)


# --- layer 2 -------------------------------------------------------------------------------------
async def test_rpm_is_exact_across_two_gateways_sharing_redis(
    e2e_redis: str, gateways: Gateways, openai_fake: OpenAIFake, tmp_path: Path
) -> None:
    """Two `gatewayz serve` processes on one SQLite file and one Redis, 100 concurrent requests."""
    env = gateways.env(GATEWAYZ_REDIS_URL=e2e_redis)
    account = await asyncio.to_thread(
        provision,
        gateways.settings_of(env),
        "exact@example.com",
        Decimal(100),
        rate_limits={"requests_per_minute": 10},
    )
    first, second = await asyncio.to_thread(gateways.serve, env, 2, tmp_path)
    clients = [async_sdk(first.url, account.key), async_sdk(second.url, account.key)]

    async def call(i: int) -> tuple[int, Any]:
        try:
            raw = await clients[i % 2].chat.completions.with_raw_response.create(model=MODEL, messages=HELLO)
            return raw.http_response.status_code, raw.headers
        except openai.APIStatusError as err:
            return err.status_code, err

    try:
        t0 = time.monotonic()
        results = await asyncio.gather(*(call(i) for i in range(100)))
        burst = time.monotonic() - t0
        ok = [h for code, h in results if code == 200]
        refused = [e for code, e in results if code == 429]
        # What the instances logged about the store (a fallback to per-instance limits, say).
        notes = [
            ln for p in (first, second) for ln in p.log().splitlines() if "hot-state" in ln or "rror" in ln
        ]
        assert (len(ok), len(refused)) == (10, 90), notes
        # One shared budget: the ten admitted saw remaining 9, 8, ..., 0 between them.
        assert sorted(int(h["x-ratelimit-remaining-requests"]) for h in ok) == list(range(10))
        assert len(openai_fake.requests) == 10  # the refused never reached the upstream
        # GCRA: the 11th waits one emission interval (60 s / 10) minus the time since the first.
        for err in refused:
            assert 6 - math.ceil(burst) <= assert_rate_limited(err) <= 6
        # After the wait it says, exactly one more request passes (one interval replenished).
        with pytest.raises(openai.RateLimitError) as eleventh:
            await clients[1].chat.completions.create(model=MODEL, messages=HELLO)
        wait = assert_rate_limited(eleventh.value)
        assert 6 - math.ceil(time.monotonic() - t0) <= wait <= 6
        await asyncio.sleep(wait)
        raw = await clients[0].chat.completions.with_raw_response.create(model=MODEL, messages=HELLO)
        assert raw.headers["x-ratelimit-remaining-requests"] == "0"
        with pytest.raises(openai.RateLimitError) as again:
            await clients[1].chat.completions.create(model=MODEL, messages=HELLO)
        assert 5 <= assert_rate_limited(again.value) <= 6
        assert len(openai_fake.requests) == 11
    finally:
        for c in clients:
            await c.close()
    for proc in (first, second):
        assert "unhandled error" not in proc.log(), proc.log()[-3000:]  # no 500 anywhere


def test_concurrency_limit_and_a_disconnect_frees_the_slot(
    gateways: Gateways, openai_fake: OpenAIFake
) -> None:
    settings = gateways.settings()
    account = provision(settings, "conc@example.com", Decimal(100), rate_limits={"concurrency": 2})
    gw = gateways.start(settings)
    slow = Reply(chunks=40, chunk_delay=0.15)  # six seconds of stream
    openai_fake.script(NATIVE, slow, slow)
    with sdk(gw, account.key) as client:
        started = time.monotonic()
        one = client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
        two = client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
        try:
            next(iter(one))
            next(iter(two))
            with pytest.raises(openai.RateLimitError) as third:
                client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
            assert_rate_limited(third.value)
            assert "concurrent" in third.value.message
            assert len(openai_fake.requests) == 2
            # The caller of the first stream goes away mid-stream: its slot comes back at once.
            one.close()
            fresh = once_admitted(client, started + 4, "the disconnected stream kept its slot")
            assert fresh.choices[0].message.content
            # Both streams would have run for six seconds: the slot came from the disconnect.
            assert time.monotonic() - started < 5
            assert next(iter(two)).choices  # the second stream goes on
        finally:
            one.close()
            two.close()


def test_a_repeated_caller_request_id_does_not_share_a_slot(
    gateways: Gateways, openai_fake: OpenAIFake
) -> None:
    """`x-request-id` is the caller's to choose (and echoed back): two live requests that send the
    same one are still two requests, each with a slot of its own."""
    settings = gateways.settings()
    account = provision(settings, "same-id@example.com", Decimal(100), rate_limits={"concurrency": 1})
    gw = gateways.start(settings)
    openai_fake.script(NATIVE, Reply(chunks=20, chunk_delay=0.1))
    same = {"x-request-id": "my-trace-1"}
    with sdk(gw, account.key) as client:
        stream = client.chat.completions.create(model=MODEL, messages=HELLO, stream=True, extra_headers=same)
        try:
            next(iter(stream))
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(model=MODEL, messages=HELLO, extra_headers=same)
        finally:
            stream.close()


def test_concurrency_refusal_retry_after_is_short(gateways: Gateways, openai_fake: OpenAIFake) -> None:
    """A slot frees when a request ends, typically within seconds; the lease (11 minutes) is only
    the backstop for a dead instance and makes a useless `retry-after`."""
    settings = gateways.settings()
    account = provision(settings, "conc-retry@example.com", Decimal(100), rate_limits={"concurrency": 1})
    gw = gateways.start(settings)
    openai_fake.script(NATIVE, Reply(chunks=20, chunk_delay=0.1))
    with sdk(gw, account.key) as client:
        stream = client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
        try:
            next(iter(stream))
            with pytest.raises(openai.RateLimitError) as refused:
                client.chat.completions.create(model=MODEL, messages=HELLO)
            assert assert_rate_limited(refused.value) <= 60
        finally:
            stream.close()


def test_a_disconnect_before_the_first_byte_frees_the_slot(
    gateways: Gateways, openai_fake: OpenAIFake
) -> None:
    """The caller gives up while the gateway still waits for the upstream's first byte."""
    settings = gateways.settings()
    account = provision(settings, "early@example.com", Decimal(100), rate_limits={"concurrency": 1})
    gw = gateways.start(settings)
    openai_fake.script(NATIVE, Reply(delay=0.8))
    body = {"model": MODEL, "messages": HELLO, "stream": True}
    headers = {"authorization": f"Bearer {account.key}"}
    with (
        httpx.Client(timeout=0.3) as impatient,
        pytest.raises(httpx.ReadTimeout),
        impatient.stream("POST", f"{gw.url}/v1/chat/completions", json=body, headers=headers) as r,
    ):
        r.read()
    gave_up = time.monotonic()
    with sdk(gw, account.key) as client:
        # The slot is held until the upstream answers (0.5 s from now), then freed.
        completion = once_admitted(client, gave_up + 3, "the slot of the caller that left was not freed")
    assert completion.choices[0].message.content


def test_a_request_over_the_token_budget_is_refused_before_the_upstream(
    gateways: Gateways, openai_fake: OpenAIFake
) -> None:
    settings = gateways.settings()
    account = provision(settings, "tpm@example.com", Decimal(100), rate_limits={"tokens_per_minute": 500})
    gw = gateways.start(settings)
    with sdk(gw, account.key) as client:
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=1000)
        assert_rate_limited(refused.value)
        assert "tokens_per_minute" in refused.value.message
        assert openai_fake.requests == []  # refused before any upstream call
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=HELLO, max_tokens=100)
        estimate = estimate_prompt({"messages": HELLO}) + 100
        numbers = assert_rate_headers(raw.headers)
        assert numbers["limit-tokens"] == 500 and numbers["remaining-tokens"] == 500 - estimate
        assert len(openai_fake.requests) == 1


# --- headers -----------------------------------------------------------------------------------
def test_headers_parse_with_the_sdk_raw_response(gateways: Gateways, openai_fake: OpenAIFake) -> None:
    settings = gateways.settings()
    limits = {"requests_per_minute": 4, "tokens_per_minute": 10_000}
    account = provision(settings, "headers@example.com", Decimal(100), rate_limits=limits)
    gw = gateways.start(settings)
    estimate = estimate_prompt({"messages": HELLO})
    with sdk(gw, account.key) as client:
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=HELLO)
        assert raw.parse().choices[0].message.content
        h = assert_rate_headers(raw.headers)
        assert (h["limit-requests"], h["remaining-requests"]) == (4, 3)
        assert raw.headers["x-ratelimit-reset-requests"] == "15s"  # one unit of 4 per minute
        assert (h["limit-tokens"], h["remaining-tokens"]) == (10_000, 10_000 - estimate)
        assert 0 < h["reset-tokens"] <= estimate * 6  # 6 ms per token at 10,000 per minute

        streamed = client.chat.completions.with_raw_response.create(model=MODEL, messages=HELLO, stream=True)
        h = assert_rate_headers(streamed.headers)
        assert h["remaining-requests"] == 2
        assert "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)

        legacy = client.completions.with_raw_response.create(model=MODEL, prompt="hello")
        assert assert_rate_headers(legacy.headers)["remaining-requests"] == 1

        client.chat.completions.create(model=MODEL, messages=HELLO)
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.with_raw_response.create(model=MODEL, messages=HELLO)
    assert 1 <= assert_rate_limited(refused.value) <= 15
    assert refused.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.value.response.headers["x-request-id"].startswith("req_")


# --- layer 1 -------------------------------------------------------------------------------------
def test_brute_force_from_one_ip_does_not_block_another(gateways: Gateways, openai_fake: OpenAIFake) -> None:
    settings = gateways.settings(**PROXY, GATEWAYZ_IP_AUTH_FAILURES_PER_MINUTE="3", GATEWAYZ_IP_RPM="1000")
    account = provision(settings, "brute@example.com", Decimal(100))
    gw = gateways.start(settings)
    attacker, bystander = "203.0.113.10", "198.51.100.20"
    with sdk(gw, "gw_live_not-a-real-key-000000000000000000000", attacker) as bad:
        for _ in range(3):
            with pytest.raises(openai.AuthenticationError):
                bad.chat.completions.create(model=MODEL, messages=HELLO)
        with pytest.raises(openai.RateLimitError) as throttled:
            bad.chat.completions.create(model=MODEL, messages=HELLO)
    assert 17 <= assert_rate_limited(throttled.value) <= 20  # 3 per minute: one back in 20 s
    # A valid key from the throttled IP is refused too: the budget is the IP's, not the key's.
    with sdk(gw, account.key, attacker) as same_ip, pytest.raises(openai.RateLimitError):
        same_ip.chat.completions.create(model=MODEL, messages=HELLO)
    with sdk(gw, account.key, bystander) as good:
        assert good.chat.completions.create(model=MODEL, messages=HELLO).choices[0].message.content
    assert status(gw)["rejections"]["auth_failures"] >= 2


def test_an_untrusted_forwarded_for_is_ignored(gateways: Gateways, openai_fake: OpenAIFake) -> None:
    """Without a trusted proxy, `X-Forwarded-For` cannot buy a caller a fresh IP budget."""
    settings = gateways.settings(GATEWAYZ_IP_RPM="3")
    account = provision(settings, "xff@example.com", Decimal(100))
    gw = gateways.start(settings)
    for i in range(3):
        with sdk(gw, account.key, f"198.51.100.{i + 1}") as client:
            client.chat.completions.create(model=MODEL, messages=HELLO)
    with sdk(gw, account.key, "198.51.100.99") as client, pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model=MODEL, messages=HELLO)
    assert 17 <= assert_rate_limited(refused.value) <= 20


def test_a_known_key_is_checked_per_ip_within_its_admission(
    gateways: Gateways, openai_fake: OpenAIFake
) -> None:
    """Once a key is known to the instance, layer 1 rides on the admission's call (one store
    round trip less); the IP budget holds all the same, failed requests included."""
    settings = gateways.settings(GATEWAYZ_IP_RPM="4")
    account = provision(settings, "known@example.com", Decimal(100))
    gw = gateways.start(settings)
    with sdk(gw, account.key) as client:
        client.chat.completions.create(model=MODEL, messages=HELLO)  # 1: the key becomes known
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model=MODEL, messages=[])  # 2: refused before admission
        hot = gw.runtime.hot
        calls: list[str] = []
        inside: list[str] = []  # the memory store's finish is built on its own rate
        rate, finish = hot.rate, hot.finish

        async def counted_rate(*args: Any, **kwargs: Any) -> Any:
            calls.extend([] if inside else ["rate"])
            return await rate(*args, **kwargs)

        async def counted_finish(*args: Any, **kwargs: Any) -> Any:
            calls.append("finish")
            inside.append("finish")
            try:
                return await finish(*args, **kwargs)
            finally:
                inside.pop()

        hot.rate, hot.finish = counted_rate, counted_finish  # type: ignore[method-assign]
        try:
            ok = client.chat.completions.with_raw_response.create(model=MODEL, messages=HELLO)  # 3
        finally:
            hot.rate, hot.finish = rate, finish  # type: ignore[method-assign]
        assert calls == ["rate", "finish"]  # layer 1 + layer 2 in one call, then the request's end
        assert ok.headers["x-ratelimit-limit-requests"] != "4"  # the headers speak of the key's limits
        client.chat.completions.create(model=MODEL, messages=HELLO)  # 4: the IP's last one
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model=MODEL, messages=HELLO)  # 5
    assert "this IP address" in refused.value.response.json()["error"]["message"]
    assert 14 <= assert_rate_limited(refused.value) <= 15  # 4 per minute: one back in 15 s
    assert gw.runtime.limiter.rejections["ip"] >= 1


def test_velocity_mode_tightens_layer_one(gateways: Gateways) -> None:
    settings = gateways.settings(
        **PROXY,
        GATEWAYZ_IP_RPM="20",
        GATEWAYZ_VELOCITY_MIN_REQUESTS="6",
        GATEWAYZ_VELOCITY_MIN_SOURCES="3",  # each network counts for at most 2 responses a minute
        GATEWAYZ_VELOCITY_ERROR_RATE="0.5",
        GATEWAYZ_VELOCITY_FACTOR="0.5",
        GATEWAYZ_VELOCITY_SECONDS="60",
    )
    migrated(settings, "velocity@example.com")
    gw = gateways.start(settings)
    before = status(gw)["velocity"]
    assert before["active"] is False
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        for ip in ("203.0.113.66", "198.51.100.5", "192.0.2.9"):  # three networks
            bad = {"authorization": "Bearer gw_live_wrong", "x-forwarded-for": ip}
            for _ in range(2):
                r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO}, headers=bad)
                assert r.status_code == 401
        after = status(gw)["velocity"]
        assert after["active"] is True
        assert after["error_rate_last_minute"] >= 0.5
        # Layer 1 is halved for everyone: a fresh IP gets 10 requests a minute, not 20.
        fresh = {"x-forwarded-for": "198.51.100.77"}
        codes = [http.get("/v1/models", headers=fresh).status_code for _ in range(11)]
        assert codes == [200] * 10 + [429]
        refused = http.get("/v1/models", headers=fresh)
        assert refused.status_code == 429
        assert refused.headers["x-ratelimit-limit-requests"] == "10"
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(refused.headers["retry-after"]) <= 6


def test_one_client_cannot_switch_velocity_mode_on(gateways: Gateways) -> None:
    """The probe of issue 10: 55 bad-key requests from one client on a quiet instance tightened
    layer 1 for everyone. With the defaults (50 responses from at least 5 networks), one network
    — its neighbouring addresses included — counts for 10 and cannot; five networks can."""
    settings = gateways.settings(**PROXY, GATEWAYZ_IP_RPM="20")
    migrated(settings, "velocity-one@example.com")
    gw = gateways.start(settings)
    with httpx.Client(base_url=gw.url, timeout=10) as http:

        def bad_keys(ip: str, count: int) -> None:
            headers = {"authorization": "Bearer gw_live_wrong", "x-forwarded-for": ip}
            for _ in range(count):
                r = http.post(
                    "/v1/chat/completions", json={"model": MODEL, "messages": HELLO}, headers=headers
                )
                assert r.status_code == 401

        for last in range(11):  # 55 from one /24
            bad_keys(f"203.0.113.{last + 1}", 5)
        quiet = status(gw)["velocity"]
        assert quiet["active"] is False  # was True: layer 1 halved for every caller for 180 s
        assert quiet["requests_last_minute"] == 10
        # Layer 1 is untouched for everyone else: 20 a minute, not 10.
        fresh = {"x-forwarded-for": "172.16.5.7"}
        codes = [http.get("/v1/models", headers=fresh).status_code for _ in range(21)]
        assert codes == [200] * 20 + [429]
        for network in ("198.51.100", "192.0.2", "100.64.1", "100.64.2"):  # four more networks
            bad_keys(f"{network}.1", 10)
        assert status(gw)["velocity"]["active"] is True


# --- layer 3 -------------------------------------------------------------------------------------
def test_anonymous_callers_get_a_few_free_requests_per_ip(
    gateways: Gateways, openai_fake: OpenAIFake
) -> None:
    settings = gateways.settings(**PROXY, GATEWAYZ_ANONYMOUS="true", GATEWAYZ_ANONYMOUS_PER_DAY="3")
    migrated(settings, "anonymous@example.com")
    gw = gateways.start(settings)
    free = {"model": FREE_MODEL, "messages": HELLO}
    with httpx.Client(base_url=gw.url, timeout=20) as http:
        me = {"x-forwarded-for": "198.51.100.31"}
        for i in range(3):
            r = http.post("/v1/chat/completions", json=free, headers=me)
            assert r.status_code == 200, (i, r.text)
            assert r.json()["choices"][0]["message"]["content"]
        r = http.post("/v1/chat/completions", json=free, headers=me)
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
        assert int(r.headers["retry-after"]) > 3600
        paid = http.post(
            "/v1/chat/completions",
            json={"model": MODEL, "messages": HELLO},
            headers={"x-forwarded-for": "198.51.100.32"},
        )
        assert paid.status_code == 401
        other = http.post("/v1/chat/completions", json=free, headers={"x-forwarded-for": "198.51.100.33"})
        assert other.status_code == 200
    assert [r.body["model"] for r in openai_fake.requests] == [FREE_MODEL] * 4


def test_anonymous_access_is_off_by_default(gateways: Gateways, openai_fake: OpenAIFake) -> None:
    settings = gateways.settings()
    migrated(settings, "no-anonymous@example.com")
    gw = gateways.start(settings)
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": FREE_MODEL, "messages": HELLO}, timeout=10)
    assert r.status_code == 401
    assert openai_fake.requests == []


# --- a refusal costs nothing -------------------------------------------------------------------
def ledger_state(settings: Any, account: Account) -> tuple[Decimal, Decimal, list[Any]]:
    from shared.runtime import Runtime

    async def read() -> tuple[Decimal, Decimal, list[Any]]:
        rt = Runtime.build(settings)
        try:
            balance, held = await rt.ledger.balance(account.user_id)
            rows, _ = await rt.ledger.transactions(account.user_id, limit=100, cursor=None)
            return balance, held, [dict(r) for r in rows]
        finally:
            await rt.close()

    return asyncio.run(read())


def test_a_limit_rejection_costs_nothing(gateways: Gateways, openai_fake: OpenAIFake) -> None:
    settings = gateways.settings()
    limits = {"requests_per_minute": 1, "tokens_per_minute": 1000}
    account = provision(settings, "free-429@example.com", Decimal(5), rate_limits=limits)
    gw = gateways.start(settings)
    with sdk(gw, account.key) as client:
        client.chat.completions.create(model=MODEL, messages=HELLO)
        before = ledger_state(settings, account)
        assert before[0] < Decimal(5) and before[1] == 0  # the first request was billed
        for _ in range(5):
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(model=MODEL, messages=HELLO)
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=5000, stream=True)
    assert ledger_state(settings, account) == before
    assert len(openai_fake.requests) == 1


# --- Redis outage ------------------------------------------------------------------------------
def test_redis_outage_falls_back_to_local_limits_and_recovers(
    gateways: Gateways, redis_process: RedisProcess, openai_fake: OpenAIFake
) -> None:
    redis_process.start()
    settings = gateways.settings(GATEWAYZ_REDIS_URL=redis_process.url)
    account = provision(settings, "outage@example.com", Decimal(100), rate_limits={"requests_per_minute": 4})
    gw = gateways.start(settings)
    codes: list[int] = []

    def call(client: openai.OpenAI) -> Any:
        try:
            raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=HELLO)
            codes.append(raw.http_response.status_code)
            return raw.headers
        except openai.APIStatusError as err:
            codes.append(err.status_code)
            return err

    with sdk(gw, account.key) as client:
        assert call(client)["x-ratelimit-remaining-requests"] == "3"
        assert call(client)["x-ratelimit-remaining-requests"] == "2"
        limits = status(gw)
        assert (limits["backend"], limits["degraded"]) == ("redis", False)

        redis_process.stop()
        t0 = time.monotonic()
        # Served on this instance's own memory, with its own (fresh) budget of 4: limits still hold.
        assert [call(client)["x-ratelimit-remaining-requests"] for _ in range(4)] == ["3", "2", "1", "0"]
        assert isinstance(call(client), openai.RateLimitError)
        assert time.monotonic() - t0 < 5, "falling back must take a bounded time"
        limits = status(gw)
        assert limits["degraded"] is True and limits["fallback_calls"] > 0

        redis_process.start()  # empty: nothing is kept on disk
        deadline = time.monotonic() + 8  # FallbackHot retries the remote store every 5 s
        while status(gw)["degraded"]:
            assert time.monotonic() < deadline, "the gateway did not return to Redis by itself"
            time.sleep(0.25)
        # Back on the shared store: its budget, not the exhausted local one.
        assert call(client)["x-ratelimit-remaining-requests"] == "3"
    assert set(codes) <= {200, 429} and codes.count(429) == 1
