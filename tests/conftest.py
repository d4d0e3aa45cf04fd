"""Shared fixtures: the fake upstreams (one per dialect, on 127.0.0.1) and a gateway whose every
provider row points at the fake of its dialect, served by uvicorn on loopback.

The fakes and the gateway live for the whole session; each test starts from clean fake scripts
and a clean passive-health book, so no test depends on another's leftovers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from shared.config import Settings, env_name
from shared.providers import load_providers
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import FakeServer
from tests.harness import GatewayServer

if TYPE_CHECKING:
    from tests.fakes.anthropic_fake import AnthropicFake
    from tests.fakes.gemini_fake import GeminiFake

ADMIN_KEY = "gw_admin_test_key_0123456789"
VERTEX_PREFIX = "/v1/projects/test-project/locations/us-central1/publishers/google"


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
def fakes(
    openai_fake: OpenAIFake, anthropic_fake: AnthropicFake, gemini_fake: GeminiFake
) -> dict[str, FakeServer]:
    """Dialect → its fake upstream."""
    return {"openai": openai_fake, "anthropic": anthropic_fake, "gemini": gemini_fake}


def upstream_env(fakes: dict[str, Any]) -> dict[str, str]:
    """`<ID>_BASE_URL` and `<ID>_API_KEY` for every provider row, pointing at the fakes."""
    env: dict[str, str] = {}
    for pid, provider in load_providers().items():
        if provider.dialect == "openai":
            base = fakes["openai"].base_for(pid)
        elif provider.dialect == "anthropic":
            base = fakes["anthropic"].url
        elif provider.dialect == "gemini":
            base = fakes["gemini"].url + (VERTEX_PREFIX if pid == "google-vertex" else "/v1beta")
        else:
            continue  # bedrock: no dialect yet, the row stays unconfigured
        env[env_name(pid, "BASE_URL")] = base
        env[env_name(pid, "API_KEY")] = f"sk-test-{pid}"
    return env


def gateway_settings(fakes: dict[str, Any], **extra: str) -> Settings:
    env = {
        "GATEWAYZ_ADMIN_KEY": ADMIN_KEY,
        "GATEWAYZ_FIRST_BYTE_TIMEOUT": "2",
        "GATEWAYZ_STREAM_IDLE_TIMEOUT": "2",
        "GATEWAYZ_REQUEST_DEADLINE": "15",
        "GATEWAYZ_RETRY_AFTER_MAX": "1",
        **upstream_env(fakes),
        **extra,
    }
    return Settings.from_env(env)


@pytest.fixture(scope="session")
def gateway(fakes: dict[str, FakeServer]) -> Iterator[GatewayServer]:
    from shared.runtime import Runtime
    from shared.server import create_server_app

    settings = gateway_settings(fakes)
    app = create_server_app(settings)
    app.state.runtime = Runtime.build(settings)
    server = GatewayServer(app).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _clean_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fresh fake scripts and passive health for every test that uses them."""
    for name in ("openai_fake", "anthropic_fake", "gemini_fake"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()
    if "gateway" in request.fixturenames:
        request.getfixturevalue("gateway").runtime.health.reset()
    yield


@pytest.fixture
def client(
    gateway: GatewayServer, openai_fake: OpenAIFake, anthropic_fake: AnthropicFake, gemini_fake: GeminiFake
) -> Any:
    import openai

    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=ADMIN_KEY, max_retries=0, timeout=20)
