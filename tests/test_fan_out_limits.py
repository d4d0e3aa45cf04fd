"""`n` is bounded and paid for in limits (issue 10, defect 11): at most `GATEWAYZ_MAX_N` choices
(16 by default), and where a provider returns one choice per call (Anthropic, Gemini through
the pivot) each of the n calls counts as a request and holds a concurrency slot."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from shared.config import ConfigError, Settings
from shared.errors import InvalidRequest
from shared.pipeline.request import check_chat
from tests.conftest import Account, provision
from tests.fakes.server import FakeServer
from tests.harness import GatewayServer

HI = [{"role": "user", "content": "hi"}]
CLAUDE = "anthropic/claude-sonnet-4.5"  # Anthropic has no `n`: one call per choice
ONLY_ANTHROPIC = {"only": ["anthropic"]}


def post(gateway: GatewayServer, key: str, **body: object) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"messages": HI, **body},
        headers={"authorization": f"Bearer {key}"},
        timeout=20,
    )


@pytest.fixture(scope="module")
def limited(gateway_settings_: Settings, gateway: GatewayServer) -> Account:
    """A key of its own: 10 requests a minute, 3 at once."""
    return provision(
        gateway_settings_,
        "fan-out@example.com",
        Decimal(100),
        rate_limits={"requests_per_minute": 10, "concurrency": 3},
    )


@pytest.fixture
def anthropic(fakes: dict[str, FakeServer]) -> Iterator[FakeServer]:
    yield fakes["anthropic"]


@pytest.mark.parametrize("n", [17, 128])
def test_n_above_the_cap_is_a_400(
    gateway: GatewayServer, account: Account, anthropic: FakeServer, n: int
) -> None:
    r = post(gateway, account.key, model=CLAUDE, n=n, provider=ONLY_ANTHROPIC)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "n" and "between 1 and 16" in error["message"]
    assert anthropic.requests == []  # was 128 upstream calls for one request


def test_each_fanned_out_call_counts_as_a_request(
    gateway: GatewayServer, limited: Account, anthropic: FakeServer
) -> None:
    r = post(gateway, limited.key, model=CLAUDE, n=3, provider=ONLY_ANTHROPIC)
    assert r.status_code == 200, r.text
    assert len(r.json()["choices"]) == 3 and len(anthropic.requests) == 3
    assert r.headers["x-ratelimit-limit-requests"] == "10"
    assert r.headers["x-ratelimit-remaining-requests"] == "7"  # was 9: three calls counted as one
    # More calls at once than the key may ever run is the caller's mistake, said as such.
    r = post(gateway, limited.key, model=CLAUDE, n=4, provider=ONLY_ANTHROPIC)
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"
    assert "concurrent requests limit of 3" in r.json()["error"]["message"]
    assert len(anthropic.requests) == 3
    # A provider that returns n choices in one call makes one call: one request.
    r = post(gateway, limited.key, model="openai/gpt-4o", n=4, provider={"only": ["openai"]})
    assert r.status_code == 200 and len(r.json()["choices"]) == 4
    assert r.headers["x-ratelimit-remaining-requests"] == "6"


def test_the_cap_is_a_setting() -> None:
    settings = Settings.from_env({"GATEWAYZ_MAX_N": "4"})
    assert settings.limits.max_n == 4
    body = {"messages": HI, "n": 5}
    with pytest.raises(InvalidRequest):
        check_chat(body, settings.limits.max_n)
    assert check_chat(body, 8).n == 5
    assert Settings.from_env({}).limits.max_n == 16
    for bad in ("0", "129", "many"):
        with pytest.raises(ConfigError, match="GATEWAYZ_MAX_N"):
            Settings.from_env({"GATEWAYZ_MAX_N": bad})
