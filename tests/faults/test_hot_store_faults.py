"""The hot-state store fails under the gateway (issue 10, defects 7 and 13): Redis cut mid-request,
restarted, reached with a wrong or missing password, or running as a Cluster; Upstash with a wrong
token. Every one takes the "Redis down" path: requests keep being served on per-instance limits,
the status says degraded, the log says why (an error for a refusal) — never a 500 — and no
concurrency slot stays behind in Redis once it answers again. While the shared invalidation epoch
cannot be read, a revoked key stops working within seconds, not the key cache's minute."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from shared.hot import HotStoreDown
from shared.hot.fallback import FallbackHot
from shared.hot.gcra import Rule
from shared.hot.upstash import UpstashHot
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply
from tests.fakes.upstash_bridge import UpstashBridge
from tests.faults.conftest import Faulty, assert_unavailable, in_background, start_faulty, wait_until
from tests.faults.proxy import TcpProxy
from tests.limits.conftest import (
    RedisProcess,
    free_port,
    port_with_free_bus,
    redis_server_version,
    redis_url,
)

NATIVE = "gpt-4o"


def limits(gw: Faulty) -> dict[str, Any]:
    response = httpx.get(f"{gw.server.url}/v1/status", timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json()["limits"])


def slots_held(port: int, gw: Faulty, password: str | None = None) -> int:
    key_id = gw.rows("SELECT id FROM api_keys WHERE user_id = :u", u=gw.account.user_id)[0]["id"]
    client = redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=2)
    try:
        return int(client.zcard(f"rl:key:{key_id}:conc"))
    finally:
        client.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_redis_cut_mid_request_serves_on_and_leaves_no_slot_in_redis(
    backend: str, fakes: dict[str, Any], openai_fake: OpenAIFake, redis_process: RedisProcess, tmp_path: Path
) -> None:
    redis_process.start()
    proxy = TcpProxy(redis_process.port).start()
    with ExitStack() as stack:
        stack.callback(proxy.stop)
        gw = start_faulty(fakes, backend, tmp_path, stack, GATEWAYZ_REDIS_URL=redis_url(0, proxy.port))
        before = gw.balance_pico()
        openai_fake.script(NATIVE, Reply(delay=0.4))
        answer = in_background(gw.chat)
        wait_until(lambda: len(openai_fake.requests) == 2, "the upstream call")  # admitted on Redis
        assert slots_held(redis_process.port, gw) == 1
        proxy.cut()
        assert answer().status_code == 200  # its slot could not be freed in Redis
        assert gw.chat().status_code == 200 and limits(gw)["degraded"]  # per-instance limits
        proxy.restore()
        # Back on Redis (it is retried every 5 s): the slot owed to it is released first thing.
        wait_until(lambda: gw.chat().status_code == 200 and not limits(gw)["degraded"], "recovery", 8)
        assert slots_held(redis_process.port, gw) == 0
        assert gw.invariants() < before  # every request was served and charged


def test_a_redis_restart_is_served_through(
    fakes: dict[str, Any], redis_process: RedisProcess, tmp_path: Path
) -> None:
    redis_process.start()
    with ExitStack() as stack:
        gw = start_faulty(fakes, "sqlite", tmp_path, stack, GATEWAYZ_REDIS_URL=redis_process.url)
        redis_process.stop()
        assert [gw.chat().status_code for _ in range(2)] == [200, 200]
        redis_process.start()
        assert [gw.chat().status_code for _ in range(2)] == [200, 200]
        gw.invariants()


@pytest.mark.parametrize("credentials", [":wrong-password@", ""], ids=["WRONGPASS", "NOAUTH"])
def test_a_redis_that_refuses_the_password_is_an_outage_said_loudly(
    credentials: str, fakes: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    proc = RedisProcess(tmp_path, password="the-right-password").start()
    with ExitStack() as stack:
        stack.callback(proc.stop)
        url = f"redis://{credentials}127.0.0.1:{proc.port}/0"
        with caplog.at_level(logging.ERROR, logger="gatewayz.hot"):
            gw = start_faulty(fakes, "sqlite", tmp_path, stack, GATEWAYZ_REDIS_URL=url)
            assert [gw.chat().status_code for _ in range(3)] == [200, 200, 200]
        assert limits(gw)["degraded"] is True
        refusals = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        code = "WRONGPASS" if credentials else "NOAUTH"
        assert any("refuses the gateway" in m and code in m for m in refusals), refusals
        assert not any("the-right-password" in m or "wrong-password" in m for m in refusals)
        gw.invariants()


def test_redis_cluster_is_refused_and_served_around(
    fakes: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The limiter's script touches keys of several hash slots: a Cluster would answer CROSSSLOT
    or MOVED for some calls and not others. It is refused as a whole, with the reason logged."""
    cluster = ["--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "nodes.conf")]
    # The bus port is the port + 10,000 (past 65,535 for a high free port): Redis 7 takes another
    # by name; the bundled 6.2 of a bare machine does not, so it gets a port whose bus port is free.
    if redis_server_version() >= (7,):
        proc = RedisProcess(tmp_path, *cluster, "--cluster-port", str(free_port()))
    else:
        proc = RedisProcess(tmp_path, *cluster, port=port_with_free_bus())
    proc.start()
    with ExitStack() as stack:
        stack.callback(proc.stop)
        admin = redis.Redis(host="127.0.0.1", port=proc.port, socket_timeout=2)
        admin.execute_command("CLUSTER", "ADDSLOTS", *range(16384))  # one node serving every slot
        admin.close()
        with caplog.at_level(logging.ERROR, logger="gatewayz.hot"):
            gw = start_faulty(fakes, "sqlite", tmp_path, stack, GATEWAYZ_REDIS_URL=redis_url(0, proc.port))
            assert [gw.chat().status_code for _ in range(3)] == [200, 200, 200]
        assert limits(gw)["degraded"] is True
        assert any("Redis Cluster" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


async def test_an_upstash_token_it_refuses_is_an_outage(upstash_bridge: UpstashBridge) -> None:
    rule = Rule("t:upstash:refused", 5, 60_000, 1)
    bare = UpstashHot(upstash_bridge.url, "not-the-token", timeout=5.0)
    with pytest.raises(HotStoreDown) as refused:
        await bare.rate([rule])
    assert refused.value.refused
    store = FallbackHot(UpstashHot(upstash_bridge.url, "not-the-token", timeout=5.0))
    try:
        assert (await store.rate([rule])).allowed  # served on this instance's memory
        assert store.degraded
    finally:
        await store.close()
        await bare.close()


def test_a_key_revoked_while_redis_is_down_stops_working_within_seconds(
    fakes: dict[str, Any], redis_process: RedisProcess, tmp_path: Path
) -> None:
    """Two instances on one database and Redis. Redis goes away; one instance revokes a key: the
    epoch bump that would tell the other cannot be written. The other, unable to read the epoch,
    keeps key lookups for at most a couple of seconds (not its minute-long cache)."""
    redis_process.start()
    proxy = TcpProxy(redis_process.port).start()
    with ExitStack() as stack:
        stack.callback(proxy.stop)
        env = {"GATEWAYZ_REDIS_URL": redis_url(0, proxy.port), "GATEWAYZ_KEY_CACHE_TTL": "60"}
        a = start_faulty(fakes, "sqlite", tmp_path, stack, **env)
        from tests.conftest import start_gateway

        b_server = start_gateway(a.server.app.state.runtime.settings)
        stack.callback(b_server.stop)
        b = Faulty(a.backend, a.url, b_server, a.account)
        stack.callback(b.http.close)
        manager = b.send(
            "POST",
            "/v1/keys",
            json={"name": "victim", "scopes": ["inference"], "rate_limits": {"concurrency": 1}},
        )
        assert manager.status_code == 200, manager.text
        victim = manager.json()["key"]
        assert a.chat(key=victim).status_code == 200  # cached on instance A
        proxy.cut()
        assert b.send("DELETE", f"/v1/keys/{manager.json()['id']}").status_code == 200
        assert b.chat(key=victim).status_code == 401  # at once where it was revoked
        wait_until(lambda: a.chat(key=victim).status_code == 401, "the revocation on instance A", 4)


def test_limits_configured_fail_closed_refuse_with_a_503_while_redis_is_down(
    fakes: dict[str, Any], redis_process: RedisProcess, tmp_path: Path
) -> None:
    redis_process.start()
    with ExitStack() as stack:
        env = {"GATEWAYZ_REDIS_URL": redis_process.url, "GATEWAYZ_LIMITS_FAIL_CLOSED": "true"}
        gw = start_faulty(fakes, "sqlite", tmp_path, stack, **env)
        before = gw.balance_pico()
        redis_process.stop()
        assert_unavailable(gw.chat())
        assert gw.balance_pico() == before and not gw.open_holds()  # refused before any reservation
