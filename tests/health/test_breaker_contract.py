"""The shared breaker's contract (SPEC §3, issue 15) on every hot-state backend: memory (the Python
twin), Redis and Upstash's REST protocol (the Lua script) — two clients of one store playing two
gateway instances."""

from __future__ import annotations

import asyncio

from shared.hot import HotStore
from shared.hot.breaker import CLOSED, HALF_OPEN, OPEN, BreakerConfig
from shared.routing.health import HealthBook

P, M = "groq", "meta-llama/llama-x"


def books(stores: tuple[HotStore, HotStore], prefix: str, **cfg: int) -> tuple[HealthBook, HealthBook]:
    config = BreakerConfig(prefix=prefix, **cfg)
    return HealthBook(stores[0], config, 1.0), HealthBook(stores[1], config, 1.0)


async def test_opens_at_the_threshold_and_the_other_instance_sees_it(
    two_stores: tuple[HotStore, HotStore], prefix: str
) -> None:
    a, b = books(two_stores, prefix, min_requests=4, failure_permille=500)
    await a.success(P, M, 10)
    await a.refresh(force=True)
    for _ in range(2):
        await a.failure(P, M)
    assert a.state(P, M) == CLOSED  # 2 of 3: over the rate, under the volume
    await a.failure(P, M)  # 3 of 4
    assert a.state(P, M) == OPEN
    assert b.state(P, M) == CLOSED  # B's copy is up to a second old...
    await b.refresh(force=True)
    assert b.state(P, M) == OPEN and b.is_down(P, M)  # ...and then B avoids it too
    assert b.state(P, "other/model") == OPEN  # the provider's breaker opened with it


async def test_a_low_failure_rate_does_not_open(two_stores: tuple[HotStore, HotStore], prefix: str) -> None:
    a, _ = books(two_stores, prefix, min_requests=4, failure_permille=500)
    for _ in range(5):
        await a.success(P, M, 10)
    await a.refresh(force=True)
    for _ in range(4):
        await a.failure(P, M)  # 4 of 9
    assert a.state(P, M) == CLOSED


async def test_429s_saturate_but_do_not_open(two_stores: tuple[HotStore, HotStore], prefix: str) -> None:
    a, b = books(two_stores, prefix, min_requests=2)
    for _ in range(5):
        await a.saturated(P, M, 5.0)
    await b.refresh(force=True)
    assert b.state(P, M) == CLOSED and b.is_saturated(P, M)
    assert not b.is_saturated("together", M)


async def test_half_open_admits_exactly_n_trials_across_two_instances_then_closes(
    two_stores: tuple[HotStore, HotStore], prefix: str
) -> None:
    # A cooldown of a second: on a loaded machine the Upstash bridge's round trips alone can take
    # a few hundred milliseconds, and the "no trial before the cooldown" check must come before it.
    a, b = books(two_stores, prefix, min_requests=1, cooldown_ms=1000, trials=2)
    await a.failure(P, M)
    assert a.state(P, M) == OPEN
    assert not await b.trial(P, M)  # open: no trial before the cooldown
    await asyncio.sleep(1.05)
    assert a.state(P, M) == HALF_OPEN
    granted = await asyncio.gather(*(book.trial(P, M) for book in (a, b) * 10))
    assert sum(granted) == 2
    await b.success(P, M, 12)  # a trial answered: closed for everyone
    await a.refresh(force=True)
    assert a.state(P, M) == CLOSED
    assert all(await asyncio.gather(*(a.trial(P, M) for _ in range(5))))  # closed: no counting


async def test_a_failed_trial_opens_again(two_stores: tuple[HotStore, HotStore], prefix: str) -> None:
    a, b = books(two_stores, prefix, min_requests=1, cooldown_ms=300, trials=1)
    await a.failure(P, M)
    await asyncio.sleep(0.35)
    assert await b.trial(P, M)
    await b.failure(P, M)
    assert b.state(P, M) == OPEN
    await a.refresh(force=True)
    assert a.state(P, M) == OPEN and not await a.trial(P, M)


async def test_latency_and_throughput_are_shared_ewmas(
    two_stores: tuple[HotStore, HotStore], prefix: str
) -> None:
    a, b = books(two_stores, prefix)
    await a.success(P, M, 100, output_tokens=50, seconds=1.0)
    await a.refresh(force=True)
    await b.success(P, M, 200)
    b.tokens(P, M, 150, 1.0)
    await b.refresh(force=True)
    assert abs(b.latency(P, M) - 120.0) < 0.01  # 100 + 0.2 × (200 − 100)
    assert abs(b.throughput(P, M) - 70.0) < 0.01  # 50 + 0.2 × (150 − 50)
    await a.refresh(force=True)
    assert a.measured(P, M) == {"latency_ms": 120.0, "tokens_per_s": 70.0, "samples": 2}
    assert a.latency("together", M) == float("inf")  # never measured: sorted last by latency
