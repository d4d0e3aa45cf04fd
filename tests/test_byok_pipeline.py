"""BYOK in the pipeline (SPEC §4): a request to a provider the caller holds a key for goes out
with that key, that provider first, and is charged only the BYOK fee (a share of the usual cost)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest
from cryptography.fernet import Fernet

from shared.accounts.byok import encrypt
from shared.config import Settings
from shared.store import now_text
from tests.conftest import Account, gateway_settings, provision, start_gateway
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import FakeServer, Reply
from tests.harness import GatewayServer
from tests.store.support import query

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


# --- providers without a fixed public URL (issue 10, defect 3) -------------------------------------

LOCAL_MODEL = "local:anything"


def _store_legacy_local_key(settings: Settings, user_id: str) -> None:
    """A `local` key as the gateway used to accept it (PUT now refuses it), written to the store."""
    query(
        settings.database_url,
        "INSERT INTO provider_keys (id, user_id, provider, encrypted_key, last4, created_at, updated_at) "
        "VALUES (:id, :u, 'local', :enc, :last4, :now, :now)",
        {
            "id": f"pk_{uuid.uuid4().hex}",
            "u": user_id,
            "enc": encrypt(settings.encryption_keys, USER_KEY),
            "last4": USER_KEY[-4:],
            "now": now_text(),
        },
    )


@pytest.mark.parametrize("local_url", ["", "set"])
def test_a_users_own_local_key_never_chooses_where_the_gateway_calls(
    fakes: dict[str, FakeServer], tmp_path: Path, openai_fake: OpenAIFake, local_url: str
) -> None:
    """`local` (a self-hosted server) has no URL but the operator's LOCAL_BASE_URL: a user cannot
    store a key for it, and a key stored before that rule is ignored. Unset, the row is simply not
    configured — no placeholder on the gateway's loopback is called; set, the operator's server is
    called with the operator's credentials, as for everyone."""
    env = {} if local_url else {"LOCAL_BASE_URL": "", "LOCAL_API_KEY": ""}
    settings = gateway_settings(
        fakes,
        f"sqlite:///{tmp_path / 'gw.db'}",
        GATEWAYZ_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        **env,
    )
    account = provision(settings, "local-byok@example.com", Decimal(1), scopes=["inference", "read", "keys"])
    _store_legacy_local_key(settings, account.user_id)  # before the gateway caches the key
    server = start_gateway(settings)
    try:
        auth = {"authorization": f"Bearer {account.key}"}
        refused = httpx.put(f"{server.url}/v1/provider-keys/local", json={"api_key": USER_KEY}, headers=auth)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "byok_not_supported"
        assert "no fixed public URL" in refused.json()["error"]["message"]
        stored = query(settings.database_url, "SELECT updated_at FROM provider_keys")
        assert len(stored) == 1  # the old key, unchanged

        with openai.OpenAI(base_url=f"{server.url}/v1", api_key=account.key, max_retries=0) as sdk:
            if not local_url:
                with pytest.raises(openai.APIStatusError) as caught:
                    sdk.chat.completions.create(
                        model=LOCAL_MODEL, messages=[{"role": "user", "content": "hi"}]
                    )
                assert caught.value.status_code == 503 and caught.value.code == "no_provider_available"
                assert "LOCAL_BASE_URL is not set" in caught.value.message
                assert "x-gatewayz-attempts" not in caught.value.response.headers  # nothing was called
                return
            raw = sdk.chat.completions.with_raw_response.create(
                model=LOCAL_MODEL, messages=[{"role": "user", "content": "hi"}]
            )
        assert raw.headers["x-gatewayz-provider"] == "local"
        assert openai_fake.requests[-1].headers["authorization"] == "Bearer sk-test-local"
        (record,) = query(
            settings.database_url,
            "SELECT byok FROM request_records WHERE user_id = :u",
            {"u": account.user_id},
        )
        assert not record["byok"]
    finally:
        server.stop()
