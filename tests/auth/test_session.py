"""`POST /auth/session`: a Supabase Auth access token exchanged for the user and a first key (SPEC §5).

Sign-in, accounts linked or not, keys, suspended and admin accounts, the verifier's configuration
and outages, and the exchange on PostgreSQL; against the fake Supabase Auth and the two gateways of
tests/auth/conftest.py. Tokens that do not verify: test_tokens.py.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from shared.accounts.identity import (
    AuthNotConfigured,
    AuthUnavailable,
    InvalidToken,
    SessionRequest,
    SupabaseAuthConfig,
    TokenVerifier,
    exchange,
)
from shared.accounts.service import Actor
from shared.config import ConfigError, Settings
from shared.runtime import Runtime
from shared.store.migrate import migrate, read_migrations
from tests.auth.support import SECRET, Gw, error_of, grant, user_count
from tests.conftest import Account, provision
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply
from tests.fakes.supabase_fake import ANON_KEY, SupabaseFake
from tests.harness import GatewayServer
from tests.store.support import postgres_schema

# --- HS256 with the project's JWT secret -----------------------------------------------------------


def test_first_sign_in_creates_the_user_and_a_key_that_works(
    local: Gw, supabase: SupabaseFake, openai_fake: OpenAIFake
) -> None:
    sub = str(uuid.uuid4())
    token = supabase.sign_hs256(supabase.claims(sub, "New.User@Example.com"))
    response = local.session(token)
    assert response.status_code == 200, response.text
    session = response.json()
    assert session["object"] == "auth.session"
    assert session["created"] is True and session["linked"] is False
    user = session["user"]
    assert user["email"] == "new.user@example.com" and user["role"] == "user" and user["status"] == "active"
    key = session["api_key"]
    assert key["key"].startswith("gw_live_") and key["last4"] == key["key"][-4:]
    assert key["scopes"] == ["billing", "inference", "keys", "read"]  # every scope but admin
    (row,) = local.rows("SELECT id, auth_subject FROM users WHERE email = :e", {"e": "new.user@example.com"})
    assert row == {"id": user["id"], "auth_subject": sub}
    audit = local.rows(
        "SELECT action, actor_type, actor_id, details FROM audit_log WHERE action IN ('user.create', 'key.create') "
        "AND (target_id = :u OR target_id = :k) ORDER BY action DESC",
        {"u": user["id"], "k": key["id"]},
    )
    assert [(a["action"], a["actor_type"], a["actor_id"]) for a in audit] == [
        ("user.create", "user", f"supabase:{sub}"),
        ("key.create", "user", f"supabase:{sub}"),
    ]
    assert all(key["key"] not in a["details"] and token not in a["details"] for a in audit)

    # The key passes the gateway's auth and bills the new account.
    grant(local.settings, user["id"], Decimal(5))
    openai_fake.script("gpt-4o", Reply(text="signed in"))
    with openai.OpenAI(base_url=f"{local.server.url}/v1", api_key=key["key"], max_retries=0) as sdk:
        completion = sdk.chat.completions.create(
            model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    assert completion.choices[0].message.content == "signed in"


def test_a_later_sign_in_returns_the_same_user_without_a_new_key(local: Gw, supabase: SupabaseFake) -> None:
    sub = str(uuid.uuid4())
    first = local.session(supabase.sign_hs256(supabase.claims(sub, "again@example.com"))).json()
    later = local.session(supabase.sign_hs256(supabase.claims(sub, "again@example.com")))
    assert later.status_code == 200, later.text
    body = later.json()
    assert body["created"] is False and body["api_key"] is None
    assert body["user"]["id"] == first["user"]["id"]
    keys = local.rows("SELECT id FROM api_keys WHERE user_id = :u", {"u": body["user"]["id"]})
    assert len(keys) == 1

    # A new key only when asked, with the asked name and scopes (the token may come in the body).
    token = supabase.sign_hs256(supabase.claims(sub, "again@example.com"))
    asked = local.session(
        body={"access_token": token, "create_key": True, "key_name": "laptop", "scopes": ["keys", "read"]}
    )
    assert asked.status_code == 200, asked.text
    new_key = asked.json()["api_key"]
    assert new_key["name"] == "laptop" and sorted(new_key["scopes"]) == ["keys", "read"]
    assert new_key["key"].startswith("gw_live_")
    assert len(local.rows("SELECT id FROM api_keys WHERE user_id = :u", {"u": body["user"]["id"]})) == 2
    (audit,) = local.rows(
        "SELECT actor_type, actor_id FROM audit_log WHERE action = 'key.create' AND target_id = :k",
        {"k": new_key["id"]},
    )
    assert audit == {"actor_type": "user", "actor_id": body["user"]["id"]}
    # The new key manages the account's provider keys (it has the keys scope).
    listed = local.http.get("/v1/provider-keys", headers={"authorization": f"Bearer {new_key['key']}"})
    assert listed.status_code == 200 and listed.json()["data"] == []


def test_missing_or_malformed_credentials(local: Gw) -> None:
    missing = local.session()
    assert missing.status_code == 401 and error_of(missing)["code"] == "missing_token"
    basic = local.session(headers={"authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"access_token": "x", "surprise": True},
        {"scopes": ["admin"]},
        {"scopes": []},
        {"create_key": "yes"},
        {"key_name": ""},
        {"key_name": "x" * 101},
        ["not", "an", "object"],
    ],
)
def test_bad_bodies_get_400_and_create_nothing(local: Gw, supabase: SupabaseFake, body: Any) -> None:
    token = supabase.sign_hs256(supabase.claims())
    before = user_count(local)
    response = local.session(token, body=body)
    assert response.status_code == 400, response.text
    assert error_of(response)["type"] == "invalid_request_error"
    assert user_count(local) == before


def test_two_different_tokens_are_refused(local: Gw, supabase: SupabaseFake) -> None:
    one = supabase.sign_hs256(supabase.claims())
    two = supabase.sign_hs256(supabase.claims())
    response = local.session(one, body={"access_token": two})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"is_anonymous": True, "email": ""}, "anonymous_user"),
        ({"email": ""}, "email_required"),
        ({"user_metadata": {"email_verified": False}}, "email_not_verified"),
    ],
)
def test_a_first_sign_in_needs_a_verified_email(
    local: Gw, supabase: SupabaseFake, claims: dict[str, Any], code: str
) -> None:
    before = user_count(local)
    response = local.session(supabase.sign_hs256(supabase.claims(**claims)))
    assert response.status_code == 403, response.text
    error = error_of(response)
    assert error["code"] == code and error["type"] == "permission_error"
    assert user_count(local) == before


def test_an_operator_made_account_is_linked_on_first_sign_in(local: Gw, supabase: SupabaseFake) -> None:
    made = provision(local.settings, "made-by-cli@example.com", Decimal(3))
    sub = str(uuid.uuid4())
    response = local.session(supabase.sign_hs256(supabase.claims(sub, "made-by-cli@example.com")))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["linked"] is True and body["created"] is False
    assert body["user"]["id"] == made.user_id and body["user"]["balance"] == "3"
    assert body["api_key"]["key"].startswith("gw_live_") and body["api_key"]["key"] != made.key
    assert local.rows("SELECT auth_subject FROM users WHERE id = :u", {"u": made.user_id}) == [
        {"auth_subject": sub}
    ]
    (link,) = local.rows(
        "SELECT actor_type, actor_id, details FROM audit_log WHERE action = 'user.link' AND target_id = :u",
        {"u": made.user_id},
    )
    assert link["actor_type"] == "user" and json.loads(link["details"])["auth_subject"] == sub
    # Another Supabase user with the same email cannot take the account over.
    other = local.session(supabase.sign_hs256(supabase.claims(str(uuid.uuid4()), "made-by-cli@example.com")))
    assert other.status_code == 409 and error_of(other)["code"] == "account_conflict"


def operator_user(settings: Settings, email: str, role: str = "user") -> str:
    """An account an operator made (CLI or admin API), with its own first key; returns its id."""

    async def run() -> str:
        rt = Runtime.build(settings)
        try:
            user, _ = await rt.accounts.create_user(email, actor=Actor("cli"), role=role)
            return str(user["id"])
        finally:
            await rt.close()

    return asyncio.run(run())


def _untouched(gw: Gw, user_id: str) -> dict[str, Any]:
    return {
        "subject": gw.rows("SELECT auth_subject FROM users WHERE id = :u", {"u": user_id}),
        "keys": gw.rows("SELECT id FROM api_keys WHERE user_id = :u ORDER BY id", {"u": user_id}),
        "audit": gw.rows("SELECT id FROM audit_log WHERE target_id = :u ORDER BY id", {"u": user_id}),
    }


@pytest.mark.parametrize(
    "claims",
    [
        {"user_metadata": {"email": "x"}},  # nothing says the email is verified
        {"user_metadata": {}, "email_verified": "true"},  # only JSON true counts
        {"user_metadata": {"email_verified": 1}},
        {"user_metadata": {"email_verified": True}, "email_verified": False},  # a false wins
    ],
)
def test_an_existing_account_is_linked_only_with_a_verified_email(
    local: Gw, supabase: SupabaseFake, claims: dict[str, Any]
) -> None:
    email = f"linkme-{uuid.uuid4().hex[:8]}@example.com"
    user_id = operator_user(local.settings, email)
    before = _untouched(local, user_id)
    for token in (
        supabase.sign_hs256(supabase.claims(str(uuid.uuid4()), email, **claims)),
        supabase.sign(supabase.claims(str(uuid.uuid4()), email, **claims)),
    ):
        response = local.session(token)
        assert response.status_code == 403, response.text
        error = error_of(response)
        assert error["code"] == "email_not_verified" and "confirm" in error["message"].lower()
        assert "gw_live_" not in response.text
    assert _untouched(local, user_id) == before
    # The token's top-level `email_verified: true` is enough on its own.
    verified = local.session(
        supabase.sign_hs256(supabase.claims(str(uuid.uuid4()), email, user_metadata={}, email_verified=True))
    )
    assert verified.status_code == 200 and verified.json()["linked"] is True


def test_supabase_auths_record_decides_whether_an_account_is_linked(
    remote: Gw, supabase: SupabaseFake
) -> None:
    email = f"remote-link-{uuid.uuid4().hex[:8]}@example.com"
    user_id = operator_user(remote.settings, email)
    sub = str(uuid.uuid4())
    supabase.user_overrides[sub] = {"email_confirmed_at": None}
    before = _untouched(remote, user_id)
    # The token says verified, the server's record says not: not linked.
    response = remote.session(supabase.sign(supabase.claims(sub, email)))
    assert response.status_code == 403 and error_of(response)["code"] == "email_not_verified"
    assert _untouched(remote, user_id) == before
    supabase.user_overrides[sub] = {"email_confirmed_at": "2026-11-29T00:00:00Z"}
    linked = remote.session(supabase.sign(supabase.claims(sub, email)))
    assert linked.status_code == 200 and linked.json()["user"]["id"] == user_id


def test_an_admins_account_is_never_linked_nor_given_a_key_by_sign_in(
    local: Gw, supabase: SupabaseFake
) -> None:
    """The probe of issue 10: a validly signed token carrying an operator-made admin's email got
    that account and a key that could list and revoke the admin's keys."""
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    admin_id = operator_user(local.settings, email, role="admin")
    before = _untouched(local, admin_id)
    unverified = supabase.claims(str(uuid.uuid4()), email, user_metadata={})
    verified = supabase.claims(str(uuid.uuid4()), email)
    for claims, code in ((unverified, "email_not_verified"), (verified, "admin_account")):
        response = local.session(supabase.sign_hs256(claims))
        assert response.status_code == 403, response.text
        assert error_of(response)["code"] == code
        assert "gw_live_" not in response.text and admin_id not in response.text
    assert _untouched(local, admin_id) == before

    # A signed-in user promoted to admin later: sign-in still answers, but mints no key.
    sub = str(uuid.uuid4())
    member = local.session(
        supabase.sign_hs256(supabase.claims(sub, f"promoted-{sub[:8]}@example.com"))
    ).json()
    member_id = member["user"]["id"]

    async def promote() -> None:
        rt = Runtime.build(local.settings)
        try:
            await rt.accounts.set_user(member_id, Actor("cli"), role="admin")
        finally:
            await rt.close()

    asyncio.run(promote())
    token = supabase.sign_hs256(supabase.claims(sub, f"promoted-{sub[:8]}@example.com"))
    plain = local.session(token)
    assert plain.status_code == 200 and plain.json()["api_key"] is None
    keys_before = _untouched(local, member_id)
    asked = local.session(token, body={"create_key": True})
    assert asked.status_code == 403 and error_of(asked)["code"] == "admin_account"
    assert _untouched(local, member_id) == keys_before


def test_a_suspended_account_cannot_sign_in(local: Gw, supabase: SupabaseFake) -> None:
    sub = str(uuid.uuid4())
    user_id = local.session(supabase.sign_hs256(supabase.claims(sub, "suspend-me@example.com"))).json()[
        "user"
    ]["id"]

    async def suspend() -> None:
        rt = Runtime.build(local.settings)
        try:
            await rt.accounts.set_user(user_id, Actor("system"), status="suspended")
        finally:
            await rt.close()

    asyncio.run(suspend())
    response = local.session(supabase.sign_hs256(supabase.claims(sub, "suspend-me@example.com")))
    assert response.status_code == 403 and error_of(response)["code"] == "account_suspended"


def test_a_gateway_without_supabase_configuration_says_so(gateway: GatewayServer, account: Account) -> None:
    response = httpx.post(f"{gateway.url}/auth/session", headers={"authorization": "Bearer a.b.c"})
    assert response.status_code == 503
    error = error_of(response)
    assert error["code"] == "auth_not_configured" and "SUPABASE_JWT_SECRET" in error["message"]


# --- the verifier on its own -----------------------------------------------------------------------


async def test_an_unreachable_supabase_is_503_not_401(unused_port: int, supabase: SupabaseFake) -> None:
    config = SupabaseAuthConfig(url=f"http://127.0.0.1:{unused_port}", api_key=ANON_KEY)
    verifier = TokenVerifier(config)
    with pytest.raises(AuthUnavailable):
        await verifier.verify(supabase.sign_hs256(supabase.claims()))  # supabase-py path
    with pytest.raises(AuthUnavailable):
        await verifier.verify(supabase.sign(supabase.claims()))  # JWKS path
    await verifier.close()
    with pytest.raises(AuthNotConfigured):
        await TokenVerifier(SupabaseAuthConfig()).verify("a.b.c")
    with pytest.raises(InvalidToken):  # HS256 with neither the secret nor an API key
        await TokenVerifier(SupabaseAuthConfig(url=supabase.url)).verify(
            supabase.sign_hs256(supabase.claims())
        )


def test_configuration_is_checked() -> None:
    with pytest.raises(ConfigError, match="SUPABASE_URL"):
        SupabaseAuthConfig.from_env({"SUPABASE_URL": "project.supabase.co"})
    with pytest.raises(ConfigError, match="SUPABASE_JWT_SECRET"):
        SupabaseAuthConfig.from_env({"SUPABASE_JWT_SECRET": "short"})
    config = SupabaseAuthConfig.from_env(
        {"SUPABASE_URL": "https://ref.supabase.co/", "SUPABASE_SERVICE_ROLE_KEY": "service-key"}
    )
    assert config.issuer == "https://ref.supabase.co/auth/v1"
    assert config.jwks_url == "https://ref.supabase.co/auth/v1/.well-known/jwks.json"
    assert config.api_key == "service-key"


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- PostgreSQL --------------------------------------------------------------------------------------


def test_the_exchange_on_postgres(supabase: SupabaseFake) -> None:
    async def run(url: str) -> None:
        settings = Settings.from_env(
            {
                "GATEWAYZ_DATABASE_URL": url,
                "GATEWAYZ_KEY_SECRET": "test-key-secret-0123456789abcdef0123456789",
                "SUPABASE_JWT_SECRET": SECRET,
                "SUPABASE_URL": supabase.url,
            }
        )
        rt = Runtime.build(settings)
        try:
            await migrate(rt.db, read_migrations())
            sub = str(uuid.uuid4())
            token = supabase.sign_hs256(supabase.claims(sub, "pg@example.com"))
            first = await exchange(rt, token, SessionRequest())
            assert first["created"] and first["api_key"]["key"].startswith("gw_live_")
            later = await exchange(rt, token, SessionRequest(create_key=True, key_name="second"))
            assert not later["created"] and later["user"]["id"] == first["user"]["id"]
            assert later["api_key"]["name"] == "second"
            made, _ = await rt.accounts.create_user("pg-made@example.com", actor=Actor("cli"))
            linked = await exchange(
                rt, supabase.sign(supabase.claims(str(uuid.uuid4()), "pg-made@example.com")), SessionRequest()
            )
            assert linked["linked"] and linked["user"]["id"] == made["id"]
            record = await rt.keys.lookup(linked["api_key"]["key"])
            assert record is not None and record.user_id == made["id"]
        finally:
            await rt.close()

    with postgres_schema() as url:
        asyncio.run(run(url))
