"""BYOK in the pipeline (SPEC §4): a request to a provider the caller holds a key for goes out
with that key, that provider first, and is charged only the BYOK fee (a share of the usual cost)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal

import httpx
import openai
import pytest
from cryptography.fernet import Fernet

from tests.conftest import Account, gateway_settings, provision, start_gateway
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import FakeServer, Reply
from tests.harness import GatewayServer

MODEL = "meta-llama/llama-3.3-70b-instruct"
USER_KEY = "gsk_user_own_key_0123456789"


@pytest.fixture(scope="module")
def byok_gateway(
    fakes: dict[str, FakeServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayServer, Account]]:
    db = f"sqlite:///{tmp_path_factory.mktemp('byok') / 'gw.db'}"
    settings = gateway_settings(fakes, db, GATEWAYZ_ENCRYPTION_KEYS=Fernet.generate_key().decode())
    account = provision(settings, "own-keys@example.com", Decimal(10), scopes=["inference", "read", "keys"])
    server = start_gateway(settings)
    yield server, account
    server.stop()


def test_own_key_serves_first_and_costs_only_the_fee(
    byok_gateway: tuple[GatewayServer, Account], openai_fake: OpenAIFake
) -> None:
    server, account = byok_gateway
    auth = {"authorization": f"Bearer {account.key}"}
    stored = httpx.put(f"{server.url}/v1/provider-keys/groq", json={"api_key": USER_KEY}, headers=auth)
    assert stored.status_code == 200 and stored.json()["last4"] == USER_KEY[-4:]
    openai_fake.default = Reply(input=1000, output=100)
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=account.key, max_retries=0) as sdk:
        raw = sdk.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    # Groq is not the cheapest offer of this model, but the caller's own key comes first.
    assert raw.headers["x-gatewayz-provider"] == "groq"
    sent = openai_fake.requests[-1]
    assert sent.path.startswith("/groq/") and sent.headers["authorization"] == f"Bearer {USER_KEY}"
    # Groq's catalog price 0.59 / 0.79 per million; markup 1.25; BYOK fee 5 % of that.
    full = (
        (Decimal(1000) * Decimal("0.59") + Decimal(100) * Decimal("0.79"))
        / Decimal(1_000_000)
        * Decimal("1.25")
    )
    assert Decimal(raw.headers["x-gatewayz-cost"]) == full * Decimal("0.05")
    assert Decimal(str(json.loads(raw.http_response.content)["usage"]["cost"])) == full * Decimal("0.05")


def test_without_an_own_key_the_operators_key_and_full_price(
    byok_gateway: tuple[GatewayServer, Account], openai_fake: OpenAIFake
) -> None:
    server, account = byok_gateway
    auth = {"authorization": f"Bearer {account.key}"}
    httpx.delete(f"{server.url}/v1/provider-keys/groq", headers=auth)
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=account.key, max_retries=0) as sdk:
        raw = sdk.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"provider": {"only": ["groq"]}},
        )
    assert openai_fake.requests[-1].headers["authorization"] == "Bearer sk-test-groq"
    usage = raw.parse().usage
    full = (
        (Decimal(usage.prompt_tokens) * Decimal("0.59") + Decimal(usage.completion_tokens) * Decimal("0.79"))
        / Decimal(1_000_000)
        * Decimal("1.25")
    )
    assert Decimal(raw.headers["x-gatewayz-cost"]) == full
