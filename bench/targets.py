"""The systems under test, as data (`TARGETS`), and how each is started.

Every target runs as ONE worker process on 127.0.0.1 against the same fake upstream. Adding a
target is adding a `TargetSpec`: `kind` picks the starter, `requires` names the gateway features
it needs (detected from the `gatewayz` CLI, so a target switches itself on when they land),
`routes` lists the bench routes it serves (`bench/routes.py`), `models` names the model its
callers send for each of the fake's APIs, and `env` adds settings. The Gatewayz starter takes the
real pipeline as far as it exists: with accounts it creates a user with credits and benchmarks
with that user's API key; until then it uses the bootstrap admin key and says so in the report.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import LOOPBACK, Proc, base_env, free_port, spawn, wait_first_completion
from bench.routes import CHAT, Api

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
VENV_BIN = Path(sys.executable).parent

# LiteLLM's proxy, pinned. 1.106.12 is the newest release whose `[proxy]` extra resolves on this
# machine's registry: 1.108.x needs litellm-proxy-extras 0.4.110.post1 and 1.110.x a separate
# `litellm-proxy` distribution, neither of which the registry serves (1.107.x is not served at all).
LITELLM_VERSION = "1.106.12"
LITELLM_VENV = WORK / "litellm-venv"
GRANIAN_VERSION = "2.8.7"
GRANIAN_VENV = WORK / "granian-venv"

ADMIN_KEY = "gw_admin_bench_0123456789abcdef"
KEY_SECRET = "bench-key-secret-0123456789abcdef0123456789"
LITELLM_MASTER_KEY = "sk-bench-litellm-master-0123456789"
UPSTREAM_KEY = "sk-bench-upstream"
PG_URL = "postgresql://postgres@127.0.0.1:5432/gatewayz_bench"
REDIS_URL = "redis://127.0.0.1:6379/15"

Say = Callable[[str], None]


@dataclass(frozen=True)
class TargetSpec:
    key: str
    title: str
    kind: str  # "direct" | "gatewayz" | "litellm"
    models: dict[str, str]  # upstream (a key of routes.UPSTREAMS) → the model id this target's callers send
    routes: tuple[str, ...] = ("chat",)  # the bench routes it serves (keys of routes.ROUTES)
    server: str = "gatewayz-serve"  # gatewayz only: "gatewayz-serve" (uvicorn) | "granian"
    backend: str = "embedded"  # gatewayz only: "embedded" | "postgres-redis"
    requires: tuple[str, ...] = ()  # gateway features, see `detect_features`
    env: dict[str, str] = field(default_factory=dict)
    default: bool = True  # part of a run without --targets
    memory_test: bool = False  # also run the many-slow-streams memory test on it
    issue_targets: bool = False  # the issue-5 targets are checked against it
    min_x_litellm: float = 0.0  # the throughput multiple of LiteLLM it must reach

    @property
    def model(self) -> str:
        """The chat route's model: the one of the start-up check, the warm-up and the memory test."""
        return self.models["openai"]


# Gatewayz serves every route: chat, Messages and Responses, each to the OpenAI and the Anthropic
# upstream.
GATEWAYZ_MODELS = {
    "openai": "openai/gpt-4o",
    "anthropic": "anthropic/claude-sonnet-4.5",
    "openai-embeddings": "openai/text-embedding-3-small",
}
GATEWAYZ_ROUTES = (
    "chat",
    "chat-hist",
    "msg",
    "chat-claude",
    "msg-native",
    "resp",
    "resp-claude",
    "emb",
    "emb-float",
)

TARGETS: dict[str, TargetSpec] = {
    t.key: t
    for t in (
        # The fake called directly, in each API's own shape: the floor of every route that ends on it.
        TargetSpec(
            "direct",
            "Upstream direct (the floor)",
            "direct",
            {
                "openai": "gpt-4o",
                "anthropic": "claude-sonnet-4-5-20250929",
                "openai-embeddings": "text-embedding-3-small",
            },
            routes=("chat", "msg-native", "resp", "emb", "emb-float"),
        ),
        TargetSpec(
            "gatewayz",
            "Gatewayz, embedded default (SQLite + memory), `gatewayz serve`",
            "gatewayz",
            GATEWAYZ_MODELS,
            routes=GATEWAYZ_ROUTES,
            memory_test=True,
            issue_targets=True,
            min_x_litellm=15.0,
        ),
        TargetSpec(
            "gatewayz-pg",
            "Gatewayz on PostgreSQL + Redis, `gatewayz serve`",
            "gatewayz",
            GATEWAYZ_MODELS,
            routes=GATEWAYZ_ROUTES,
            backend="postgres-redis",
            requires=("accounts",),
            env={"GATEWAYZ_DATABASE_URL": PG_URL, "GATEWAYZ_REDIS_URL": REDIS_URL},
            issue_targets=True,
            min_x_litellm=8.0,
        ),
        # Chat only: LiteLLM is the issue-5 comparison, and its own /v1/messages is not benchmarked.
        TargetSpec(
            "litellm", f"LiteLLM proxy {LITELLM_VERSION} (1 worker, no DB)", "litellm", {"openai": "gpt-4o"}
        ),
        # Issue 16, not in the default set: the embedded default with the Prometheus backend of the
        # observability seam on (GATEWAYZ_METRICS=1), to show what /metrics costs the chat path.
        TargetSpec(
            "gatewayz-metrics",
            "Gatewayz, embedded default, Prometheus metrics on (`GATEWAYZ_METRICS=1`)",
            "gatewayz",
            GATEWAYZ_MODELS,
            routes=("chat",),
            env={"GATEWAYZ_METRICS": "1"},
            default=False,
        ),
        # Experiment, not in the default set: the same app under granian instead of uvicorn.
        TargetSpec(
            "gatewayz-granian",
            f"Gatewayz, embedded default, under granian {GRANIAN_VERSION} (experiment)",
            "gatewayz",
            GATEWAYZ_MODELS,
            routes=GATEWAYZ_ROUTES,
            server="granian",
            default=False,
        ),
    )
}


@dataclass
class Running:
    spec: TargetSpec
    port: int
    token: str | None
    startup_s: float | None
    proc: Proc | None  # None for `direct` (the upstream is owned by the run)
    pid: int
    auth: str  # what kind of credential the load uses
    notes: list[str] = field(default_factory=list)
    version: str = ""

    def url(self, api: Api = CHAT) -> str:
        return f"http://{LOOPBACK}:{self.port}{api.path}"

    def headers(self, api: Api = CHAT) -> dict[str, str]:
        return api.request_headers(self.token)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


@dataclass
class Ctx:
    work: Path  # this run's scratch folder
    upstream_port: int
    upstream_pid: int
    install: bool
    say: Say
    features: set[str]

    @property
    def upstream_origin(self) -> str:
        return f"http://{LOOPBACK}:{self.upstream_port}"

    @property
    def upstream_base(self) -> str:
        """OpenAI's base URL includes /v1; Anthropic's (the origin) does not."""
        return f"{self.upstream_origin}/v1"


def chat_body(model: str, stream: bool, delay_ms: int = 0, chunk_ms: int = 0) -> bytes:
    """A realistic small chat request (`routes.chat_request`); `user` carries the fake's delays."""
    return CHAT.body(model, stream, delay_ms, chunk_ms)


# ---- feature detection ---------------------------------------------------------------------


def gatewayz_bin() -> Path:
    return VENV_BIN / "gatewayz"


def detect_features() -> set[str]:
    """Which parts of the full pipeline `gatewayz` has, read off its CLI (SPEC §1 contract)."""
    exe = gatewayz_bin()
    if not exe.exists():
        return set()
    # Both help texts at once: each costs an interpreter start and the CLI's imports.
    procs = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for args in ([str(exe), "--help"], [str(exe), "users", "create", "--help"])
    ]
    top, create_help = (p.communicate(timeout=60)[0] for p in procs)
    m = re.search(r"\{([a-z,\-]+)\}", top)
    commands = set(m.group(1).split(",")) if m else set()
    features = {"serve"} & commands
    if {"users", "keys"} <= commands:
        features.add("accounts")
        if "--plan" in create_help:
            features.add("plans")
    if "migrate" in commands:
        features.add("migrate")
    return features


def skip_reason(spec: TargetSpec, ctx: Ctx) -> str | None:
    missing = [f for f in spec.requires if f not in ctx.features]
    if missing:
        return (
            f"needs {', '.join(missing)} in Gatewayz (the `gatewayz users`/`keys` commands), which "
            "have not landed yet; this target switches itself on when they do"
        )
    if spec.kind == "gatewayz" and not gatewayz_bin().exists():
        return f"{gatewayz_bin()} is missing: run `make install`"
    if spec.backend == "postgres-redis":
        for tool in ("psql", "redis-cli"):
            if not shutil.which(tool):
                return f"{tool} is missing: PostgreSQL and Redis must run on 127.0.0.1"
    return None


# ---- starters --------------------------------------------------------------------------------


def start(spec: TargetSpec, ctx: Ctx) -> Running:
    if spec.kind == "direct":
        return Running(
            spec,
            ctx.upstream_port,
            UPSTREAM_KEY,  # what a direct call to the provider carries (the fake's Anthropic API insists)
            None,
            None,
            ctx.upstream_pid,
            "the upstream's key",
            version="bench fake",
        )
    if spec.kind == "gatewayz":
        return _start_gatewayz(spec, ctx)
    if spec.kind == "litellm":
        return _start_litellm(spec, ctx)
    raise ValueError(f"unknown target kind {spec.kind!r}")


def _first_completion(proc: Proc, port: int, model: str, token: str, timeout: float) -> float:
    """Seconds from spawning to the first successful chat completion; the process is stopped if
    it never answers."""
    try:
        return wait_first_completion(
            proc,
            port,
            "/v1/chat/completions",
            chat_body(model, False),
            {"authorization": f"Bearer {token}"},
            timeout,
        )
    except BaseException:
        proc.stop()
        raise


def _run_cli(args: list[str], env: dict[str, str], say: Say) -> str:
    proc = subprocess.run(
        [str(gatewayz_bin()), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"gatewayz {' '.join(args)} failed: {proc.stderr.strip()[-800:]}")
    return proc.stdout


def _psql(database: str, sql: str) -> str:
    argv = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-At", "-v", "ON_ERROR_STOP=1"]
    done = subprocess.run([*argv, "-c", sql], capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.strip()


def _prepare_backend(spec: TargetSpec, ctx: Ctx, say: Say) -> None:
    if spec.backend != "postgres-redis":
        return
    say("  fresh database gatewayz_bench on 127.0.0.1:5432 and Redis db 15")
    for sql in ("DROP DATABASE IF EXISTS gatewayz_bench", "CREATE DATABASE gatewayz_bench"):
        _psql("postgres", sql)
    subprocess.run(["redis-cli", "-n", "15", "flushdb"], capture_output=True, timeout=30, check=True)


# Why the bench vacuums (`between_runs`): every request closes a hold, which leaves a dead entry in
# the open-holds index until a vacuum removes it, and every reserve reads the user's entries.
# Production servers vacuum on their own (autovacuum, about once a minute); this machine's
# PostgreSQL runs with autovacuum off, so over a full bench run the entries pile up by the hundred
# thousand and the later points measure a table no production server would have.
VACUUM_NOTE = (
    "this machine's PostgreSQL runs with autovacuum {state}; the bench runs VACUUM on its database "
    "before every run, outside the measured time, standing in for the autovacuum of a production server"
)


def between_runs(run: Running) -> None:
    """Outside the measured time, before each run of a point."""
    if run.spec.backend == "postgres-redis":
        _psql("gatewayz_bench", "VACUUM")


HISTORY_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # a fixed Fernet key: bench data only


def _gatewayz_env(spec: TargetSpec, ctx: Ctx) -> dict[str, str]:
    env = base_env(
        {
            "GATEWAYZ_ADMIN_KEY": ADMIN_KEY,
            "GATEWAYZ_DATABASE_URL": f"sqlite:///{ctx.work / (spec.key + '.db')}",
            "OPENAI_BASE_URL": ctx.upstream_base,
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "ANTHROPIC_BASE_URL": ctx.upstream_origin,
            "ANTHROPIC_API_KEY": UPSTREAM_KEY,
            # API keys are stored as an HMAC under this secret (required with PostgreSQL).
            "GATEWAYZ_KEY_SECRET": KEY_SECRET,
            # The key ring chat history is encrypted with (the chat-hist route records history).
            "GATEWAYZ_ENCRYPTION_KEYS": HISTORY_KEY,
            **LIMIT_ENV,
        }
    )
    env.update(spec.env)
    return env


def _user_key(env: dict[str, str], ctx: Ctx) -> str:
    """The full pipeline's credential: a user with plenty of credits and an API key."""
    if "migrate" in ctx.features:
        _run_cli(["migrate"], env, ctx.say)
    args = ["users", "create", "--email", "bench@example.invalid", "--credits", "1000000"]
    if "plans" in ctx.features:
        args += ["--plan", "enterprise"]  # the most generous plan: the bench measures cost, not quotas
    out = _run_cli(args, env, ctx.say)
    data = json.loads(out[out.index("{") :])
    lift_limits(env["GATEWAYZ_DATABASE_URL"], str(data.get("plan") or "enterprise"))
    return str(data["api_key"])


# Rate limits stay on (every request pays for its checks) but far above what one machine can send.
BENCH_LIMITS = {
    "requests_per_minute": 1_000_000_000,
    "requests_per_day": 2_000_000_000,
    "tokens_per_minute": 2_000_000_000,
    "tokens_per_day": 2_000_000_000,
    "concurrency": 100_000,
}
LIMIT_ENV = {"GATEWAYZ_IP_RPM": "1000000000"}  # layer 1, per client IP: every request comes from 127.0.0.1


def lift_limits(database_url: str, plan: str) -> None:
    """Raise the bench user's plan limits in the bench's own, fresh database."""
    sets = ", ".join(f"{k} = {v}" for k, v in BENCH_LIMITS.items())
    sql = f"UPDATE plans SET {sets} WHERE id = '{plan}'"
    if database_url.startswith("sqlite:"):
        path = database_url.split("sqlite://", 1)[1]
        path = path[1:] if path.startswith("/") else path
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn, conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "plans" in tables:
                conn.execute(sql)
    else:
        subprocess.run(
            ["psql", database_url, "-v", "ON_ERROR_STOP=0", "-q", "-c", sql],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def _start_gatewayz(spec: TargetSpec, ctx: Ctx) -> Running:
    env = _gatewayz_env(spec, ctx)
    _prepare_backend(spec, ctx, ctx.say)
    notes: list[str] = []
    if "accounts" in ctx.features:
        token = _user_key(env, ctx)
        plan = "enterprise plan, " if "plans" in ctx.features else ""
        auth = f"a user's API key ({plan}1,000,000 USD of credits): the full pipeline as landed"
        notes.append(
            "rate limits are on, with the bench user's plan limits and GATEWAYZ_IP_RPM raised far above the "
            "load in the bench's own database, so every request pays for its checks and none is refused"
        )
    else:
        token, auth = ADMIN_KEY, "bootstrap admin key"
        notes.append(
            "accounts, limits and reserve/settle have not landed: the load authenticates with the bootstrap admin key"
        )
    if spec.backend == "postgres-redis":
        notes.append(VACUUM_NOTE.format(state=_psql("postgres", "SHOW autovacuum")))
    port = free_port()
    log = ctx.work / f"{spec.key}.log"
    if spec.server == "granian":
        exe = _ensure_granian(ctx)
        env["PYTHONPATH"] = str(ROOT)
        argv = [
            str(exe), "--interface", "asgi", "--host", LOOPBACK, "--port", str(port), "--workers", "1",
            "--loop", "uvloop", "--http", "1", "--no-ws", "--log-level", "warning", "--factory",
            "shared.server:create_server_app",
        ]  # fmt: skip
        version = f"granian {GRANIAN_VERSION}"
    else:
        argv = [str(gatewayz_bin()), "serve", "--host", LOOPBACK, "--port", str(port)]
        version = "gatewayz serve (uvicorn " + importlib.metadata.version("uvicorn") + ", uvloop, httptools)"
    proc = spawn(spec.key, argv, env, log, cwd=ctx.work)
    startup = _first_completion(proc, port, spec.model, token, 60)
    return Running(spec, port, token, startup, proc, proc.pid, auth, notes, version)


# ---- LiteLLM -----------------------------------------------------------------------------------


def _venv_version(venv: Path, dist: str) -> str | None:
    py = venv / "bin" / "python"
    if not py.exists():
        return None
    proc = subprocess.run(
        [str(py), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def _make_venv(venv: Path, requirements: list[str], ctx: Ctx) -> None:
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    ctx.say(
        f"  pip install {' '.join(requirements)} into {venv.relative_to(ROOT)} (a few minutes the first time)"
    )
    proc = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *requirements,
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if proc.returncode != 0:
        errors = [ln for ln in proc.stderr.splitlines() if "WARNING: Location" not in ln]
        raise RuntimeError("pip install failed: " + "\n".join(errors[-10:]))


def ensure_litellm(ctx: Ctx) -> Path:
    exe = LITELLM_VENV / "bin" / "litellm"
    if _venv_version(LITELLM_VENV, "litellm") != LITELLM_VERSION or not exe.exists():
        if not ctx.install:
            raise RuntimeError(f"LiteLLM {LITELLM_VERSION} is not installed in {LITELLM_VENV} (--no-install)")
        _make_venv(LITELLM_VENV, [f"litellm[proxy]=={LITELLM_VERSION}"], ctx)
    return exe


def _ensure_granian(ctx: Ctx) -> Path:
    exe = GRANIAN_VENV / "bin" / "granian"
    if _venv_version(GRANIAN_VENV, "granian") != GRANIAN_VERSION or not exe.exists():
        if not ctx.install:
            raise RuntimeError(f"granian {GRANIAN_VERSION} is not installed in {GRANIAN_VENV} (--no-install)")
        deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        _make_venv(GRANIAN_VENV, [*deps, f"granian=={GRANIAN_VERSION}"], ctx)
    return exe


def litellm_config(upstream_base: str) -> str:
    return f"""# Written by the Gatewayz bench: one model, pointing at the fake upstream; no database.
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: {upstream_base}
      api_key: {UPSTREAM_KEY}
general_settings:
  master_key: {LITELLM_MASTER_KEY}
litellm_settings:
  telemetry: false
"""


def _start_litellm(spec: TargetSpec, ctx: Ctx) -> Running:
    exe = ensure_litellm(ctx)
    cfg = ctx.work / "litellm.yaml"
    cfg.write_text(litellm_config(ctx.upstream_base))
    env = base_env(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price map from the network
            "LITELLM_LOG": "ERROR",
            "LITELLM_TELEMETRY": "False",
            "DISABLE_SCHEMA_UPDATE": "True",
        }
    )
    port = free_port()
    argv = [str(exe), "--config", str(cfg), "--host", LOOPBACK, "--port", str(port), "--num_workers", "1"]
    proc = spawn(spec.key, argv, env, ctx.work / "litellm.log", cwd=ctx.work)
    startup = _first_completion(proc, port, spec.model, LITELLM_MASTER_KEY, 180)
    return Running(
        spec,
        port,
        LITELLM_MASTER_KEY,
        startup,
        proc,
        proc.pid,
        "master key (no DB)",
        [],
        f"litellm {LITELLM_VERSION}",
    )
