"""Shared fixtures: the fake upstreams (one per dialect, on 127.0.0.1) and a gateway whose every
provider row points at the fake of its dialect, served by uvicorn on loopback.

The fakes and the gateway live for the whole session; each test starts from clean fake scripts
and a clean passive-health book, so no test depends on another's leftovers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from shared.config import Settings, env_name
from shared.providers import load_providers
from tests import services
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import FakeServer
from tests.harness import GatewayServer

if TYPE_CHECKING:
    from tests.fakes.anthropic_fake import AnthropicFake
    from tests.fakes.bedrock_fake import BedrockFake
    from tests.fakes.gemini_fake import GeminiFake


def _import_function_modules() -> None:
    """Import every function module once, at collection, under a temporary event loop: a
    module-level `Mangum(app)` makes an event loop current on the importing thread, and one left
    on the main thread leaks (pytest reports it unclosed). Every test module shares this."""
    policy_local = getattr(asyncio.get_event_loop_policy(), "_local", None)
    previous = getattr(policy_local, "_loop", None)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        from shared.server import create_server_app

        create_server_app()
    finally:
        asyncio.set_event_loop(previous)
        loop.close()


_import_function_modules()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the PostgreSQL and Redis servers this session started itself (tests/services.py)."""
    services.stop_all()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    own = services.started_names()
    if own:
        terminalreporter.write_line(
            f"gatewayz tests: this run started (and stopped) its own {' and '.join(own)}"
        )


ADMIN_KEY = "gw_admin_test_key_0123456789"
VERTEX_PREFIX = "/v1/projects/test-project/locations/us-central1/publishers/google"
ANTHROPIC_VERTEX_PREFIX = "/v1/projects/test-project/locations/us-east5/publishers/anthropic"


@pytest.fixture(scope="session")
def openai_fake() -> Iterator[OpenAIFake]:
    fake = OpenAIFake().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def anthropic_fake() -> Iterator[AnthropicFake]:
    from tests.fakes.anthropic_fake import AnthropicFake

    fake = AnthropicFake().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def gemini_fake() -> Iterator[GeminiFake]:
    from tests.fakes.gemini_fake import GeminiFake

    fake = GeminiFake().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def bedrock_fake() -> Iterator[BedrockFake]:
    from tests.fakes.bedrock_fake import BedrockFake

    fake = BedrockFake().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def fakes(
    openai_fake: OpenAIFake, anthropic_fake: AnthropicFake, gemini_fake: GeminiFake, bedrock_fake: BedrockFake
) -> dict[str, FakeServer]:
    """Dialect → its fake upstream."""
    return {
        "openai": openai_fake,
        "anthropic": anthropic_fake,
        "anthropic-vertex": anthropic_fake,  # Claude on Vertex: the same fake, at Vertex's paths
        "gemini": gemini_fake,
        "bedrock": bedrock_fake,
    }


def upstream_env(fakes: dict[str, Any]) -> dict[str, str]:
    """`<ID>_BASE_URL` and `<ID>_API_KEY` for every provider row, pointing at the fakes."""
    env: dict[str, str] = {}
    for pid, provider in load_providers().items():
        if provider.dialect == "openai":
            base = fakes["openai"].base_for(pid)
        elif provider.dialect == "anthropic":
            base = fakes["anthropic"].url
        elif provider.dialect == "anthropic-vertex":
            base = fakes["anthropic"].url + ANTHROPIC_VERTEX_PREFIX
        elif provider.dialect == "gemini":
            base = fakes["gemini"].url + (VERTEX_PREFIX if pid == "google-vertex" else "/v1beta")
        else:
            # Bedrock: signed with SigV4 by the static keys of the standard chain's first link.
            if "bedrock" not in fakes:
                continue
            from tests.fakes.bedrock_fake import ACCESS_KEY, SECRET_KEY

            env[env_name(pid, "BASE_URL")] = fakes["bedrock"].url
            env.update({"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY})
            continue
        env[env_name(pid, "BASE_URL")] = base
        env[env_name(pid, "API_KEY")] = f"sk-test-{pid}"
    return env


def gateway_settings(fakes: dict[str, Any], database_url: str, **extra: str) -> Settings:
    env = {
        "GATEWAYZ_ADMIN_KEY": ADMIN_KEY,
        "GATEWAYZ_DATABASE_URL": database_url,
        "GATEWAYZ_KEY_SECRET": "test-key-secret-0123456789abcdef0123456789",
        "GATEWAYZ_FIRST_BYTE_TIMEOUT": "2",
        "GATEWAYZ_STREAM_IDLE_TIMEOUT": "2",
        "GATEWAYZ_REQUEST_DEADLINE": "15",
        "GATEWAYZ_RETRY_AFTER_MAX": "1",
        # Every test calls from 127.0.0.1: layer 1 would throttle the suite itself. The limiter's
        # own tests start gateways with their own limits.
        "GATEWAYZ_IP_RPM": "1000000",
        "GATEWAYZ_IP_AUTH_FAILURES_PER_MINUTE": "100000",
        # Spare holds (PostgreSQL) on, as by default, but dropped soon after a test's last
        # request: the checks that no hold was left behind wait for them (tests/faults).
        "GATEWAYZ_SPARE_HOLD_SECONDS": "0.3",
        # Spare admissions (Redis) likewise: given back soon after a test's last request.
        "GATEWAYZ_SPARE_ADMISSION_SECONDS": "0.3",
        **upstream_env(fakes),
        **extra,
    }
    return Settings.from_env(env)


@dataclass
class Account:
    user_id: str
    key: str


def provision(
    settings: Settings, email: str, credits: Decimal, plan: str = "enterprise", **key: Any
) -> Account:
    """Migrate the database and create a user with credits and a key, on a runtime of its own
    (on the Enterprise plan unless told otherwise, so that plan limits stay out of the way)."""
    from shared.accounts.service import Actor, KeySpec
    from shared.runtime import Runtime
    from shared.store.migrate import migrate, read_migrations

    async def run() -> Account:
        rt = Runtime.build(settings)
        try:
            await migrate(rt.db, read_migrations())
            user, full_key = await rt.accounts.create_user(
                email,
                actor=Actor("system"),
                credits=credits,
                plan_id=plan,
                key=KeySpec(**key) if key else None,
            )
            return Account(user["id"], full_key)
        finally:
            await rt.close()

    return run_off_main_thread(run)


def run_off_main_thread(factory: Any) -> Any:
    """`asyncio.run` in a worker thread: on the main thread it would close the event loop that
    importing Mangum installs there, and pytest would report an unclosed loop at exit."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def start_gateway(settings: Settings) -> GatewayServer:
    from shared.runtime import Runtime
    from shared.server import create_server_app

    app = create_server_app(settings)
    app.state.runtime = Runtime.build(settings)
    return GatewayServer(app).start()


@pytest.fixture(scope="session")
def gateway_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('gateway') / 'gatewayz.db'}"


@pytest.fixture(scope="session")
def gateway_settings_(fakes: dict[str, FakeServer], gateway_db: str) -> Settings:
    return gateway_settings(fakes, gateway_db)


@pytest.fixture(scope="session")
def account(gateway_settings_: Settings) -> Account:
    """A user with plenty of credits and an inference key: the caller of most tests."""
    return provision(gateway_settings_, "caller@example.com", Decimal(1000))


@pytest.fixture(scope="session")
def gateway(gateway_settings_: Settings, account: Account) -> Iterator[GatewayServer]:
    server = start_gateway(gateway_settings_)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _clean_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fresh fake scripts and passive health for every test that uses them."""
    for name in ("openai_fake", "anthropic_fake", "gemini_fake", "bedrock_fake"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()
    if "gateway" in request.fixturenames:
        request.getfixturevalue("gateway").runtime.health.reset()
    yield


@pytest.fixture
def client(
    gateway: GatewayServer,
    account: Account,
    openai_fake: OpenAIFake,
    anthropic_fake: AnthropicFake,
    gemini_fake: GeminiFake,
) -> Iterator[Any]:
    import openai

    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=account.key, max_retries=0, timeout=20) as sdk:
        yield sdk
