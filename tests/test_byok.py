"""BYOK provider keys (SPEC §4): stored encrypted with GATEWAYZ_ENCRYPTION_KEYS (Fernet, rotation),
shown only as the last four characters, managed under the `keys` scope at /v1/provider-keys.

HTTP tests run on a gateway of their own (SQLite, with an encryption key); the store functions,
rotation and `byok_key` run on SQLite and on the real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from shared.accounts import byok
from shared.accounts.byok import (
    ByokKeyUnreadable,
    EncryptionNotConfigured,
    byok_key,
    decrypt,
    delete_provider_key,
    encrypt,
    list_provider_keys,
    put_provider_key,
    reencrypt,
    reencrypt_all,
)
from shared.accounts.service import Actor
from shared.config import Settings
from shared.runtime import Runtime
from shared.store.migrate import migrate, read_migrations
from tests.conftest import Account, gateway_settings, provision, start_gateway
from tests.fakes.server import FakeServer
from tests.harness import GatewayServer
from tests.services import redis_url
from tests.store.support import BACKENDS, database_url, query

KEY_OLD = Fernet.generate_key().decode()
KEY_NEW = Fernet.generate_key().decode()
SECRET = "sk-or-v1-" + "0123456789abcdef" * 4  # what a user's own OpenRouter key looks like
MANAGER_SCOPES = ["inference", "read", "keys"]


class Gw:
    def __init__(self, server: GatewayServer, settings: Settings, manager: Account, reader: Account) -> None:
        self.server = server
        self.settings = settings
        self.manager = manager  # a key with the `keys` scope
        self.reader = reader  # a key without the keys scope
        self.http = httpx.Client(base_url=server.url, timeout=20)

    def call(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {key or self.manager.key}"}
        return self.http.request(method, path, headers=headers, **kwargs)

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return query(self.settings.database_url, sql, params)

    def stored(self) -> list[dict[str, Any]]:
        return self.rows(
            "SELECT provider, encrypted_key, last4, created_at, updated_at FROM provider_keys WHERE user_id = :u "
            "ORDER BY provider",
            {"u": self.manager.user_id},
        )

    def audit(self) -> list[dict[str, Any]]:
        return self.rows(
            "SELECT action, actor_type, actor_id, target_id, details FROM audit_log "
            "WHERE action LIKE 'provider_key.%' AND target_id = :u ORDER BY created_at, id",
            {"u": self.manager.user_id},
        )


@pytest.fixture(scope="module")
def gw(fakes: dict[str, FakeServer], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gw]:
    db = f"sqlite:///{tmp_path_factory.mktemp('byok') / 'gatewayz.db'}"
    settings = gateway_settings(fakes, db, GATEWAYZ_ENCRYPTION_KEYS=f"{KEY_NEW},{KEY_OLD}")
    manager = provision(settings, "byok@example.com", Decimal(0), scopes=MANAGER_SCOPES)
    reader = provision(settings, "byok-reader@example.com", Decimal(0), scopes=["inference", "read"])
    gateway = Gw(start_gateway(settings), settings, manager, reader)
    yield gateway
    gateway.http.close()
    gateway.server.stop()


@pytest.fixture(autouse=True)
def _no_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "gw" in request.fixturenames:
        gw: Gw = request.getfixturevalue("gw")
        gw.rows("DELETE FROM provider_keys WHERE user_id = :u", {"u": gw.manager.user_id})


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    return dict(body["error"])


# --- HTTP ------------------------------------------------------------------------------------------


def test_store_list_replace_and_delete(gw: Gw) -> None:
    put = gw.call("PUT", "/v1/provider-keys/openrouter", json={"api_key": SECRET})
    assert put.status_code == 200, put.text
    assert put.json() == {
        "object": "provider_key",
        "provider": "openrouter",
        "last4": SECRET[-4:],
        "created_at": put.json()["created_at"],
        "updated_at": put.json()["created_at"],
    }
    assert SECRET not in put.text

    # At rest: Fernet ciphertext under the newest key, never the key itself.
    (row,) = gw.stored()
    assert row["encrypted_key"] != SECRET and SECRET not in row["encrypted_key"]
    assert SECRET[-12:] not in row["encrypted_key"]
    assert Fernet(KEY_NEW.encode()).decrypt(row["encrypted_key"].encode()).decode() == SECRET

    listed = gw.call("GET", "/v1/provider-keys")
    assert listed.status_code == 200
    assert listed.json() == {"object": "list", "data": [put.json()]}
    assert SECRET not in listed.text and row["encrypted_key"] not in listed.text

    # Replacing keeps one row, the creation time, and moves the update time.
    time.sleep(0.01)
    replacement = "sk-or-v1-" + "fedcba9876543210" * 4
    again = gw.call("PUT", "/v1/provider-keys/openrouter", json={"api_key": f"  {replacement}\n"})
    assert again.status_code == 200
    assert again.json()["last4"] == replacement[-4:]
    assert again.json()["created_at"] == put.json()["created_at"]
    assert again.json()["updated_at"] > put.json()["updated_at"]
    (row,) = gw.stored()
    assert decrypt(gw.settings.encryption_keys, row["encrypted_key"]) == replacement  # stripped

    gone = gw.call("DELETE", "/v1/provider-keys/openrouter")
    assert gone.status_code == 200 and gone.json() == {
        "object": "provider_key",
        "provider": "openrouter",
        "deleted": True,
    }
    assert gw.stored() == []
    missing = gw.call("DELETE", "/v1/provider-keys/openrouter")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"

    audit = gw.audit()
    assert [(a["action"], a["actor_type"], a["actor_id"]) for a in audit] == [
        ("provider_key.put", "user", gw.manager.user_id),
        ("provider_key.put", "user", gw.manager.user_id),
        ("provider_key.delete", "user", gw.manager.user_id),
    ]
    assert [json.loads(a["details"]) for a in audit] == [
        {"provider": "openrouter", "last4": SECRET[-4:]},
        {"provider": "openrouter", "last4": replacement[-4:]},
        {"provider": "openrouter", "last4": replacement[-4:]},
    ]
    for entry in audit:
        assert SECRET[:-4] not in entry["details"] and replacement[:-4] not in entry["details"]


def test_the_key_cache_learns_about_byok_providers(gw: Gw) -> None:
    def cached_providers() -> frozenset[str]:
        entries = gw.server.runtime.keys._entries.values()
        (record,) = [r for r, _ in entries if r.user_id == gw.manager.user_id]
        return record.byok_providers

    assert gw.call("GET", "/v1/provider-keys").status_code == 200  # caches the key record
    assert cached_providers() == frozenset()
    assert gw.call("PUT", "/v1/provider-keys/groq", json={"api_key": "gsk_" + "a" * 40}).status_code == 200
    assert (
        gw.call("PUT", "/v1/provider-keys/anthropic", json={"api_key": "sk-ant-" + "b" * 40}).status_code
        == 200
    )
    assert gw.call("GET", "/v1/provider-keys").status_code == 200
    assert cached_providers() == {"groq", "anthropic"}
    assert gw.call("DELETE", "/v1/provider-keys/groq").status_code == 200
    assert gw.call("GET", "/v1/provider-keys").status_code == 200
    assert cached_providers() == {"anthropic"}


@pytest.mark.parametrize(
    ("provider", "body", "code"),
    [
        ("no-such-provider", {"api_key": SECRET}, "unknown_provider"),
        ("aws-bedrock", {"api_key": SECRET}, "byok_not_supported"),
        ("google-vertex", {"api_key": SECRET}, "byok_not_supported"),
        ("openrouter", {"api_key": ""}, None),
        ("openrouter", {"api_key": "   "}, None),
        ("openrouter", {"api_key": "short"}, None),
        ("openrouter", {"api_key": "x" * 4097}, None),
        ("openrouter", {"api_key": "sk-with space-0123456789"}, None),
        ("openrouter", {"api_key": "sk-abc\r\nX-Injected: 1"}, None),
        ("openrouter", {"api_key": "sk-ünïcode-0123456789"}, None),
        ("openrouter", {"api_key": 1234567890}, None),
        ("openrouter", {"api_key": None}, None),
        ("openrouter", {}, None),
        ("openrouter", {"api_key": SECRET, "note": "extra"}, None),
        ("openrouter", {"key": SECRET}, None),
        ("openrouter", [SECRET], None),
        ("openrouter", "raw text", None),
    ],
)
def test_bad_input_gets_400_and_writes_nothing(gw: Gw, provider: str, body: Any, code: str | None) -> None:
    audit_before = len(gw.audit())
    if body == "raw text":
        response = gw.call("PUT", f"/v1/provider-keys/{provider}", content=SECRET.encode())
    else:
        response = gw.call("PUT", f"/v1/provider-keys/{provider}", json=body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    if code:
        assert error["code"] == code
    assert SECRET not in response.text
    assert gw.stored() == [] and len(gw.audit()) == audit_before


def test_the_keys_scope_is_required(gw: Gw) -> None:
    for method, path, body in (
        ("GET", "/v1/provider-keys", None),
        ("PUT", "/v1/provider-keys/openrouter", {"api_key": SECRET}),
        ("DELETE", "/v1/provider-keys/openrouter", None),
    ):
        denied = gw.call(method, path, key=gw.reader.key, json=body)
        assert denied.status_code == 403 and error_of(denied)["code"] == "insufficient_scope"
        anonymous = gw.http.request(method, path, json=body)
        assert anonymous.status_code == 401
    assert gw.rows("SELECT COUNT(*) AS n FROM provider_keys")[0]["n"] == 0


def test_keys_are_per_user(gw: Gw) -> None:
    other = provision(gw.settings, f"other-{uuid.uuid4().hex[:6]}@example.com", Decimal(0), scopes=["keys"])
    assert gw.call("PUT", "/v1/provider-keys/openrouter", json={"api_key": SECRET}).status_code == 200
    theirs = gw.call("GET", "/v1/provider-keys", key=other.key)
    assert theirs.status_code == 200 and theirs.json()["data"] == []
    assert gw.call("DELETE", "/v1/provider-keys/openrouter", key=other.key).status_code == 404
    assert len(gw.stored()) == 1


def test_without_an_encryption_key_storing_is_refused_clearly(
    gateway: GatewayServer, gateway_settings_: Settings
) -> None:
    manager = provision(
        gateway_settings_, f"noenc-{uuid.uuid4().hex[:6]}@example.com", Decimal(0), scopes=["keys"]
    )
    headers = {"authorization": f"Bearer {manager.key}"}
    refused = httpx.put(
        f"{gateway.url}/v1/provider-keys/openrouter", json={"api_key": SECRET}, headers=headers, timeout=20
    )
    assert refused.status_code == 503
    error = error_of(refused)
    assert error["code"] == "encryption_not_configured" and "GATEWAYZ_ENCRYPTION_KEYS" in error["message"]
    assert SECRET not in refused.text
    assert (
        query(
            gateway_settings_.database_url,
            "SELECT COUNT(*) AS n FROM provider_keys WHERE user_id = :u",
            {"u": manager.user_id},
        )[0]["n"]
        == 0
    )
    listed = httpx.get(f"{gateway.url}/v1/provider-keys", headers=headers, timeout=20)
    assert listed.status_code == 200 and listed.json()["data"] == []


# --- encryption --------------------------------------------------------------------------------------


def test_rotation_decrypts_old_data_and_reencrypt_moves_it_to_the_newest_key() -> None:
    old = encrypt([KEY_OLD], SECRET)
    assert decrypt([KEY_NEW, KEY_OLD], old) == SECRET  # a new key prepended: old data still reads
    with pytest.raises(ByokKeyUnreadable):
        decrypt([KEY_NEW], old)  # the old key dropped too early
    moved = reencrypt([KEY_NEW, KEY_OLD], old)
    assert moved != old and decrypt([KEY_NEW], moved) == SECRET
    assert byok.under_newest([KEY_NEW, KEY_OLD], moved) and not byok.under_newest([KEY_NEW, KEY_OLD], old)
    fresh = encrypt([KEY_NEW, KEY_OLD], SECRET)
    assert decrypt([KEY_NEW], fresh) == SECRET  # new data uses the first key


def test_missing_or_malformed_encryption_keys_are_named() -> None:
    with pytest.raises(EncryptionNotConfigured, match="GATEWAYZ_ENCRYPTION_KEYS"):
        encrypt([], SECRET)
    with pytest.raises(EncryptionNotConfigured, match="entry 2") as caught:
        encrypt([KEY_NEW, "not-a-fernet-key"], SECRET)
    assert "not-a-fernet-key" not in caught.value.message


# --- the store on both databases ---------------------------------------------------------------------


def _settings(url: str, keys: list[str], **env: str) -> Settings:
    return Settings.from_env(
        {
            "GATEWAYZ_DATABASE_URL": url,
            "GATEWAYZ_KEY_SECRET": "test-key-secret-0123456789abcdef0123456789",
            "GATEWAYZ_ENCRYPTION_KEYS": ",".join(keys),
            **env,
        }
    )


async def _user(rt: Runtime) -> str:
    user, _ = await rt.accounts.create_user(f"{uuid.uuid4().hex[:10]}@example.com", actor=Actor("system"))
    return str(user["id"])


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


def test_store_functions_and_rotation(db_url: str) -> None:
    actor = Actor("user")

    async def run() -> None:
        rt = Runtime.build(_settings(db_url, [KEY_OLD]))
        try:
            await migrate(rt.db, read_migrations())
            user_id = await _user(rt)
            stored = await put_provider_key(rt, user_id, "openai", "sk-proj-" + "1" * 40, actor)
            assert stored["provider"] == "openai" and stored["last4"] == "1111"
            await put_provider_key(rt, user_id, "openrouter", SECRET, actor)
            assert [k["provider"] for k in await list_provider_keys(rt, user_id)] == ["openai", "openrouter"]
            assert await byok_key(rt, user_id, "openrouter") == SECRET
            assert await byok_key(rt, user_id, "groq") is None
            assert await delete_provider_key(rt, user_id, "openai", actor) is True
            assert await delete_provider_key(rt, user_id, "openai", actor) is False
            assert await byok_key(rt, user_id, "openai") is None
        finally:
            await rt.close()

        # The operator prepends a new key: old rows still decrypt; reencrypt_all moves them.
        rt = Runtime.build(_settings(db_url, [KEY_NEW, KEY_OLD]))
        try:
            (row,) = await rt.db.fetch("SELECT user_id, encrypted_key FROM provider_keys")
            assert await byok_key(rt, row["user_id"], "openrouter") == SECRET
            assert await reencrypt_all(rt, Actor("cli")) == 1
            assert await reencrypt_all(rt, Actor("cli")) == 0
            (moved,) = await rt.db.fetch("SELECT encrypted_key FROM provider_keys")
            assert decrypt([KEY_NEW], moved["encrypted_key"]) == SECRET
            audit = await rt.db.fetch("SELECT details FROM audit_log WHERE action = 'provider_key.reencrypt'")
            assert [json.loads(a["details"]) for a in audit] == [{"rows": 1}]
        finally:
            await rt.close()

        # ... and then the old key can go.
        rt = Runtime.build(_settings(db_url, [KEY_NEW]))
        try:
            assert await byok_key(rt, row["user_id"], "openrouter") == SECRET
        finally:
            await rt.close()

    asyncio.run(run())


async def test_byok_key_is_cached_and_follows_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = Runtime.build(_settings(f"sqlite:///{tmp_path / 'g.db'}", [KEY_NEW]))
    try:
        await migrate(rt.db, read_migrations())
        user_id = await _user(rt)
        await put_provider_key(rt, user_id, "groq", "gsk_" + "a" * 40, Actor("user"))
        assert await byok_key(rt, user_id, "groq") == "gsk_" + "a" * 40
        # Cached: a change behind the process's back is not seen before the TTL ...
        await rt.db.fetch("DELETE FROM provider_keys")
        assert await byok_key(rt, user_id, "groq") == "gsk_" + "a" * 40
        monkeypatch.setattr(byok, "BYOK_CACHE_TTL", 0.0)
        assert await byok_key(rt, user_id, "groq") is None  # ... and is after it
        monkeypatch.setattr(byok, "BYOK_CACHE_TTL", 30.0)
        # Changes through the store functions are seen at once.
        await put_provider_key(rt, user_id, "groq", "gsk_" + "b" * 40, Actor("user"))
        assert await byok_key(rt, user_id, "groq") == "gsk_" + "b" * 40
        await delete_provider_key(rt, user_id, "groq", Actor("user"))
        assert await byok_key(rt, user_id, "groq") is None
    finally:
        await rt.close()


async def test_byok_key_follows_another_instances_change_through_the_epoch(tmp_path: Path) -> None:
    """Two instances sharing the database and Redis: a change on one is seen by the other once its
    key cache has looked at the epoch (at most a second later), well before the TTL."""
    url = f"sqlite:///{tmp_path / 'g.db'}"
    redis = redis_url(0)
    one = Runtime.build(_settings(url, [KEY_NEW], GATEWAYZ_REDIS_URL=redis))
    two = Runtime.build(_settings(url, [KEY_NEW], GATEWAYZ_REDIS_URL=redis))
    try:
        await migrate(one.db, read_migrations())
        user, api_key = await one.accounts.create_user("epoch@example.com", actor=Actor("system"))
        await put_provider_key(one, user["id"], "groq", "gsk_" + "a" * 40, Actor("user"))
        assert await two.keys.lookup(api_key) is not None
        assert await byok_key(two, user["id"], "groq") == "gsk_" + "a" * 40
        await put_provider_key(one, user["id"], "groq", "gsk_" + "c" * 40, Actor("user"))
        await asyncio.sleep(1.1)
        record = await two.keys.lookup(api_key)  # what authentication does before the pipeline asks
        assert record is not None and record.byok_providers == {"groq"}
        assert await byok_key(two, user["id"], "groq") == "gsk_" + "c" * 40
    finally:
        await one.close()
        await two.close()
