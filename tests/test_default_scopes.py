"""One rule for a new key's scopes when its creator names none (SPEC §5), on every path that makes
keys: every scope the owner's role may hold (`billing, inference, keys, read`; an admin user's key
also `admin`), never more than the creating credential holds. The README's quick start depends on
it: the key `gatewayz users create` prints must be able to manage keys.

The CLI runs as the operator would run it, a process of its own, on the session gateway's
database; the keys it prints are then used against that gateway.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.config import Settings
from tests.conftest import ADMIN_KEY
from tests.harness import GatewayServer

ALL_BUT_ADMIN = ["billing", "inference", "keys", "read"]
EVERY_SCOPE = ["admin", "billing", "inference", "keys", "read"]


def email() -> str:
    return f"scopes-{uuid.uuid4().hex[:10]}@example.com"


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAYZ_", "SUPABASE_", "UPSTASH_"))}
    env["GATEWAYZ_DATABASE_URL"] = settings.database_url
    env["GATEWAYZ_KEY_SECRET"] = settings.env["GATEWAYZ_KEY_SECRET"]
    exe = Path(sys.executable).parent / "gatewayz"
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def created(settings: Settings, *args: str) -> dict[str, Any]:
    done = cli(settings, *args)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def key_scopes(gateway: GatewayServer, user_id: str) -> list[list[str]]:
    """The scopes of each of the user's keys, as the admin API shows them."""
    answer = httpx.get(
        f"{gateway.url}/admin/users/{user_id}", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return [key["scopes"] for key in answer.json()["keys"]]


def test_the_key_users_create_prints_can_manage_keys(gateway: GatewayServer) -> None:
    settings = gateway.runtime.settings
    made = created(settings, "users", "create", "--email", email(), "--credits", "1")
    assert key_scopes(gateway, made["user_id"]) == [ALL_BUT_ADMIN]
    headers = {"Authorization": f"Bearer {made['api_key']}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=10) as http:
        second = http.post("/v1/keys", json={"name": "second"})
        assert second.status_code == 200, second.text
        assert second.json()["scopes"] == ALL_BUT_ADMIN  # self-service: the caller's own scopes
        assert http.get("/v1/credits").status_code == 200


def test_users_create_takes_scopes(gateway: GatewayServer) -> None:
    settings = gateway.runtime.settings
    narrow = created(settings, "users", "create", "--email", email(), "--scopes", "inference, read,inference")
    assert key_scopes(gateway, narrow["user_id"]) == [["inference", "read"]]
    answer = httpx.post(
        f"{gateway.url}/v1/keys",
        json={},
        headers={"Authorization": f"Bearer {narrow['api_key']}"},
        timeout=10,
    )
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "insufficient_scope"

    admin = created(settings, "users", "create", "--email", email(), "--admin")
    assert key_scopes(gateway, admin["user_id"]) == [EVERY_SCOPE]


@pytest.mark.parametrize(
    ("scopes", "message"),
    [
        ("admin,read", "only an admin user's key may hold the admin scope"),
        ("read,owner", "unknown scope(s) owner"),
    ],
)
def test_users_create_refuses_scopes_it_cannot_give(
    gateway: GatewayServer, scopes: str, message: str
) -> None:
    address = email()
    refused = cli(gateway.runtime.settings, "users", "create", "--email", address, "--scopes", scopes)
    assert refused.returncode == 2 and message in refused.stderr
    answer = httpx.get(
        f"{gateway.url}/admin/users", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10
    )
    assert address not in answer.text  # nothing was created


def test_keys_create_follows_the_users_role(gateway: GatewayServer) -> None:
    settings = gateway.runtime.settings
    user = created(settings, "users", "create", "--email", email(), "--scopes", "read")
    admin = created(settings, "users", "create", "--email", email(), "--admin", "--scopes", "read")
    created(settings, "keys", "create", "--user", user["user_id"])
    created(settings, "keys", "create", "--user", admin["user_id"])
    assert sorted(key_scopes(gateway, user["user_id"])) == [ALL_BUT_ADMIN, ["read"]]
    assert sorted(key_scopes(gateway, admin["user_id"])) == [EVERY_SCOPE, ["read"]]


@pytest.mark.parametrize(("role", "scopes"), [("user", ALL_BUT_ADMIN), ("admin", EVERY_SCOPE)])
def test_the_admin_api_gives_the_same_default(gateway: GatewayServer, role: str, scopes: list[str]) -> None:
    answer = httpx.post(
        f"{gateway.url}/admin/users",
        json={"email": email(), "role": role},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["key"]["scopes"] == scopes
