"""Every API key restriction, through the official `openai` SDK (SPEC §5): each refusal has the
right status, exception class and code, and happens before any upstream call.

Keys are made and changed through the account routes (so a change invalidates the key cache the
way it does in production), on SQLite and on the real PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from shared.store import now_text
from tests import test_account_routes as accounts
from tests.conftest import Account, gateway_settings, provision, start_gateway
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import FakeServer, Reply
from tests.test_account_routes import ALL_BUT_ADMIN, Deployment

deployment = accounts.deployment  # the same fixture: a gateway per backend for this module
MODEL = "openai/gpt-4o"
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def manager(deployment: Deployment) -> Account:
    """The owner of the keys under test: every scope but admin, $10, the Enterprise plan (so the
    plan's own rate limits never interfere)."""
    return deployment.user("10", "enterprise", scopes=ALL_BUT_ADMIN)


@pytest.fixture
def make_key(deployment: Deployment, manager: Account) -> Callable[..., dict[str, Any]]:
    def make(**settings: Any) -> dict[str, Any]:
        with deployment.http(manager.key) as http:
            response = http.post("/v1/keys", json={"scopes": ["inference"], **settings})
        assert response.status_code == 200, response.text
        return dict(response.json())

    return make


def chat(deployment: Deployment, key: str, model: str = MODEL, **headers: str) -> Any:
    return deployment.sdk(key, **headers).chat.completions.create(model=model, messages=HELLO)


def refused(
    deployment: Deployment,
    key: str,
    error: type[openai.APIStatusError],
    status: int,
    code: str,
    model: str = MODEL,
    **headers: str,
) -> None:
    with pytest.raises(error) as caught:
        chat(deployment, key, model, **headers)
    assert caught.value.status_code == status
    assert caught.value.code == code
    assert caught.value.response.headers["x-request-id"]


def manage(deployment: Deployment, manager: Account, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    with deployment.http(manager.key) as http:
        response = http.request(method, path, **kwargs)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_scope(
    deployment: Deployment, make_key: Callable[..., dict[str, Any]], openai_fake: OpenAIFake
) -> None:
    key = make_key(scopes=["read"])["key"]
    refused(deployment, key, openai.PermissionDeniedError, 403, "insufficient_scope")
    assert openai_fake.requests == []
    assert chat(deployment, make_key(scopes=["inference"])["key"]).choices[0].message.content


def test_expiry(
    deployment: Deployment, make_key: Callable[..., dict[str, Any]], openai_fake: OpenAIFake
) -> None:
    expired = deployment.user(
        "1", scopes=["inference"], expires_at=now_text(datetime.now(UTC) - timedelta(seconds=1))
    )
    refused(deployment, expired.key, openai.AuthenticationError, 401, "expired_api_key")
    soon = make_key(expires_at=now_text(datetime.now(UTC) + timedelta(seconds=1.5)))["key"]
    chat(deployment, soon)  # still valid
    time.sleep(1.6)
    before = len(openai_fake.requests)
    refused(deployment, soon, openai.AuthenticationError, 401, "expired_api_key")
    assert len(openai_fake.requests) == before


def test_ip_allowlist(
    deployment: Deployment, make_key: Callable[..., dict[str, Any]], openai_fake: OpenAIFake
) -> None:
    elsewhere = make_key(ip_allowlist=["10.0.0.0/8"])["key"]
    refused(deployment, elsewhere, openai.PermissionDeniedError, 403, "ip_not_allowed")
    assert openai_fake.requests == []
    assert chat(deployment, make_key(ip_allowlist=["10.0.0.0/8", "127.0.0.1/32"])["key"]).choices


def test_allowed_origins(
    deployment: Deployment, make_key: Callable[..., dict[str, Any]], openai_fake: OpenAIFake
) -> None:
    key = make_key(allowed_origins=["https://app.example.com"])["key"]
    refused(deployment, key, openai.PermissionDeniedError, 403, "origin_not_allowed")
    refused(
        deployment,
        key,
        openai.PermissionDeniedError,
        403,
        "origin_not_allowed",
        Origin="https://evil.example.com",
    )
    assert openai_fake.requests == []
    assert chat(deployment, key, Origin="https://app.example.com").choices
    assert chat(deployment, key, Referer="https://app.example.com/settings/page").choices  # a referrer too


def test_model_allowlist(
    deployment: Deployment, make_key: Callable[..., dict[str, Any]], openai_fake: OpenAIFake
) -> None:
    key = make_key(allowed_models=["openai/gpt-4o*"])["key"]
    refused(
        deployment,
        key,
        openai.PermissionDeniedError,
        403,
        "model_not_allowed",
        model="anthropic/claude-sonnet-4",
    )
    refused(deployment, key, openai.PermissionDeniedError, 403, "model_not_allowed", model="openai/o3")
    assert openai_fake.requests == []
    assert chat(deployment, key, model="openai/gpt-4o-mini").model == "openai/gpt-4o-mini"
    assert chat(deployment, key, model="gpt-4o").model == "openai/gpt-4o"  # an alias of an allowed model
    exact = make_key(allowed_models=["gpt-4o-mini"])["key"]  # stored as openai/gpt-4o-mini
    assert chat(deployment, exact, model="openai/gpt-4o-mini").choices
    refused(deployment, exact, openai.PermissionDeniedError, 403, "model_not_allowed", model="openai/gpt-4o")


@pytest.mark.parametrize("period", ["day", "month", "total"])
def test_spend_limit(
    deployment: Deployment, make_key: Callable[..., dict[str, Any]], openai_fake: OpenAIFake, period: str
) -> None:
    key = make_key(spend_limits={period: "0.000001"})["key"]
    refused(deployment, key, openai.PermissionDeniedError, 403, "key_spend_limit_exceeded")
    assert openai_fake.requests == []  # refused at the reservation, before any upstream call
    roomy = make_key(spend_limits={period: "5"})["key"]
    assert chat(deployment, roomy).choices


@pytest.mark.parametrize("period", ["day", "month", "total"])
def test_spend_adds_up_over_requests_until_the_limit_refuses(
    deployment: Deployment, make_key: Callable[..., dict[str, Any]], openai_fake: OpenAIFake, period: str
) -> None:
    """Every settlement adds to the key's spend (a key with only this one limit): two requests of
    $0.015625 fit a $0.025 limit one at a time, the third does not."""
    key = make_key(spend_limits={period: "0.025"})["key"]
    openai_fake.script("gpt-4o", *(Reply(input=1000, output=1000) for _ in range(3)))
    sdk = deployment.sdk(key)
    for _ in range(2):  # max_tokens 1: each reserves little, the upstream then reports its usage
        sdk.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=1)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=1)
    assert caught.value.code == "key_spend_limit_exceeded"
    assert len(openai_fake.requests) == 2


def test_disabled_then_enabled(
    deployment: Deployment, manager: Account, make_key: Callable[..., dict[str, Any]], openai_fake: OpenAIFake
) -> None:
    key = make_key()
    assert chat(deployment, key["key"]).choices  # now in the key cache
    manage(deployment, manager, "PATCH", f"/v1/keys/{key['id']}", json={"disabled": True})
    before = len(openai_fake.requests)
    refused(deployment, key["key"], openai.PermissionDeniedError, 403, "api_key_disabled")
    assert len(openai_fake.requests) == before
    manage(deployment, manager, "PATCH", f"/v1/keys/{key['id']}", json={"disabled": False})
    assert chat(deployment, key["key"]).choices


def test_revoked(
    deployment: Deployment, manager: Account, make_key: Callable[..., dict[str, Any]], openai_fake: OpenAIFake
) -> None:
    key = make_key()
    assert chat(deployment, key["key"]).choices
    manage(deployment, manager, "DELETE", f"/v1/keys/{key['id']}")
    before = len(openai_fake.requests)
    refused(deployment, key["key"], openai.AuthenticationError, 401, "revoked_api_key")
    assert len(openai_fake.requests) == before


def test_rotation_with_a_grace_period(
    deployment: Deployment, manager: Account, make_key: Callable[..., dict[str, Any]]
) -> None:
    old = make_key(allowed_models=["openai/*"])
    assert chat(deployment, old["key"]).choices
    new = manage(deployment, manager, "POST", f"/v1/keys/{old['id']}/rotate", json={"grace_seconds": 1})
    assert new["key"] != old["key"] and new["allowed_models"] == ["openai/*"]
    assert chat(deployment, old["key"]).choices  # within the grace period
    assert chat(deployment, new["key"]).choices
    time.sleep(1.2)
    refused(deployment, old["key"], openai.AuthenticationError, 401, "revoked_api_key")
    assert chat(deployment, new["key"]).choices
    refused(
        deployment,
        new["key"],
        openai.PermissionDeniedError,
        403,
        "model_not_allowed",
        model="google/gemini-2.5-pro",
    )


def test_rotation_without_grace_stops_the_old_key_at_once(
    deployment: Deployment, manager: Account, make_key: Callable[..., dict[str, Any]]
) -> None:
    old = make_key()
    assert chat(deployment, old["key"]).choices
    new = manage(deployment, manager, "POST", f"/v1/keys/{old['id']}/rotate")
    refused(deployment, old["key"], openai.AuthenticationError, 401, "revoked_api_key")
    assert chat(deployment, new["key"]).choices


def test_insufficient_credits(deployment: Deployment, openai_fake: OpenAIFake) -> None:
    poor = deployment.user("0.000001", "enterprise", scopes=["inference"])
    with pytest.raises(openai.APIStatusError) as caught:
        chat(deployment, poor.key)
    assert caught.value.status_code == 402
    assert caught.value.code == "insufficient_credits"
    assert caught.value.type == "insufficient_credits"
    assert openai_fake.requests == []


def test_an_unparseable_client_ip_is_refused_by_any_ip_allowlist(
    fakes: dict[str, FakeServer], tmp_path: Path, openai_fake: OpenAIFake
) -> None:
    """Behind a trusted proxy the client's address comes from X-Forwarded-For, where anything can
    be written. An address that does not parse matches no network, not even 0.0.0.0/0."""
    settings = gateway_settings(
        fakes, f"sqlite:///{tmp_path / 'gw.db'}", GATEWAYZ_TRUSTED_PROXIES="127.0.0.1/32"
    )
    anywhere = provision(settings, "anywhere@example.com", Decimal(1), ip_allowlist=["0.0.0.0/0", "::/0"])
    unrestricted = provision(settings, "unrestricted@example.com", Decimal(1))
    server = start_gateway(settings)
    try:

        def call(key: str, forwarded: str) -> httpx.Response:
            return httpx.post(
                f"{server.url}/v1/chat/completions",
                json={"model": MODEL, "messages": HELLO},
                headers={"authorization": f"Bearer {key}", "x-forwarded-for": forwarded},
                timeout=20,
            )

        for forwarded in ("not-an-ip", "10.0.0.1.5", "::g", "10.0.0.1/8"):
            refused = call(anywhere.key, forwarded)
            assert refused.status_code == 403, (forwarded, refused.text)
            assert refused.json()["error"]["code"] == "ip_not_allowed"
        assert openai_fake.requests == []
        assert call(anywhere.key, "203.0.113.7").status_code == 200  # a real address passes
        assert call(unrestricted.key, "not-an-ip").status_code == 200  # no allowlist, no IP check
    finally:
        server.stop()
