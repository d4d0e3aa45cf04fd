"""Fixtures of the health suite: the three hot-state backends on Redis logical DB 5 (which no other
suite uses), each test under a key prefix of its own, deleted afterwards; gateways as in the
limiter suites (tests/limits/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shared.hot import HotStore, MemoryHot
from tests.fakes.upstash_bridge import UpstashBridge
from tests.limits.conftest import (  # noqa: F401  (fixtures, re-exported for this suite)
    BRIDGE_TOKEN,
    database_url,
    delete_matching,
    gateways,
    real_redis,
    redis_client,
    redis_url,
)

HEALTH_DB = 5


@pytest.fixture(scope="session")
def health_bridge(real_redis: str) -> Iterator[UpstashBridge]:  # noqa: F811
    bridge = UpstashBridge(redis_url(HEALTH_DB), token=BRIDGE_TOKEN).start()
    yield bridge
    bridge.stop()


@pytest.fixture
def prefix(real_redis: str) -> Iterator[str]:  # noqa: F811
    tag = f"hb{uuid.uuid4().hex[:12]}:"
    yield tag
    delete_matching(HEALTH_DB, f"{tag}*")


def open_store(kind: str, bridge: UpstashBridge | None, shared: MemoryHot | None = None) -> HotStore:
    if kind == "memory":
        return shared or MemoryHot()
    if kind == "redis":
        from shared.hot.redis import RedisHot

        return RedisHot(redis_url(HEALTH_DB), timeout=5.0)
    from shared.hot.upstash import UpstashHot

    assert bridge is not None
    return UpstashHot(bridge.url, bridge.token, timeout=5.0)


@pytest.fixture(params=["memory", "redis", "upstash"])
async def two_stores(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[tuple[HotStore, HotStore]]:
    """Two clients of one store, as two instances hold them (memory: one process's, shared)."""
    bridge = request.getfixturevalue("health_bridge") if request.param == "upstash" else None
    first = open_store(request.param, bridge)
    second = open_store(request.param, bridge, first if isinstance(first, MemoryHot) else None)
    yield first, second
    await first.close()
    if second is not first:
        await second.close()


@pytest.fixture
def health_redis(real_redis: str) -> Iterator[str]:  # noqa: F811
    """DB 5 for gateways that share the real Redis; flushed before and after."""
    client = redis_client(HEALTH_DB)
    try:
        client.flushdb()
        yield redis_url(HEALTH_DB)
        client.flushdb()
    finally:
        client.close()


@pytest.fixture
def gateway_with_breaker(fakes: dict, tmp_path: Path) -> Iterator[tuple[str, str]]:  # type: ignore[type-arg]
    """An in-process gateway (memory hot state) whose breakers open after two failures."""
    from decimal import Decimal

    from tests.conftest import gateway_settings, provision, start_gateway

    settings = gateway_settings(
        fakes,
        f"sqlite:///{tmp_path / 'gatewayz.db'}",
        GATEWAYZ_BREAKER_MIN_REQUESTS="2",
        GATEWAYZ_BREAKER_COOLDOWN="60",
    )
    account = provision(settings, "breaker@example.com", Decimal(100))
    server = start_gateway(settings)
    try:
        yield server.url, account.key
    finally:
        server.stop()
