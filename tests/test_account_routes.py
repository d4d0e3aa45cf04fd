"""The account function over real HTTP (SPEC §4, §5): /v1/me, API keys, credits and usage.

Every test runs against a gateway on SQLite (the session's) and one on the real PostgreSQL (a
schema of its own), since the credits, usage and audit pages run SQL of their own. Bad input on
every route must come back as a 4xx in the OpenAI envelope and write nothing: the tests compare
row counts of every table a route could touch before and after.

`Deployment` and its fixture are shared with tests/test_admin_routes.py and
tests/test_key_restrictions.py.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import openai
import pytest

from shared.config import Settings
from shared.store import Row, open_database
from tests.conftest import ADMIN_KEY, Account, gateway_settings, provision, start_gateway
from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import FakeServer, Reply
from tests.harness import GatewayServer
from tests.store.support import BACKENDS, migrate_url, postgres_schema

T = TypeVar("T")
TABLES = [
    "users",
    "api_keys",
    "audit_log",
    "credit_transactions",
    "credit_holds",
    "key_spend",
    "request_records",
]
COUNTS = "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {t}) AS {t}" for t in TABLES)
ALL_BUT_ADMIN = ["inference", "read", "keys", "billing"]
# The key object of SPEC §5, plus the state of a revocation or rotation.
KEY_FIELDS = {
    "id",
    "object",
    "name",
    "prefix",
    "last4",
    "environment",
    "scopes",
    "expires_at",
    "ip_allowlist",
    "allowed_origins",
    "allowed_models",
    "spend_limits",
    "rate_limits",
    "disabled",
    "store_history",
    "revoked_at",
    "revoked",
    "replaced_by",
    "budget_key_id",
    "created_at",
    "last_used_at",
}


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{os.urandom(6).hex()}@example.com"


def off_main_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a helper that calls `asyncio.run` in a worker thread. On the main thread, asyncio.run
    ends by unsetting the current event loop, which drops the one Mangum made current when the
    function modules were imported (an "unclosed event loop" warning at exit)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args, **kwargs).result()


class Probe:
    """Direct reads of a gateway's database for assertions, through our own query layer, on a
    loop of its own in a background thread (synchronous tests, one connection reused)."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="probe", daemon=True)
        self.thread.start()
        self.db = open_database(url)

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        return asyncio.run_coroutine_threadsafe(self.db.fetch(sql, params or {}), self.loop).result(20)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.db.close(), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Deployment:
    """A running gateway and its database, with the helpers the route tests need."""

    server: GatewayServer
    settings: Settings
    backend: str
    probe: Probe
    _sdk: openai.OpenAI | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def http(self, key: str | None, **headers: str) -> httpx.Client:
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        # Plain HTTP on loopback: no TLS context to build (loading CA certificates costs ~0.1 s a client).
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=20, verify=False)

    def sdk(self, key: str, **headers: str) -> openai.OpenAI:
        """An official SDK client for `key`. It shares one HTTP client with every other (making a
        client costs ~0.2 s), so callers must not close it; the fixture does, at the end."""
        if self._sdk is None:
            self._sdk = openai.OpenAI(base_url=f"{self.url}/v1", api_key="unset", max_retries=0, timeout=20)
        return self._sdk.with_options(api_key=key, default_headers=headers or None)

    def close(self) -> None:
        if self._sdk is not None:
            self._sdk.close()
        self.probe.close()

    def user(self, credits: str = "10", plan: str = "free", **key: Any) -> Account:
        return off_main_thread(provision, self.settings, unique_email(), Decimal(credits), plan, **key)

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        return self.probe.rows(sql, params)

    def counts(self) -> dict[str, int]:
        return {name: int(value) for name, value in self.rows(COUNTS)[0].items()}

    def audit(self, target_id: str) -> list[Row]:
        return self.rows(
            "SELECT * FROM audit_log WHERE target_id = :target ORDER BY created_at, id", {"target": target_id}
        )


@pytest.fixture(scope="module", params=BACKENDS)
def deployment(request: pytest.FixtureRequest, fakes: dict[str, FakeServer]) -> Iterator[Deployment]:
    """The session gateway (SQLite), or a gateway on a fresh PostgreSQL schema of its own."""
    if request.param == "sqlite":
        server: GatewayServer = request.getfixturevalue("gateway")
        here = Deployment(
            server, server.runtime.settings, "sqlite", Probe(server.runtime.settings.database_url)
        )
        try:
            yield here
        finally:
            here.close()
        return
    with postgres_schema() as url:
        off_main_thread(migrate_url, url)
        settings = gateway_settings(fakes, url)
        server = start_gateway(settings)
        there = Deployment(server, settings, "postgres", Probe(url))
        try:
            yield there
        finally:
            there.close()
            server.stop()


def assert_envelope(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["message"] and "Traceback" not in error["message"]
    assert response.headers["x-request-id"]
    return dict(error)


@pytest.fixture(scope="module")
def owner(deployment: Deployment) -> Account:
    """A user whose key holds every scope but admin, with $10."""
    return deployment.user("10", scopes=ALL_BUT_ADMIN)


# --- /v1/me ------------------------------------------------------------------------------------


def test_me_has_the_spec_shape(deployment: Deployment, owner: Account) -> None:
    with deployment.http(owner.key) as http:
        body = http.get("/v1/me").json()
    # SPEC §5's fields, then the billing state of issue 14 (no subscription, allowance or freeze yet).
    assert set(body) == {"id", "email", "role", "status", "plan", "balance"} | {
        "frozen",
        "debt",
        "subscription",
        "allowance",
    }
    assert (body["frozen"], body["debt"], body["subscription"], body["allowance"]) == (None, "0", None, None)
    assert body["id"] == owner.user_id
    assert (body["role"], body["status"], body["plan"], body["balance"]) == ("user", "active", "free", "10")


@pytest.fixture(scope="module")
def lacking(deployment: Deployment) -> dict[str, Account]:
    """Scope → a user whose key holds every other user scope."""
    return {
        scope: deployment.user("1", scopes=[s for s in ALL_BUT_ADMIN if s != scope])
        for scope in ("read", "keys")
    }


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/v1/me", "read"),
        ("GET", "/v1/credits", "read"),
        ("GET", "/v1/usage", "read"),
        ("GET", "/v1/keys", "keys"),
        ("POST", "/v1/keys", "keys"),
        ("GET", "/v1/keys/key_x", "keys"),
        ("PATCH", "/v1/keys/key_x", "keys"),
        ("POST", "/v1/keys/key_x/rotate", "keys"),
        ("DELETE", "/v1/keys/key_x", "keys"),
    ],
)
def test_every_route_checks_the_key_and_its_scope(
    deployment: Deployment, lacking: dict[str, Account], method: str, path: str, scope: str
) -> None:
    before = deployment.counts()
    with deployment.http(None) as http:
        assert assert_envelope(http.request(method, path, json={}), 401)["type"] == "authentication_error"
    with deployment.http("gw_live_not_a_real_key") as http:
        assert_envelope(http.request(method, path, json={}), 401)
    with deployment.http(lacking[scope].key) as http:
        error = assert_envelope(http.request(method, path, json={}), 403)
        assert error["code"] == "insufficient_scope"
    with deployment.http(ADMIN_KEY) as http:  # the bootstrap key opens admin routes only
        assert_envelope(http.request(method, path, json={}), 403)
    assert deployment.counts() == before


# --- keys --------------------------------------------------------------------------------------


def test_key_lifecycle(deployment: Deployment, owner: Account) -> None:
    with deployment.http(owner.key) as http:
        created = http.post(
            "/v1/keys",
            json={
                "name": "  ci runner ",
                "scopes": ["inference", "read"],
                "expires_at": "2099-01-31T12:00:00+02:00",
                "ip_allowlist": ["10.1.2.3/8", "192.168.0.7", "2001:db8::/32"],
                "allowed_origins": ["https://App.Example.com/"],
                "allowed_models": ["gpt-4o", "anthropic/*"],
                "spend_limits": {"day": "1.50", "month": 20, "total": 100.25},
                "rate_limits": {"requests_per_minute": 10, "concurrency": 2},
            },
        )
        assert created.status_code == 200, created.text
        key = created.json()
        assert set(key) == KEY_FIELDS | {"key"}
        assert key["key"].startswith("gw_live_") and key["key"].endswith(key["last4"])
        assert key["key"].startswith(key["prefix"])
        assert key["name"] == "ci runner"
        assert key["scopes"] == ["inference", "read"]
        assert key["expires_at"] == "2099-01-31T10:00:00.000000Z"
        assert key["ip_allowlist"] == ["10.0.0.0/8", "192.168.0.7/32", "2001:db8::/32"]
        assert key["allowed_origins"] == ["https://app.example.com"]
        assert key["allowed_models"] == ["openai/gpt-4o", "anthropic/*"]  # the alias, made canonical
        assert key["spend_limits"] == {"day": "1.5", "month": "20", "total": "100.25"}
        assert key["rate_limits"] == {"requests_per_minute": 10, "concurrency": 2}
        assert (key["disabled"], key["revoked"], key["last_used_at"]) == (False, False, None)
        key_id = key["id"]

        listed = http.get("/v1/keys").json()
        assert set(listed) == {"data"}
        ids = [k["id"] for k in listed["data"]]
        assert key_id in ids and all("key" not in k for k in listed["data"])
        assert http.get(f"/v1/keys/{key_id}").json() == {k: v for k, v in key.items() if k != "key"}

        # PATCH: left out → kept, null → cleared, nested objects merged.
        patched = http.patch(
            f"/v1/keys/{key_id}",
            json={
                "name": "renamed",
                "disabled": True,
                "allowed_origins": None,
                "spend_limits": {"day": None, "total": "5"},
                "rate_limits": {"concurrency": None, "tokens_per_day": 5000},
            },
        ).json()
        assert patched["name"] == "renamed" and patched["disabled"] is True
        assert patched["allowed_origins"] is None
        assert patched["ip_allowlist"] == key["ip_allowlist"]
        assert patched["spend_limits"] == {"day": None, "month": "20", "total": "5"}
        assert patched["rate_limits"] == {"requests_per_minute": 10, "tokens_per_day": 5000}
        assert http.patch(f"/v1/keys/{key_id}", json={"disabled": False}).json()["disabled"] is False

        rotated = http.post(f"/v1/keys/{key_id}/rotate", json={"grace_seconds": 60}).json()
        assert rotated["id"] != key_id and rotated["key"] != key["key"]
        assert (
            rotated["scopes"] == ["inference", "read"] and rotated["spend_limits"] == patched["spend_limits"]
        )
        old = http.get(f"/v1/keys/{key_id}").json()
        assert old["replaced_by"] == rotated["id"] and old["revoked"] is False  # in its grace period
        again = http.post(f"/v1/keys/{key_id}/rotate", json={})
        assert assert_envelope(again, 409)["code"] == "key_already_rotated"

        revoked = http.delete(f"/v1/keys/{rotated['id']}")
        assert revoked.status_code == 200
        assert revoked.json()["revoked"] is True and revoked.json()["revoked_at"]
        assert rotated["id"] in [k["id"] for k in http.get("/v1/keys").json()["data"]]  # the row stays
        assert_envelope(http.patch(f"/v1/keys/{rotated['id']}", json={"name": "x"}), 400)
        assert_envelope(http.post(f"/v1/keys/{rotated['id']}/rotate"), 400)

    audit = deployment.audit(key_id) + deployment.audit(rotated["id"])
    assert [a["action"] for a in audit] == [
        "key.create",
        "key.update",
        "key.update",
        "key.rotate",
        "key.create",  # the replacement, in the rotation's transaction
        "key.revoke",
    ]
    assert {(a["actor_type"], a["actor_id"], a["ip"]) for a in audit} == {
        ("user", owner.user_id, "127.0.0.1")
    }
    assert all(key["key"] not in (a["details"] or "") for a in audit)  # never the secret


def test_new_key_defaults(deployment: Deployment, owner: Account) -> None:
    with deployment.http(owner.key) as http:
        key = http.post("/v1/keys", json={}).json()
        test_key = http.post("/v1/keys", json={"environment": "test"}).json()
    assert key["name"] == "default" and key["scopes"] == [
        "billing",
        "inference",
        "keys",
        "read",
    ]  # the caller's
    assert key["spend_limits"] == {"day": None, "month": None, "total": None} and key["rate_limits"] == {}
    assert key["expires_at"] is None and key["ip_allowlist"] is None
    assert test_key["key"].startswith("gw_test_") and test_key["environment"] == "test"


def test_a_key_cannot_mint_or_manage_a_more_powerful_key(deployment: Deployment) -> None:
    user = deployment.user("1", scopes=["keys", "read"])
    with deployment.http(user.key) as http:
        powerful = [k for k in http.get("/v1/keys").json()["data"]]
        assert len(powerful) == 1
        before = deployment.counts()
        for body in ({"scopes": ["inference"]}, {"scopes": ["read", "admin"]}):
            error = assert_envelope(http.post("/v1/keys", json=body), 403)
            assert error["code"] == "scope_not_allowed" and error["param"] == "scopes"
        weak = http.post("/v1/keys", json={"scopes": ["read"]}).json()
        after_create = deployment.counts()
        assert after_create["api_keys"] == before["api_keys"] + 1
        assert_envelope(http.patch(f"/v1/keys/{weak['id']}", json={"scopes": ["read", "inference"]}), 403)
        assert deployment.counts() == after_create
        # A key with the same scopes as the caller's (itself, here) may be changed and rotated.
        own_id = powerful[0]["id"]
        assert http.patch(f"/v1/keys/{own_id}", json={"name": "me"}).status_code == 200
        # Revoking takes power away: allowed whatever the target's scopes.
        assert http.delete(f"/v1/keys/{weak['id']}").json()["revoked"] is True
        # Without scopes a new key gets the caller's own (never more: the default rule).
        assert http.post("/v1/keys", json={}).json()["scopes"] == ["keys", "read"]

    # A narrower key of the same user cannot change, or rotate out a secret of, a wider one.
    with deployment.http(user.key) as http:
        narrow = http.post("/v1/keys", json={"scopes": ["keys"]}).json()
    with deployment.http(narrow["key"]) as narrow_http:
        before = deployment.counts()
        for response in (
            narrow_http.patch(f"/v1/keys/{own_id}", json={"name": "taken over"}),
            narrow_http.post(f"/v1/keys/{own_id}/rotate"),
        ):
            assert assert_envelope(response, 403)["code"] == "scope_not_allowed"
        assert deployment.counts() == before


def test_rate_limits_cannot_exceed_the_plan(deployment: Deployment, owner: Account) -> None:
    # The free plan: 20 requests/minute, 1000/day, 100k tokens/minute, 1M/day, 2 concurrent.
    with deployment.http(owner.key) as http:
        at_plan = http.post(
            "/v1/keys",
            json={
                "rate_limits": {
                    "requests_per_minute": 20,
                    "requests_per_day": 1000,
                    "tokens_per_minute": 100_000,
                    "tokens_per_day": 1_000_000,
                    "concurrency": 2,
                }
            },
        )
        assert at_plan.status_code == 200
        before = deployment.counts()
        for name, value in (
            ("requests_per_minute", 21),
            ("requests_per_day", 1001),
            ("tokens_per_minute", 100_001),
            ("tokens_per_day", 1_000_001),
            ("concurrency", 3),
        ):
            error = assert_envelope(http.post("/v1/keys", json={"rate_limits": {name: value}}), 400)
            assert (error["code"], error["param"]) == ("rate_limit_above_plan", f"rate_limits.{name}")
            patch = http.patch(f"/v1/keys/{at_plan.json()['id']}", json={"rate_limits": {name: value}})
            assert assert_envelope(patch, 400)["code"] == "rate_limit_above_plan"
        assert deployment.counts() == before


def test_other_users_keys_are_not_found(deployment: Deployment, owner: Account) -> None:
    stranger = deployment.user("1", scopes=ALL_BUT_ADMIN)
    with deployment.http(stranger.key) as http:
        their_key = http.get("/v1/keys").json()["data"][0]
    before = deployment.counts()
    with deployment.http(owner.key) as http:
        assert their_key["id"] not in [k["id"] for k in http.get("/v1/keys").json()["data"]]
        for response in (
            http.get(f"/v1/keys/{their_key['id']}"),
            http.patch(f"/v1/keys/{their_key['id']}", json={"disabled": True}),
            http.post(f"/v1/keys/{their_key['id']}/rotate"),
            http.delete(f"/v1/keys/{their_key['id']}"),
        ):
            assert assert_envelope(response, 404)["code"] == "key_not_found"
    assert deployment.counts() == before
    with deployment.http(stranger.key) as http:
        assert http.get("/v1/me").status_code == 200  # untouched: still enabled, not revoked


# --- credits -----------------------------------------------------------------------------------


def test_credits_page_shape_and_pagination(deployment: Deployment) -> None:
    user = deployment.user("5", scopes=ALL_BUT_ADMIN)
    with deployment.http(ADMIN_KEY) as admin:
        for amount in ("0.25", "1.000000000001", "-0.5"):
            response = admin.post(
                f"/admin/users/{user.user_id}/credits", json={"amount": amount, "reason": "t"}
            )
            assert response.status_code == 200, response.text
    with deployment.http(user.key) as http:
        page = http.get("/v1/credits", params={"limit": 2}).json()
        assert set(page) == {"currency", "balance", "held", "available", "data", "has_more", "next_cursor"}
        assert (page["currency"], page["balance"], page["held"], page["available"]) == (
            "USD",
            "5.750000000001",
            "0",
            "5.750000000001",
        )
        assert page["has_more"] is True and page["next_cursor"] == page["data"][-1]["id"]
        assert [r["amount"] for r in page["data"]] == ["-0.5", "1.000000000001"]  # newest first
        first = page["data"][0]
        assert set(first) == {
            "id",
            "amount",
            "type",
            "balance_after",
            "request_id",
            "payment_id",
            "description",
            "created_at",
        }
        assert (first["type"], first["balance_after"], first["description"]) == (
            "adjustment",
            "5.750000000001",
            "t",
        )
        rest = http.get("/v1/credits", params={"limit": 2, "cursor": page["next_cursor"]}).json()
        assert [r["amount"] for r in rest["data"]] == ["0.25", "5"]
        assert rest["has_more"] is False and rest["next_cursor"] is None
        assert rest["data"][-1]["type"] == "grant" and rest["data"][-1]["balance_after"] == "5"


def test_credits_show_open_holds(deployment: Deployment, openai_fake: OpenAIFake) -> None:
    """While a request is in flight its worst case is held: balance stays, available drops."""
    user = deployment.user("5", "enterprise", scopes=ALL_BUT_ADMIN)
    openai_fake.script("gpt-4o", Reply(delay=1.0))
    sdk = deployment.sdk(user.key)
    call = threading.Thread(
        target=lambda: sdk.chat.completions.create(
            model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=100
        )
    )
    call.start()
    try:
        with deployment.http(user.key) as http:
            for _ in range(50):
                page = http.get("/v1/credits").json()
                if page["held"] != "0":
                    break
                time.sleep(0.02)
    finally:
        call.join(10)
    assert page["balance"] == "5" and Decimal(page["held"]) > 0
    assert Decimal(page["available"]) == Decimal(page["balance"]) - Decimal(page["held"])


# --- usage -------------------------------------------------------------------------------------


def test_usage_records_and_daily_aggregates(deployment: Deployment, openai_fake: OpenAIFake) -> None:
    user = deployment.user("5", "enterprise", scopes=["inference", "read"])
    openai_fake.script("gpt-4o", Reply(input=20, output=6), Reply(input=100, output=50))
    openai_fake.script("gpt-4o-mini", Reply(input=1000, output=10))
    sdk = deployment.sdk(user.key)
    for model in ("openai/gpt-4o", "openai/gpt-4o", "openai/gpt-4o-mini"):
        sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])

    def cost(prompt: str, completion: str, tokens_in: int, tokens_out: int) -> Decimal:
        per_million = tokens_in * Decimal(prompt) + tokens_out * Decimal(completion)
        return per_million / Decimal(1_000_000) * Decimal("1.25")

    gpt4o = cost("2.5", "10", 20, 6) + cost("2.5", "10", 100, 50)
    mini = cost("0.15", "0.6", 1000, 10)

    with deployment.http(user.key) as http:
        page = http.get("/v1/usage", params={"limit": 2}).json()
        assert set(page) == {"object", "data", "has_more", "next_cursor", "days", "daily"}
        assert page["days"] == 30 and page["has_more"] is True
        newest = page["data"][0]
        assert newest["model"] == "openai/gpt-4o-mini" and newest["provider"] == "openai"
        assert (newest["input_tokens"], newest["output_tokens"], newest["status"]) == (1000, 10, "ok")
        assert Decimal(newest["cost"]) == mini
        assert newest["endpoint"] == "chat" and newest["http_status"] == 200 and newest["latency_ms"] >= 0
        rest = http.get("/v1/usage", params={"limit": 2, "cursor": page["next_cursor"]}).json()
        assert rest["has_more"] is False and rest["next_cursor"] is None
        records = page["data"] + rest["data"]
        assert [r["input_tokens"] for r in records] == [1000, 100, 20]
        assert len({r["request_id"] for r in records}) == 3

        day = records[0]["created_at"][:10]
        daily = {(d["date"], d["model"]): d for d in page["daily"]}
        assert set(daily) == {(day, "openai/gpt-4o"), (day, "openai/gpt-4o-mini")}
        row = daily[(day, "openai/gpt-4o")]
        assert (row["requests"], row["errors"], row["input_tokens"], row["output_tokens"]) == (2, 0, 120, 56)
        assert Decimal(row["cost"]) == gpt4o
        assert Decimal(daily[(day, "openai/gpt-4o-mini")]["cost"]) == mini
        assert http.get("/v1/usage", params={"days": 1}).json()["daily"] == page["daily"]

        # The costs agree with the ledger: one usage row per request.
        ledger = http.get("/v1/credits", params={"limit": 100}).json()
        charged = {r["request_id"]: Decimal(r["amount"]) for r in ledger["data"] if r["type"] == "usage"}
        assert charged == {r["request_id"]: -Decimal(r["cost"]) for r in records}


def test_usage_counts_failed_requests_as_errors(deployment: Deployment, openai_fake: OpenAIFake) -> None:
    user = deployment.user("5", "enterprise", scopes=["inference", "read"])
    openai_fake.script("gpt-4o", Reply(status=400, error_message="bad request upstream"))
    with pytest.raises(openai.BadRequestError):
        deployment.sdk(user.key).chat.completions.create(
            model="openai/gpt-4o",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"provider": {"only": ["openai"]}},
        )
    with deployment.http(user.key) as http:
        page = http.get("/v1/usage").json()
    assert [(r["status"], r["cost"]) for r in page["data"]] == [("error", "0")]
    assert [(d["requests"], d["errors"], d["cost"]) for d in page["daily"]] == [(1, 1, "0")]
