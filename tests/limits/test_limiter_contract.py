"""The limiter contract (SPEC §7): the same behaviour on every hot-state backend.

Each test runs three times: on in-process memory (the Python `check`), on the real Redis that
tests/services.py decides on (the Lua script through the gateway's RESP client) and on Upstash's REST protocol (the same script
through `upstash-redis` and a bridge to that Redis). Under GCRA a limit of L per period P spaces
units P/L apart and lets a whole period's worth through at once; these tests pin the exact
numbers: what is allowed, what `retry_after_ms` says, what `remaining`/`reset` report, and that a
refusal consumes nothing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest

from shared.accounts.keys import KeyRecord, PlanLimits
from shared.config import LimitSettings
from shared.errors import InvalidRequest, RateLimited
from shared.hot import HotStore, HotStoreDown, MemoryHot
from shared.hot.fallback import FallbackHot
from shared.hot.gcra import Rule, Slot
from shared.limits.limiter import Limiter, duration, rate_headers
from shared.limits.velocity import VELOCITY_KEY, source_of
from tests.fakes.upstash_bridge import UpstashBridge
from tests.limits.conftest import BRIDGE_TOKEN, RedisProcess, free_port, redis_url

MINUTE = 60_000


def rpm(key: str, limit: int, cost: int = 1, **kw: Any) -> Rule:
    return Rule(key, limit, MINUTE, cost, name=kw.pop("name", key), **kw)


# --- GCRA --------------------------------------------------------------------------------------
async def test_gcra_lets_exactly_the_limit_through_then_refuses_with_the_emission_interval(
    hot: HotStore, prefix: str
) -> None:
    rule = rpm(f"{prefix}rpm", 10)
    t0 = time.time()
    for i in range(10):
        d = await hot.rate([rule])
        assert d.allowed, f"request {i + 1} of 10 was refused"
        assert d.states[0].remaining == 9 - i
        # Fully replenished (i + 1) emission intervals after the first request.
        since_first = (time.time() - t0) * 1000
        assert 6000 * (i + 1) - since_first - 5 <= d.states[0].reset_ms <= 6000 * (i + 1) + 1
    refused = await hot.rate([rule])
    elapsed = (time.time() - t0) * 1000
    assert not refused.allowed
    assert refused.refused_by == rule.name
    # The 11th waits one emission interval (60 s / 10) minus the time since the first request.
    assert 6000 - elapsed - 5 <= refused.retry_after_ms <= 6000
    assert refused.states[0].remaining == 0
    # A refusal consumes nothing: asking again gives the same answer, not a longer wait.
    again = await hot.rate([rule])
    assert not again.allowed and again.retry_after_ms <= refused.retry_after_ms


async def test_concurrent_checks_are_exact(hot: HotStore, prefix: str) -> None:
    rule = rpm(f"{prefix}burst", 10)
    decisions = await asyncio.gather(*(hot.rate([rule]) for _ in range(100)))
    assert sum(d.allowed for d in decisions) == 10
    assert sorted(d.states[0].remaining for d in decisions if d.allowed) == list(range(10))


async def test_the_window_slides_one_unit_per_interval(hot: HotStore, prefix: str) -> None:
    # 600 per minute: one unit every 100 ms.
    rule = rpm(f"{prefix}slide", 600, cost=300)
    assert (await hot.rate([rule])).allowed
    assert (await hot.rate([rule])).allowed
    refused = await hot.rate([replace(rule, cost=1)])
    assert not refused.allowed and 0 < refused.retry_after_ms <= 100
    await asyncio.sleep(0.25)  # two units (and a little) replenished
    after = await hot.rate([replace(rule, cost=2)])
    assert after.allowed


async def test_tokens_are_taken_by_cost(hot: HotStore, prefix: str) -> None:
    tokens = rpm(f"{prefix}tpm", 1000, cost=400, kind="tokens")
    first = await hot.rate([tokens])
    assert first.allowed and first.states[0].remaining == 600
    too_many = await hot.rate([replace(tokens, cost=700)])
    assert not too_many.allowed
    # 100 tokens too many, at 60 ms each: 6 s.
    assert 5900 <= too_many.retry_after_ms <= 6000
    assert too_many.states[0].remaining == 600  # nothing taken
    exact = await hot.rate([replace(tokens, cost=600)])
    assert exact.allowed and exact.states[0].remaining == 0


async def test_a_request_larger_than_the_whole_budget_is_refused(hot: HotStore, prefix: str) -> None:
    d = await hot.rate([rpm(f"{prefix}big", 1000, cost=1001, kind="tokens")])
    assert not d.allowed
    assert d.states[0].remaining == 1000


async def test_peek_checks_without_consuming(hot: HotStore, prefix: str) -> None:
    key = f"{prefix}authfail"
    peek = rpm(key, 3, mode="peek")
    for _ in range(10):
        d = await hot.rate([peek])
        assert d.allowed and d.states[0].remaining == 3
    for _ in range(3):
        assert (await hot.rate([rpm(key, 3)])).allowed
    spent = await hot.rate([peek])
    assert not spent.allowed
    assert 19_000 <= spent.retry_after_ms <= 20_000  # the budget's first unit returns in 20 s


async def test_force_corrects_without_ever_refusing(hot: HotStore, prefix: str) -> None:
    key = f"{prefix}tpm"
    t0 = time.time()
    assert (await hot.rate([rpm(key, 1000, cost=500, kind="tokens")])).allowed
    # The request used 200 tokens, not 500: give 300 back.
    back = await hot.rate([rpm(key, 1000, cost=-300, mode="force", kind="tokens")])
    assert back.allowed and back.states[0].remaining == 800
    # It used far more than its budget: charged anyway, never refused.
    over = await hot.rate([rpm(key, 1000, cost=2500, mode="force", kind="tokens")])
    assert over.allowed and over.states[0].remaining == 0
    refused = await hot.rate([rpm(key, 1000, cost=1, kind="tokens")])
    assert not refused.allowed
    # TAT is now 2700 tokens × 60 ms ahead; one more token fits after 2700 − 1000 + 1 of them.
    elapsed = (time.time() - t0) * 1000  # the clock runs on between the calls (a loaded machine)
    assert 1701 * 60 - elapsed - 5 <= refused.retry_after_ms <= 1701 * 60
    # A correction below zero stops at "nothing used".
    floor = await hot.rate([rpm(f"{prefix}fresh", 1000, cost=-5000, mode="force", kind="tokens")])
    assert floor.allowed and floor.states[0].remaining == 1000


async def test_all_or_nothing_across_rules(hot: HotStore, prefix: str) -> None:
    wide = rpm(f"{prefix}wide", 10, name="wide")
    narrow = rpm(f"{prefix}narrow", 1, name="narrow")
    assert (await hot.rate([wide, narrow])).allowed
    refused = await hot.rate([wide, narrow])
    assert not refused.allowed and refused.refused_by == "narrow"
    assert [s.remaining for s in refused.states] == [9, 0]
    # The refused request took nothing from the rule that would have allowed it.
    alone = await hot.rate([wide])
    assert alone.allowed and alone.states[0].remaining == 8
    # The longest wait is reported, by the rule that causes it.
    day = Rule(f"{prefix}day", 1, 86_400_000, 1, name="day")
    assert (await hot.rate([day])).allowed
    both = await hot.rate([narrow, day])
    assert not both.allowed and both.refused_by == "day" and both.retry_after_ms > 86_000_000


async def test_concurrency_slots_acquire_and_release(hot: HotStore, prefix: str) -> None:
    key = f"{prefix}conc"

    def slot(member: str) -> Slot:
        return Slot(key, member, 2, 60_000)

    a = await hot.rate([], [slot("a")])
    b = await hot.rate([], [slot("b")])
    assert a.allowed and a.slot_taken and b.allowed
    c = await hot.rate([], [slot("c")])
    assert not c.allowed and c.refused_by == "concurrency" and not c.slot_taken
    await hot.release([slot("a")])
    assert (await hot.rate([], [slot("c")])).allowed
    assert not (await hot.rate([], [slot("d")])).allowed
    await hot.release([slot("b"), slot("c")])
    assert (await hot.rate([], [slot("d")])).allowed


async def test_concurrent_slot_requests_are_exact(hot: HotStore, prefix: str) -> None:
    key = f"{prefix}conc"
    decisions = await asyncio.gather(*(hot.rate([], [Slot(key, f"m{i}", 3, 60_000)]) for i in range(50)))
    assert sum(d.allowed for d in decisions) == 3


async def test_a_slot_refusal_consumes_no_rule_and_a_rule_refusal_takes_no_slot(
    hot: HotStore, prefix: str
) -> None:
    rule = rpm(f"{prefix}rpm", 5)
    key = f"{prefix}conc"
    assert (await hot.rate([rule], [Slot(key, "a", 1, 60_000)])).allowed
    refused = await hot.rate([rule], [Slot(key, "b", 1, 60_000)])
    assert not refused.allowed and refused.refused_by == "concurrency"
    assert refused.states[0].remaining == 4  # the slot refused: the request took no unit
    spent = rpm(f"{prefix}spent", 1)
    assert (await hot.rate([spent])).allowed
    await hot.release([Slot(key, "a", 1, 60_000)])
    assert not (await hot.rate([spent], [Slot(key, "c", 1, 60_000)])).allowed
    # The rule refused: slot "c" was not taken, so "d" gets the only slot.
    assert (await hot.rate([], [Slot(key, "d", 1, 60_000)])).allowed


async def test_several_leases_of_one_request_are_taken_together_or_not_at_all(
    hot: HotStore, prefix: str
) -> None:
    """A fanned-out `n` holds one lease per upstream call: all of them fit, or none is taken."""
    key = f"{prefix}conc"

    def leases(request: str, count: int) -> list[Slot]:
        return [Slot(key, f"{request}#{i}", 5, 60_000) for i in range(count)]

    assert (await hot.rate([], leases("a", 3))).allowed
    rule = rpm(f"{prefix}rpm", 100, cost=3)
    refused = await hot.rate([rule], leases("b", 3))  # 3 held + 3 > 5
    assert not refused.allowed and refused.refused_by == "concurrency"
    assert refused.states[0].remaining == 100  # nothing consumed
    assert (await hot.rate([], leases("c", 2))).allowed  # the last two: b took none
    assert not (await hot.rate([], leases("d", 1))).allowed
    await hot.release(leases("a", 3))
    assert (await hot.rate([rule], leases("b", 3))).allowed
    again = await hot.rate([], leases("b", 3))  # the same request asking again holds what it has
    assert again.allowed


async def test_a_lease_expires_by_itself(hot: HotStore, prefix: str) -> None:
    """An instance that dies never releases its slots: the lease frees them."""
    key = f"{prefix}conc"
    assert (await hot.rate([], [Slot(key, "dead-1", 2, 300)])).allowed
    assert (await hot.rate([], [Slot(key, "dead-2", 2, 300)])).allowed
    refused = await hot.rate([], [Slot(key, "new", 2, 300)])
    assert not refused.allowed and 0 < refused.retry_after_ms <= 300
    await asyncio.sleep(0.4)
    assert (await hot.rate([], [Slot(key, "new", 2, 300)])).allowed


async def test_a_dead_lease_beside_a_live_one_expires_by_itself(hot: HotStore, prefix: str) -> None:
    """A dead instance's lease frees its slot even while live leases keep the set alive (each
    new lease pushes the set's own expiry out): expired members are dropped at every check."""
    key = f"{prefix}conc"
    assert (await hot.rate([], [Slot(key, "dead", 2, 500)])).allowed
    assert (await hot.rate([], [Slot(key, "live", 2, 60_000)])).allowed
    assert not (await hot.rate([], [Slot(key, "new", 2, 60_000)])).allowed  # both still count
    await asyncio.sleep(0.6)
    assert (await hot.rate([], [Slot(key, "new", 2, 60_000)])).allowed  # the dead one is gone
    assert not (await hot.rate([], [Slot(key, "newer", 2, 60_000)])).allowed  # the live one is not


async def test_headers_report_the_tightest_minute_limits(hot: HotStore, prefix: str) -> None:
    rules = [
        rpm(f"{prefix}user:rpm", 20),
        rpm(f"{prefix}key:rpm", 10),
        Rule(f"{prefix}user:rpd", 1000, 86_400_000, 1),
        rpm(f"{prefix}tpm", 100, cost=15, kind="tokens"),
    ]
    for _ in range(2):
        await hot.rate(rules)
    d = await hot.rate(rules)
    headers = rate_headers(d.states)
    assert headers == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "7",
        "x-ratelimit-reset-requests": "18s",
        "x-ratelimit-limit-tokens": "100",
        "x-ratelimit-remaining-tokens": "55",
        "x-ratelimit-reset-tokens": "27s",
    }


def test_duration_format_is_openais() -> None:
    assert duration(0) == "0ms"
    assert duration(20) == "20ms"
    assert duration(999) == "999ms"
    assert duration(1000) == "1s"
    assert duration(6000) == "6s"
    assert duration(59_001) == "1m0s"
    assert duration(360_000) == "6m0s"
    assert duration(3_723_000) == "1h2m3s"


async def test_get_set_incr_with_expiry(hot: HotStore, prefix: str) -> None:
    assert await hot.get(f"{prefix}missing") is None
    await hot.set(f"{prefix}k", "v1")
    assert await hot.get(f"{prefix}k") == "v1"
    await hot.set(f"{prefix}short", "x", ttl=0.2)
    assert await hot.incr(f"{prefix}n", ttl=0.2) == 1
    assert await hot.incr(f"{prefix}n", ttl=0.2) == 2
    await asyncio.sleep(0.3)
    assert await hot.get(f"{prefix}short") is None
    assert await hot.incr(f"{prefix}n", ttl=10) == 1


# --- the Limiter on each backend ---------------------------------------------------------------
def key_record(prefix: str, name: str = "k1", *, own: dict[str, int] | None = None, **plan: Any) -> KeyRecord:
    return KeyRecord(
        key_id=f"{prefix}{name}",
        user_id=f"{prefix}user",
        scopes=frozenset({"inference"}),
        rate_limits=own or {},
        plan=PlanLimits(**plan),
    )


async def test_limiter_key_limits_lower_the_plans_and_never_raise_them(hot: HotStore, prefix: str) -> None:
    limiter = Limiter(hot, LimitSettings())
    low = key_record(prefix, "low", own={"requests_per_minute": 2}, requests_per_minute=3)
    for _ in range(2):
        await limiter.admit(low, "r", 1)
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(low, "r", 1)
    assert "key requests_per_minute" in refused.value.message
    assert refused.value.headers["retry-after"] in ("29", "30")
    assert refused.value.headers["x-ratelimit-limit-requests"] == "2"
    # Another key of the same user shares the plan's 3 per minute: one left.
    other = key_record(prefix, "other", own={"requests_per_minute": 100}, requests_per_minute=3)
    await limiter.admit(other, "r", 1)
    with pytest.raises(RateLimited) as plan_refused:
        await limiter.admit(other, "r", 1)
    assert "plan requests_per_minute" in plan_refused.value.message
    assert limiter.rejections["key"] == 2


async def test_limiter_tokens_are_reserved_then_corrected(hot: HotStore, prefix: str) -> None:
    limiter = Limiter(hot, LimitSettings())
    key = key_record(prefix, tokens_per_minute=1000)
    first = await limiter.admit(key, "r1", 600)
    assert first.headers()["x-ratelimit-remaining-tokens"] == "400"
    with pytest.raises(RateLimited):
        await limiter.admit(key, "r2", 500)  # 600 reserved + 500 > 1000
    await limiter.finish(first, 100)  # it used 100: 500 come back
    await limiter.finish(first, 100)  # finishing twice corrects once
    second = await limiter.admit(key, "r3", 800)
    assert second.headers()["x-ratelimit-remaining-tokens"] == "100"
    await limiter.finish(second, 1500)  # it used more than reserved: charged, never refused
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(key, "r4", 1)
    assert refused.value.headers["x-ratelimit-remaining-tokens"] == "0"


async def test_limiter_concurrency_slot_is_released_by_finish(hot: HotStore, prefix: str) -> None:
    limiter = Limiter(hot, LimitSettings())
    key = key_record(prefix, own={"concurrency": 1}, concurrency=5)
    held = await limiter.admit(key, "r1", 1)
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(key, "r2", 1)
    assert "concurrent requests" in refused.value.message
    await limiter.finish(held, None)
    await limiter.finish(await limiter.admit(key, "r3", 1), None)
    # The plan's concurrency counts every key of the user.
    plan_bound = key_record(prefix, "k2", concurrency=1)
    a = await limiter.admit(plan_bound, "r4", 1)
    with pytest.raises(RateLimited):
        await limiter.admit(key_record(prefix, "k3", concurrency=1), "r5", 1)
    await limiter.finish(a, None)


async def test_limiter_counts_each_fanned_out_call(hot: HotStore, prefix: str) -> None:
    """`n` answered by n calls (a provider without `n`): n requests and n concurrent slots."""
    limiter = Limiter(hot, LimitSettings())
    key = key_record(prefix, requests_per_minute=10, concurrency=4)
    held = await limiter.admit(key, "r1", 1, calls=3)
    assert held.headers()["x-ratelimit-remaining-requests"] == "7"
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(key, "r2", 1, calls=3)  # 3 + 3 calls > 4 at once
    assert "concurrent requests" in refused.value.message
    one = await limiter.admit(key, "r3", 1)  # the refusal took nothing: one slot is left
    await limiter.finish(held, None)  # releases all three
    await limiter.finish(await limiter.admit(key, "r4", 1, calls=3), None)
    await limiter.finish(one, None)
    with pytest.raises(InvalidRequest) as never:  # no concurrency limit of 4 admits 5 at once
        await limiter.admit(key, "r5", 1, calls=5)
    assert never.value.param == "n" and "concurrent requests limit of 4" in never.value.message
    with pytest.raises(InvalidRequest):
        await limiter.admit(key_record(prefix, "k2", requests_per_minute=2), "r6", 1, calls=3)
    anonymous = Limiter(hot, LimitSettings(anonymous=True, anonymous_per_day=5))
    await anonymous.admit_anonymous(f"{prefix}192.0.2.9", calls=4)
    with pytest.raises(RateLimited):
        await anonymous.admit_anonymous(f"{prefix}192.0.2.9", calls=2)


async def test_velocity_needs_volume_from_several_networks_and_is_shared(hot: HotStore, prefix: str) -> None:
    """Velocity mode is decided by one instance from its own responses and switched on for all
    through the store: one network cannot switch it on, five can (the defaults)."""
    settings = LimitSettings()
    first, other = Limiter(hot, settings), Limiter(hot, settings)
    await hot.set(VELOCITY_KEY, "0", ttl=1)  # the key is shared by design: start it clean
    for i in range(55):
        await first.record_response(401, f"203.0.113.{i % 11}")  # one /24: counts for 10
    for i in range(40):
        await first.record_response(401, f"2001:db8:{prefix[1:5]}::{i}")  # one /64
    assert not await other.velocity.active(hot)
    assert first.velocity.state()["requests_last_minute"] == 20
    for network in ("198.51.100", "192.0.2", "100.64.1"):
        for _ in range(10):
            await first.record_response(401, f"{network}.9")
    assert first.velocity.state()["active"]
    # Another instance reads the store's flag (`other` read it a moment ago: it reads once a second).
    assert await Limiter(hot, settings).velocity.active(hot)
    await hot.set(VELOCITY_KEY, "0", ttl=1)


def test_velocity_sources_are_networks() -> None:
    assert source_of("203.0.113.7") == source_of("203.0.113.200") == "203.0.113.0/24"
    assert source_of("203.0.114.7") != source_of("203.0.113.7")
    assert source_of("2001:db8:1:2::1") == source_of("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert source_of("2001:db8:1:3::1") != source_of("2001:db8:1:2::1")
    assert source_of("::ffff:203.0.113.9") == "203.0.113.0/24"  # an IPv4 client over IPv6
    assert source_of("unknown") == "unknown" and source_of("not:an:ip") == "not:an:ip"


async def test_limiter_failed_authentications_close_the_ip(hot: HotStore, prefix: str) -> None:
    limiter = Limiter(hot, LimitSettings(ip_rpm=100, ip_auth_failures=3))
    ip, other = f"{prefix}198.51.100.7", f"{prefix}198.51.100.8"
    for _ in range(3):
        await limiter.check_ip(ip)
        await limiter.auth_failed(ip)
    with pytest.raises(RateLimited) as refused:
        await limiter.check_ip(ip)
    assert "failed authentications" in refused.value.message
    assert 17 <= int(refused.value.headers["retry-after"]) <= 20
    await limiter.check_ip(other)
    assert limiter.rejections["auth_failures"] == 1


async def test_limiter_ip_requests_per_minute(hot: HotStore, prefix: str) -> None:
    limiter = Limiter(hot, LimitSettings(ip_rpm=5))
    ip = f"{prefix}203.0.113.9"
    for _ in range(5):
        await limiter.check_ip(ip)
    with pytest.raises(RateLimited) as refused:
        await limiter.check_ip(ip)
    assert refused.value.headers["retry-after"] == "12"
    assert limiter.rejections["ip"] == 1


async def test_limiter_anonymous_per_day(hot: HotStore, prefix: str) -> None:
    limiter = Limiter(hot, LimitSettings(anonymous=True, anonymous_per_day=2))
    ip = f"{prefix}192.0.2.1"
    await limiter.admit_anonymous(ip)
    await limiter.admit_anonymous(ip)
    with pytest.raises(RateLimited) as refused:
        await limiter.admit_anonymous(ip)
    assert int(refused.value.headers["retry-after"]) > 40_000  # half a day: 2 per day
    await limiter.admit_anonymous(f"{prefix}192.0.2.2")


# --- the fallback when the remote store is down ------------------------------------------------
def dead_remote(kind: str) -> HotStore:
    """A remote store nothing answers for: a closed port on loopback."""
    port = free_port()
    if kind == "redis":
        from shared.hot.redis import RedisHot

        return RedisHot(redis_url(0, port))
    from shared.hot.upstash import UpstashHot

    return UpstashHot(f"http://127.0.0.1:{port}", BRIDGE_TOKEN)


@pytest.mark.parametrize("kind", ["redis", "upstash"])
async def test_a_remote_store_that_cannot_be_reached_says_so(kind: str) -> None:
    """`HotStoreDown` within the backend's timeout, never another exception: FallbackHot and the
    limiter rely on it."""
    store = dead_remote(kind)
    try:
        t0 = time.monotonic()
        with pytest.raises(HotStoreDown):
            await store.rate([rpm("t:down", 10)])
        with pytest.raises(HotStoreDown):
            await store.get("t:down")
        assert time.monotonic() - t0 < 2.0
    finally:
        await store.close()


@pytest.mark.parametrize("kind", ["redis", "upstash"])
async def test_fallback_serves_from_memory_and_returns_by_itself(
    kind: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, real_redis: str
) -> None:
    monkeypatch.setattr("shared.hot.fallback.RETRY_EVERY", 0.3)
    proc = RedisProcess(tmp_path)
    bridge: UpstashBridge | None = None
    if kind == "redis":
        from shared.hot.redis import RedisHot

        remote: HotStore = RedisHot(proc.url)
    else:
        from shared.hot.upstash import UpstashHot

        bridge = UpstashBridge(proc.url, token=BRIDGE_TOKEN, port=free_port())
        remote = UpstashHot(bridge.url, BRIDGE_TOKEN)
    store = FallbackHot(remote)
    rule = rpm("t:fallback", 3)
    try:
        # Down from the start: served by this instance's memory, with exact local limits.
        for _ in range(3):
            assert (await store.rate([rule])).allowed
        assert not (await store.rate([rule])).allowed
        assert store.degraded and store.fallbacks == 4
        # Back: after the retry interval the remote store is used again by itself.
        proc.start()
        if bridge is not None:
            bridge.start()
        await asyncio.sleep(0.35)
        assert (await store.rate([rule])).allowed  # a fresh remote budget
        assert not store.degraded
        for _ in range(2):
            assert (await store.rate([rule])).allowed
        assert not (await store.rate([rule])).allowed
    finally:
        await store.close()
        if bridge is not None:
            bridge.stop()
        proc.stop()


async def test_fail_closed_refuses_instead_of_falling_back() -> None:
    store = FallbackHot(dead_remote("redis"), fail_closed=True)
    try:
        with pytest.raises(HotStoreDown):
            await store.rate([rpm("t:closed", 10)])
        # Non-limiting calls (caches, epochs) still fall back.
        await store.set("t:closed:k", "v")
        assert await store.get("t:closed:k") == "v"
    finally:
        await store.close()


# --- the bridge itself: the real client's commands round-trip ---------------------------------
async def test_bridge_speaks_upstash_for_the_real_client(upstash_bridge: UpstashBridge, prefix: str) -> None:
    from upstash_redis.asyncio import Redis

    client = Redis(upstash_bridge.url, upstash_bridge.token, rest_retries=0, allow_telemetry=False)
    try:
        assert await client.set(f"{prefix}s", "héllo wörld", ex=30) is True
        assert await client.get(f"{prefix}s") == "héllo wörld"
        assert await client.hset(f"{prefix}h", values={"a": "1", "b": "two"}) == 2
        assert await client.hgetall(f"{prefix}h") == {"a": "1", "b": "two"}
        assert await client.zadd(f"{prefix}z", {"x": 1.5, "y": 3}) == 2
        assert await client.zrange(f"{prefix}z", 0, -1, withscores=True) == [("x", 1.5), ("y", 3.0)]
        assert await client.eval("return {1, ARGV[1], KEYS[1]}", [f"{prefix}k"], ["v"]) == [
            1,
            "v",
            f"{prefix}k",
        ]
        with pytest.raises(Exception, match="NOSCRIPT"):
            await client.evalsha("0" * 40, [], [])
        pipe = client.pipeline()
        pipe.set(f"{prefix}p", "1")
        pipe.incr(f"{prefix}p")
        pipe.get(f"{prefix}p")
        assert await pipe.exec() == [True, 2, "2"]
        tx = client.multi()
        tx.incr(f"{prefix}p")
        tx.get(f"{prefix}p")
        assert await tx.exec() == [3, "3"]
    finally:
        await client.close()
    wrong = Redis(upstash_bridge.url, "not-the-token", rest_retries=0, allow_telemetry=False)
    try:
        with pytest.raises(Exception, match="Unauthorized"):
            await wrong.get(f"{prefix}s")
    finally:
        await wrong.close()


async def test_memory_store_sweeps_expired_cells() -> None:
    store = MemoryHot()
    for i in range(3):
        await store.rate([Rule(f"t:sweep:{i}", 1000, 10, 1)])
    await asyncio.sleep(0.05)
    store._sweep()
    assert store._tats == {}


def test_the_contract_covers_every_backend_the_settings_offer() -> None:
    """If a backend is added to open_hot_store, the `hot` fixture must run it too."""
    from shared.hot import open_hot_store

    assert type(open_hot_store(None)).__name__ == "MemoryHot"
    assert open_hot_store("redis://127.0.0.1:1/0").name == "redis"
    assert open_hot_store(None, "http://127.0.0.1:1", "t").name == "upstash"
