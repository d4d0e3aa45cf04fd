"""Spare admissions (shared.limits.spares, issue 20 item 3): the end of a busy key's request admits
the key's next one ahead, in the same round trip, and the next request takes it without a call to
the store. A spare is an admission like any other: it counts against every limit exactly once, is
never made past a limit's edge, is given back (slot released, units refunded) when nobody may take
it, and is made only in the cases the module names.

The limiter runs on the real Redis (the Lua scripts through the gateway's RESP client) and on
Upstash's REST protocol (a bridge to that Redis); what the store holds is read from Redis itself.
The last tests drive a gateway on Redis with the official `openai` SDK.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import openai
import pytest

from shared.accounts.keys import KeyRecord, PlanLimits
from shared.config import LimitSettings
from shared.errors import RateLimited
from shared.hot import HotStore
from shared.hot.fallback import FallbackHot
from shared.limits.limiter import Admission, Limiter
from tests.conftest import provision
from tests.fakes.openai_fake import OpenAIFake
from tests.limits.conftest import CONTRACT_DB, E2E_DB, Gateways, RedisProcess, open_backend, redis_client
from tests.limits.test_rate_limits_e2e import HELLO, MODEL, status


@pytest.fixture(params=["redis", "upstash"])
async def remote(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[HotStore]:
    bridge = request.getfixturevalue("upstash_bridge") if request.param == "upstash" else None
    store = open_backend(request.param, bridge)
    yield store
    await store.close()


def key_record(prefix: str, name: str = "k1", **plan: Any) -> KeyRecord:
    plan.setdefault("concurrency", 5)
    return KeyRecord(
        key_id=f"{prefix}{name}",
        user_id=f"{prefix}user",
        scopes=frozenset({"inference"}),
        rate_limits={},
        plan=PlanLimits(**plan),
    )


def limiter(hot: HotStore, seconds: float = 30.0) -> Limiter:
    return Limiter(hot, LimitSettings(spare_seconds=seconds))


def slots_held(prefix: str) -> int:
    client = redis_client(CONTRACT_DB)
    try:
        return int(client.zcard(f"rl:user:{prefix}user:conc"))
    finally:
        client.close()


def remaining(admission: Admission, name: str = "plan requests_per_minute") -> int:
    return next(s.remaining for s in admission.states if s.rule.name == name)


async def request(
    lim: Limiter, key: KeyRecord, n: int, tokens: int = 100, ip: str | None = None
) -> Admission:
    """One request's admission and end (its actual tokens what it estimated)."""
    admission = await lim.admit(key, f"req{n}", tokens, ip)
    await lim.finish(admission, tokens)
    return admission


async def test_the_end_of_a_busy_keys_request_admits_its_next_one(remote: HotStore, prefix: str) -> None:
    """The first request of a key makes no spare (nothing says more will come); the second, which
    follows it closely, does; the third takes it (no call to the store) and makes the next. Each
    counts once: the limit's remaining count goes down by one a request, the spare included."""
    lim = limiter(remote)
    key = key_record(prefix, requests_per_minute=10)
    first = await request(lim, key, 1)
    assert remaining(first) == 9 and lim.spares.state() == {"taken": 0, "waiting": 0}
    second = await request(lim, key, 2)
    assert remaining(second) == 8 and lim.spares.state() == {"taken": 0, "waiting": 1}
    assert slots_held(prefix) == 1  # the spare's slot: the next request's
    third = await lim.admit(key, "req3", 100)
    assert third.spare and remaining(third) == 7  # the spare's own admission: the third unit
    assert lim.spares.state() == {"taken": 1, "waiting": 0}
    await lim.finish(third, 100)
    assert lim.spares.state() == {"taken": 1, "waiting": 1} and slots_held(prefix) == 1
    await lim.spares.close()  # given back: its slot released, its unit refunded
    assert slots_held(prefix) == 0
    fourth = await lim.admit(key, "req4", 100)
    assert not fourth.spare and remaining(fourth) == 6  # three requests and this one
    await lim.finish(fourth, 100)


async def test_at_a_limits_edge_no_spare_is_made_and_the_next_request_is_refused(
    remote: HotStore, prefix: str
) -> None:
    """A limit of 3 a minute: the second request's end admits the third ahead; the third's end
    finds no room, so no spare; the fourth is refused by the store as ever. Exactly three pass."""
    lim = limiter(remote)
    key = key_record(prefix, requests_per_minute=3)
    await request(lim, key, 1)
    await request(lim, key, 2)
    third = await lim.admit(key, "req3", 100)
    assert third.spare and remaining(third) == 0
    await lim.finish(third, 100)
    assert lim.spares.state()["waiting"] == 0
    with pytest.raises(RateLimited):
        await lim.admit(key, "req4", 100)
    assert slots_held(prefix) == 0


async def test_a_spare_nobody_takes_is_given_back_in_time(remote: HotStore, prefix: str) -> None:
    lim = limiter(remote, seconds=0.2)
    key = key_record(prefix, requests_per_minute=10, tokens_per_minute=10_000)
    await request(lim, key, 1)
    await request(lim, key, 2)
    assert lim.spares.state()["waiting"] == 1 and slots_held(prefix) == 1
    for _ in range(50):
        await asyncio.sleep(0.05)
        if lim.spares.state()["waiting"] == 0 and slots_held(prefix) == 0:
            break
    assert lim.spares.state()["waiting"] == 0 and slots_held(prefix) == 0
    after = await lim.admit(key, "req3", 100)
    assert not after.spare
    assert remaining(after) == 7  # requests 1, 2 and this one: the spare's unit came back
    assert 0 <= remaining(after, "plan tokens_per_minute") - (10_000 - 300) <= 200  # and its tokens
    await lim.finish(after, 100)


async def test_a_longer_next_turn_takes_the_spare_up_to_twice_the_last_estimate(
    remote: HotStore, prefix: str
) -> None:
    """A conversation's next request sends a longer prompt: the spare took twice the last
    request's estimate, so a next request of up to that takes it, and its end corrects the token
    budget to what it used."""
    lim = limiter(remote)
    key = key_record(prefix, requests_per_minute=10, tokens_per_minute=10_000)
    await request(lim, key, 1)
    await request(lim, key, 2)
    third = await lim.admit(key, "req3", 200)
    assert third.spare and lim.spares.state()["taken"] == 1
    assert 0 <= remaining(third, "plan tokens_per_minute") - (10_000 - 400) <= 5
    await lim.finish(third, 150)  # used 150 of the 200 the spare took: 50 come back
    fourth = await lim.admit(key, "req4", 400)  # twice 200: the spare the third's end made
    assert fourth.spare
    # 100 + 100 + 150 used, and 400 taken by the spare the fourth holds
    assert 0 <= remaining(fourth, "plan tokens_per_minute") - (10_000 - 750) <= 5
    await lim.finish(fourth, 400)
    await lim.spares.close()


@pytest.mark.parametrize("why", ["another record", "more tokens", "another ip", "fanned out"])
async def test_a_request_that_may_not_take_the_spare_gives_it_back_and_is_admitted_as_usual(
    remote: HotStore, prefix: str, why: str
) -> None:
    lim = limiter(remote)
    key = key_record(prefix, requests_per_minute=10, tokens_per_minute=10_000)
    await request(lim, key, 1, ip="192.0.2.1")
    await request(lim, key, 2, ip="192.0.2.1")
    assert lim.spares.state()["waiting"] == 1
    taker, tokens, ip, calls = key, 100, "192.0.2.1", 1
    if why == "another record":  # the key changed since (a new record from the key cache)
        taker = key_record(prefix, requests_per_minute=10, tokens_per_minute=10_000)
    elif why == "more tokens":  # than the spare took: twice the last request's estimate
        tokens = 201
    elif why == "another ip":
        ip = "192.0.2.2"
    else:
        calls = 2
    third = await lim.admit(taker, "req3", tokens, ip, calls)
    assert not third.spare and lim.spares.state() == {"taken": 0, "waiting": 0}
    # Requests 1, 2 and this one (2 units when fanned out): the spare's unit was refunded first.
    assert remaining(third) == 10 - 2 - calls
    # (a token comes back every 6 ms: a slow call may see one or two of them)
    assert 0 <= remaining(third, "plan tokens_per_minute") - (10_000 - 200 - tokens) <= 5
    assert slots_held(prefix) == calls
    await lim.finish(third, None)  # (an error: no spare ahead of it)
    assert slots_held(prefix) == 0


async def test_no_spare_while_another_of_the_users_requests_is_in_flight(
    remote: HotStore, prefix: str
) -> None:
    lim = limiter(remote)
    key = key_record(prefix, requests_per_minute=100)
    await request(lim, key, 1)
    a = await lim.admit(key, "a", 100)
    b = await lim.admit(key, "b", 100)
    await lim.finish(a, 100)
    assert lim.spares.state()["waiting"] == 0  # b was still in flight
    await lim.finish(b, 100)
    assert lim.spares.state()["waiting"] == 1  # b ran alone at its end
    await lim.spares.close()
    assert slots_held(prefix) == 0


@pytest.mark.parametrize("concurrency", [1, 0])
async def test_no_spare_for_a_concurrency_limit_below_two(
    remote: HotStore, prefix: str, concurrency: int
) -> None:
    """A limit of one request at a time: a slot held between requests would refuse the user's
    requests on other instances, so none is. No limit at all (0): spares as usual."""
    lim = limiter(remote)
    key = key_record(prefix, requests_per_minute=100, concurrency=concurrency)
    await request(lim, key, 1)
    await request(lim, key, 2)
    assert lim.spares.state()["waiting"] == (0 if concurrency == 1 else 1)
    await lim.spares.close()


async def test_spares_are_off_when_set_to_zero(remote: HotStore, prefix: str) -> None:
    lim = limiter(remote, seconds=0)
    key = key_record(prefix, requests_per_minute=100)
    for n in range(3):
        await request(lim, key, n)
    assert lim.spares.state() == {"taken": 0, "waiting": 0}


async def test_no_spare_is_kept_while_the_store_is_unreachable(
    redis_process: RedisProcess, prefix: str
) -> None:
    """The store goes down between two requests: the waiting spare still admits the next one (it
    was granted), but that request's end, served by this instance's memory, keeps none."""
    from shared.hot.redis import RedisHot

    redis_process.start()
    hot = FallbackHot(RedisHot(redis_process.url, timeout=0.5, connect_timeout=0.2))
    lim = limiter(hot)
    key = key_record(prefix, requests_per_minute=100)
    try:
        await request(lim, key, 1)
        await request(lim, key, 2)
        assert lim.spares.state()["waiting"] == 1
        redis_process.stop()
        third = await lim.admit(key, "req3", 100)
        assert third.spare
        await lim.finish(third, 100)
        assert hot.degraded and lim.spares.state() == {"taken": 1, "waiting": 0}
        fourth = await lim.admit(key, "req4", 100)  # admitted by this instance's memory
        assert not fourth.spare
        await lim.finish(fourth, 100)
        assert lim.spares.state()["waiting"] == 0
    finally:
        await lim.spares.close()
        await hot.close()


# --- through the gateway -------------------------------------------------------------------------
def test_a_steady_stream_runs_on_spare_admissions_and_stops_exactly_at_the_limit(
    e2e_redis: str, gateways: Gateways, openai_fake: OpenAIFake
) -> None:
    """A key limited to 8 requests a minute sends request after request (the official SDK) to a
    gateway on Redis: from the third on, each runs on the admission its predecessor's end made.
    The remaining count goes down by one a request, exactly 8 reach the upstream, the 9th is
    refused, and closing the gateway leaves no slot behind."""
    settings = gateways.settings(GATEWAYZ_REDIS_URL=e2e_redis, GATEWAYZ_SPARE_ADMISSION_SECONDS="30")
    account = provision(settings, "spares@example.com", Decimal(100), rate_limits={"requests_per_minute": 8})
    gw = gateways.start(settings)
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=account.key, max_retries=0, timeout=20)
    seen = []
    for _ in range(8):
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=HELLO)
        seen.append(int(raw.headers["x-ratelimit-remaining-requests"]))
    assert seen == [7, 6, 5, 4, 3, 2, 1, 0]
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=MODEL, messages=HELLO)
    assert len(openai_fake.requests) == 8
    assert status(gw)["spare_admissions"] == {"taken": 6, "waiting": 0}  # none past the limit
    gw.stop()
    client_redis = redis_client(E2E_DB)
    try:
        assert client_redis.zcard(f"rl:user:{account.user_id}:conc") == 0
    finally:
        client_redis.close()


def test_a_spare_the_key_does_not_use_is_given_back(
    e2e_redis: str, gateways: Gateways, openai_fake: OpenAIFake
) -> None:
    """The spare after a short stream waits its time (0.3 s in tests), then its unit comes back:
    the next request sees one less remaining than before it, not two."""
    settings = gateways.settings(GATEWAYZ_REDIS_URL=e2e_redis)
    account = provision(
        settings, "giveback@example.com", Decimal(100), rate_limits={"requests_per_minute": 8}
    )
    gw = gateways.start(settings)
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=account.key, max_retries=0, timeout=20)
    for _ in range(2):
        client.chat.completions.create(model=MODEL, messages=HELLO)
    assert status(gw)["spare_admissions"]["waiting"] == 1
    deadline = time.monotonic() + 10
    while status(gw)["spare_admissions"]["waiting"] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)  # the give-back's call lands
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=HELLO)
    assert raw.headers["x-ratelimit-remaining-requests"] == "5"  # three requests, no spare
