"""The admin function over real HTTP (SPEC §5, §8): users, plans, credits and the audit log.

Callers are the bootstrap GATEWAYZ_ADMIN_KEY or an admin user's key with the admin scope; every
change is audited with the right actor. Runs on SQLite and on the real PostgreSQL (the
`deployment` fixture of tests/test_account_routes.py).
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests import test_account_routes as accounts
from tests.conftest import ADMIN_KEY, Account
from tests.fakes.openai_fake import OpenAIFake
from tests.test_account_routes import ALL_BUT_ADMIN, Deployment, assert_envelope, unique_email

deployment = accounts.deployment  # the same fixture: a gateway per backend for this module
ADMIN_ROUTES = [
    ("POST", "/admin/users"),
    ("GET", "/admin/users"),
    ("GET", "/admin/users/usr_x"),
    ("PATCH", "/admin/users/usr_x"),
    ("POST", "/admin/users/usr_x/credits"),
    ("GET", "/admin/audit"),
]


@pytest.fixture(scope="module")
def admin_user(deployment: Deployment) -> dict[str, Any]:
    """An admin user made through the API by the bootstrap key: {"user": ..., "key": {..., "key"}}."""
    with deployment.http(ADMIN_KEY) as http:
        response = http.post("/admin/users", json={"email": unique_email("admin"), "role": "admin"})
    assert response.status_code == 200, response.text
    return dict(response.json())


def create_user(deployment: Deployment, **body: Any) -> dict[str, Any]:
    with deployment.http(ADMIN_KEY) as http:
        response = http.post("/admin/users", json={"email": unique_email(), **body})
    assert response.status_code == 200, response.text
    return dict(response.json())


# --- who may call ------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_only_admins_get_in(
    deployment: Deployment, admin_user: dict[str, Any], method: str, path: str
) -> None:
    normal = deployment.user("1", scopes=ALL_BUT_ADMIN)
    # An admin-scoped key of a user whose role is not admin, and an admin's key without the scope.
    pretender = deployment.user("1", scopes=["admin", "read"])
    unscoped = create_user(deployment, role="admin", scopes=["read", "keys"])
    before = deployment.counts()
    for key, status in (
        (None, 401),
        ("gw_live_unknown", 401),
        (normal.key, 403),
        (pretender.key, 403),
        (unscoped["key"]["key"], 403),
    ):
        with deployment.http(key) as http:
            assert_envelope(http.request(method, path, json={}), status)
    assert deployment.counts() == before
    for key in (ADMIN_KEY, admin_user["key"]["key"]):
        with deployment.http(key) as http:
            response = http.request(method, path, json={})
            assert response.status_code not in (401, 403), response.text


# --- users -------------------------------------------------------------------------------------


def test_create_user_with_credits_and_a_first_key(deployment: Deployment) -> None:
    email = unique_email("New.Person")
    with deployment.http(ADMIN_KEY) as http:
        response = http.post(
            "/admin/users", json={"email": f"  {email.upper()} ", "credits": "12.5", "key_name": "laptop"}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"user", "key"}
    user, key = body["user"], body["key"]
    assert user["email"] == email.lower() and user["role"] == "user" and user["plan"] == "free"
    assert (user["status"], user["balance"]) == ("active", "12.5")
    assert key["key"].startswith("gw_live_") and key["name"] == "laptop"
    assert key["scopes"] == ["billing", "inference", "keys", "read"]
    with deployment.http(key["key"]) as http:
        assert http.get("/v1/me").json()["id"] == user["id"]

    audit = deployment.audit(user["id"]) + deployment.audit(key["id"])
    assert sorted(a["action"] for a in audit) == ["credits.grant", "key.create", "user.create"]
    assert {(a["actor_type"], a["actor_id"]) for a in audit} == {("admin_key", None)}
    assert {a["ip"] for a in audit} == {"127.0.0.1"}

    before = deployment.counts()
    with deployment.http(ADMIN_KEY) as http:
        duplicate = http.post("/admin/users", json={"email": email.upper()})
    assert assert_envelope(duplicate, 409)["code"] == "email_taken"
    assert deployment.counts() == before


def test_create_admin_user_and_plan(deployment: Deployment, admin_user: dict[str, Any]) -> None:
    assert admin_user["user"]["role"] == "admin"
    assert admin_user["key"]["scopes"] == ["admin", "billing", "inference", "keys", "read"]
    pro = create_user(deployment, plan="pro", scopes=["inference"])
    assert pro["user"]["plan"] == "pro" and pro["key"]["scopes"] == ["inference"]
    assert pro["user"]["balance"] == "0"


def test_list_and_get_users(deployment: Deployment) -> None:
    made = [create_user(deployment)["user"]["id"] for _ in range(3)]
    seen: list[str] = []
    with deployment.http(ADMIN_KEY) as http:
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = http.get("/admin/users", params=params).json()
            assert set(page) == {"data", "has_more", "next_cursor"} and len(page["data"]) <= 2
            seen += [u["id"] for u in page["data"]]
            if not page["has_more"]:
                assert page["next_cursor"] is None
                break
            cursor = page["next_cursor"]
        one = http.get(f"/admin/users/{made[0]}").json()
        missing = http.get("/admin/users/usr_does_not_exist")
    assert len(seen) == len(set(seen)) and set(made) <= set(seen)
    assert one["id"] == made[0] and {
        "email",
        "role",
        "status",
        "plan",
        "balance",
        "held",
        "available",
    } <= set(one)
    assert len(one["keys"]) == 1 and "key" not in one["keys"][0]
    assert assert_envelope(missing, 404)["code"] == "user_not_found"


def test_suspend_blocks_the_users_keys_and_unsuspend_restores_them(
    deployment: Deployment, admin_user: dict[str, Any], openai_fake: OpenAIFake
) -> None:
    target = create_user(deployment, credits="5", plan="enterprise")
    user_id, key = target["user"]["id"], target["key"]["key"]
    with deployment.http(admin_user["key"]["key"]) as admin:
        suspended = admin.patch(f"/admin/users/{user_id}", json={"status": "suspended"}).json()
    assert suspended["status"] == "suspended"
    sdk = deployment.sdk(key)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        sdk.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 403 and refused.value.code == "account_suspended"
    assert openai_fake.requests == []
    with deployment.http(key) as http:
        assert assert_envelope(http.get("/v1/me"), 403)["code"] == "account_suspended"
    with deployment.http(admin_user["key"]["key"]) as admin:
        assert admin.patch(f"/admin/users/{user_id}", json={"status": "active"}).json()["status"] == "active"
    assert sdk.chat.completions.create(
        model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}]
    ).choices

    actions = [(a["action"], a["actor_type"], a["actor_id"]) for a in deployment.audit(user_id)]
    admin_id = admin_user["user"]["id"]
    assert ("user.status", "user", admin_id) in actions
    assert actions.count(("user.status", "user", admin_id)) == 2


def test_plan_assignment(deployment: Deployment) -> None:
    target = create_user(deployment)
    user_id = target["user"]["id"]
    with deployment.http(ADMIN_KEY) as http:
        assert http.patch(f"/admin/users/{user_id}", json={"plan": "pro"}).json()["plan"] == "pro"
    with deployment.http(target["key"]["key"]) as http:
        assert http.get("/v1/me").json()["plan"] == "pro"  # the key cache dropped the old plan at once
    plan_changes = [a for a in deployment.audit(user_id) if a["action"] == "user.plan"]
    assert len(plan_changes) == 1 and plan_changes[0]["actor_type"] == "admin_key"


# --- credits -----------------------------------------------------------------------------------


def test_grant_and_adjust_credits(deployment: Deployment, admin_user: dict[str, Any]) -> None:
    user_id = create_user(deployment)["user"]["id"]
    with deployment.http(admin_user["key"]["key"]) as http:
        grant = http.post(f"/admin/users/{user_id}/credits", json={"amount": "5", "reason": "welcome"}).json()
        assert grant["object"] == "credit_transaction" and grant["replayed"] is False
        assert (grant["amount"], grant["type"], grant["balance"], grant["description"]) == (
            "5",
            "grant",
            "5",
            "welcome",
        )
        assert grant["balance_after"] == "5" and grant["user_id"] == user_id
        adjust = http.post(
            f"/admin/users/{user_id}/credits", json={"amount": -1.25, "reason": "refund"}
        ).json()
        assert (adjust["amount"], adjust["type"], adjust["balance"]) == ("-1.25", "adjustment", "3.75")

        before = deployment.counts()
        too_much = http.post(
            f"/admin/users/{user_id}/credits", json={"amount": "-3.750000000001", "reason": "x"}
        )
        assert assert_envelope(too_much, 400)["code"] == "balance_below_zero"
        assert deployment.counts() == before
        assert http.get(f"/admin/users/{user_id}").json()["balance"] == "3.75"

    audit = [a for a in deployment.audit(user_id) if a["action"].startswith("credits.")]
    assert [a["action"] for a in audit] == ["credits.grant", "credits.adjustment"]
    assert {(a["actor_type"], a["actor_id"], a["ip"]) for a in audit} == {
        ("user", admin_user["user"]["id"], "127.0.0.1")
    }
    ledger = deployment.rows(
        "SELECT SUM(amount_pico) AS total, COUNT(*) AS n FROM credit_transactions WHERE user_id = :u",
        {"u": user_id},
    )[0]
    assert (int(ledger["total"]), int(ledger["n"])) == (3_750_000_000_000, 2)


def test_idempotent_grant_replay_changes_nothing(deployment: Deployment) -> None:
    user_id = create_user(deployment)["user"]["id"]
    other_id = create_user(deployment)["user"]["id"]
    key = f"grant-{user_id}"
    body = {"amount": "2.5", "reason": "promo", "idempotency_key": key}
    with deployment.http(ADMIN_KEY) as http:
        first = http.post(f"/admin/users/{user_id}/credits", json=body).json()
        before = deployment.counts()
        replay = http.post(f"/admin/users/{user_id}/credits", json=body).json()
        assert deployment.counts() == before
        assert replay["id"] == first["id"] and replay["replayed"] is True and replay["balance"] == "2.5"
        for path, changed in (
            (f"/admin/users/{user_id}/credits", {**body, "amount": "3"}),
            (f"/admin/users/{other_id}/credits", body),
        ):
            assert assert_envelope(http.post(path, json=changed), 409)["code"] == "idempotency_key_reused"
        assert deployment.counts() == before
        assert http.get(f"/admin/users/{user_id}").json()["balance"] == "2.5"
        assert http.get(f"/admin/users/{other_id}").json()["balance"] == "0"


def test_a_reason_is_required(deployment: Deployment) -> None:
    user_id = create_user(deployment)["user"]["id"]
    before = deployment.counts()
    with deployment.http(ADMIN_KEY) as http:
        for body in ({"amount": "1"}, {"amount": "1", "reason": ""}, {"amount": "1", "reason": "   "}):
            error = assert_envelope(http.post(f"/admin/users/{user_id}/credits", json=body), 400)
            assert error["param"] == "reason"
    assert deployment.counts() == before


# --- audit -------------------------------------------------------------------------------------


def test_audit_query_filters_and_pages(deployment: Deployment, admin_user: dict[str, Any]) -> None:
    admin_id = admin_user["user"]["id"]
    with deployment.http(ADMIN_KEY) as http:
        start = http.get("/admin/audit", params={"limit": 1}).json()["data"][0]["created_at"]
    target = create_user(deployment)["user"]["id"]
    with deployment.http(admin_user["key"]["key"]) as http:
        for amount in ("1", "2", "3"):
            assert (
                http.post(
                    f"/admin/users/{target}/credits", json={"amount": amount, "reason": "a"}
                ).status_code
                == 200
            )
        http.patch(f"/admin/users/{target}", json={"plan": "pro"})

        def audit(**params: Any) -> dict[str, Any]:
            response = http.get("/admin/audit", params=params)
            assert response.status_code == 200, response.text
            return dict(response.json())

        mine = audit(actor=admin_id, target=target)["data"]
        assert [e["action"] for e in mine] == ["user.plan", "credits.grant", "credits.grant", "credits.grant"]
        entry = mine[0]
        assert set(entry) == {
            "id",
            "actor_type",
            "actor_id",
            "action",
            "target_type",
            "target_id",
            "details",
            "ip",
            "created_at",
        }
        assert (entry["actor_type"], entry["target_type"], entry["details"]) == (
            "user",
            "user",
            {"plan_id": "pro"},
        )
        assert [e["details"]["amount"] for e in mine[1:]] == ["3", "2", "1"]  # newest first

        assert [e["action"] for e in audit(target=target, action="credits.*")["data"]] == [
            "credits.grant"
        ] * 3
        assert [e["action"] for e in audit(target=target, action="user.create")["data"]] == ["user.create"]
        assert {e["actor_type"] for e in audit(target=target, actor_type="admin_key")["data"]} == {
            "admin_key"
        }
        assert audit(target=target, target_type="api_key")["data"] == []
        assert audit(target=target, since="2999-01-01T00:00:00Z")["data"] == []
        recent = audit(since=start, limit=100)["data"]
        assert {e["id"] for e in mine} <= {e["id"] for e in recent}

        pages, cursor = [], None
        while True:
            page = audit(target=target, limit=2, **({"cursor": cursor} if cursor else {}))
            pages.append([e["id"] for e in page["data"]])
            if not page["has_more"]:
                assert page["next_cursor"] is None
                break
            assert page["next_cursor"] == page["data"][-1]["id"]
            cursor = page["next_cursor"]
        assert [len(p) for p in pages] == [2, 2, 1]  # user.create, three grants, user.plan
        assert [i for p in pages for i in p] == [e["id"] for e in audit(target=target)["data"]]


# --- bad input ---------------------------------------------------------------------------------

BIG = b'{"email": "' + b"x" * (70 * 1024) + b'@example.com"}'
BAD_INPUT: list[tuple[str, str, str, dict[str, Any], int]] = [
    # {user} is an existing user with $1
    (
        "create: unknown field",
        "POST",
        "/admin/users",
        {"json": {"email": "a@example.com", "admin": True}},
        400,
    ),
    ("create: no email", "POST", "/admin/users", {"json": {"role": "user"}}, 400),
    ("create: bad email", "POST", "/admin/users", {"json": {"email": "not-an-email"}}, 400),
    ("create: two at signs", "POST", "/admin/users", {"json": {"email": "a@b@example.com"}}, 400),
    ("create: long email", "POST", "/admin/users", {"json": {"email": "a" * 300 + "@example.com"}}, 400),
    ("create: email a number", "POST", "/admin/users", {"json": {"email": 42}}, 400),
    (
        "create: unknown role",
        "POST",
        "/admin/users",
        {"json": {"email": "r@example.com", "role": "root"}},
        400,
    ),
    (
        "create: unknown plan",
        "POST",
        "/admin/users",
        {"json": {"email": "p@example.com", "plan": "gold"}},
        400,
    ),
    (
        "create: bad plan id",
        "POST",
        "/admin/users",
        {"json": {"email": "p@example.com", "plan": "Gold Plan"}},
        400,
    ),
    (
        "create: negative credits",
        "POST",
        "/admin/users",
        {"json": {"email": "c@example.com", "credits": "-1"}},
        400,
    ),
    (
        "create: inexact credits",
        "POST",
        "/admin/users",
        {"content": b'{"email": "c@example.com", "credits": 0.1000000000000000055511}'},
        400,
    ),
    (
        "create: credits NaN",
        "POST",
        "/admin/users",
        {"json": {"email": "c@example.com", "credits": "NaN"}},
        400,
    ),
    (
        "create: admin scope for a user",
        "POST",
        "/admin/users",
        {"json": {"email": "s@example.com", "scopes": ["admin"]}},
        400,
    ),
    (
        "create: unknown scope",
        "POST",
        "/admin/users",
        {"json": {"email": "s@example.com", "scopes": ["all"]}},
        400,
    ),
    (
        "create: empty key name",
        "POST",
        "/admin/users",
        {"json": {"email": "k@example.com", "key_name": ""}},
        400,
    ),
    ("create: not json", "POST", "/admin/users", {"content": b"email=a@example.com"}, 400),
    ("create: not an object", "POST", "/admin/users", {"json": "a@example.com"}, 400),
    ("create: empty body", "POST", "/admin/users", {}, 400),
    ("create: too large", "POST", "/admin/users", {"content": BIG}, 413),
    ("update: nothing", "PATCH", "/admin/users/{user}", {"json": {}}, 400),
    ("update: unknown status", "PATCH", "/admin/users/{user}", {"json": {"status": "deleted"}}, 400),
    ("update: unknown plan", "PATCH", "/admin/users/{user}", {"json": {"plan": "gold"}}, 400),
    ("update: unknown role", "PATCH", "/admin/users/{user}", {"json": {"role": "owner"}}, 400),
    ("update: unknown field", "PATCH", "/admin/users/{user}", {"json": {"balance": "100"}}, 400),
    ("update: unknown user", "PATCH", "/admin/users/usr_nope", {"json": {"status": "suspended"}}, 404),
    ("credits: no reason", "POST", "/admin/users/{user}/credits", {"json": {"amount": "1"}}, 400),
    (
        "credits: blank reason",
        "POST",
        "/admin/users/{user}/credits",
        {"json": {"amount": "1", "reason": " "}},
        400,
    ),
    (
        "credits: long reason",
        "POST",
        "/admin/users/{user}/credits",
        {"json": {"amount": "1", "reason": "r" * 501}},
        400,
    ),
    ("credits: no amount", "POST", "/admin/users/{user}/credits", {"json": {"reason": "r"}}, 400),
    ("credits: zero", "POST", "/admin/users/{user}/credits", {"json": {"amount": "0", "reason": "r"}}, 400),
    (
        "credits: not a number",
        "POST",
        "/admin/users/{user}/credits",
        {"json": {"amount": "1O", "reason": "r"}},
        400,
    ),
    (
        "credits: boolean",
        "POST",
        "/admin/users/{user}/credits",
        {"json": {"amount": True, "reason": "r"}},
        400,
    ),
    (
        "credits: too big",
        "POST",
        "/admin/users/{user}/credits",
        {"json": {"amount": "1000001", "reason": "r"}},
        400,
    ),
    (
        "credits: sub-picodollar",
        "POST",
        "/admin/users/{user}/credits",
        {"json": {"amount": "0.0000000000001", "reason": "r"}},
        400,
    ),
    (
        "credits: inexact float",
        "POST",
        "/admin/users/{user}/credits",
        {"content": b'{"amount": 0.30000000000000004, "reason": "r"}'},
        400,
    ),
    (
        "credits: below zero",
        "POST",
        "/admin/users/{user}/credits",
        {"json": {"amount": "-1.000000000001", "reason": "r"}},
        400,
    ),
    (
        "credits: bad idempotency key",
        "POST",
        "/admin/users/{user}/credits",
        {"json": {"amount": "1", "reason": "r", "idempotency_key": "has spaces"}},
        400,
    ),
    (
        "credits: unknown field",
        "POST",
        "/admin/users/{user}/credits",
        {"json": {"amount": "1", "reason": "r", "type": "purchase"}},
        400,
    ),
    (
        "credits: unknown user",
        "POST",
        "/admin/users/usr_nope/credits",
        {"json": {"amount": "1", "reason": "r"}},
        404,
    ),
    ("list: limit 0", "GET", "/admin/users", {"params": {"limit": 0}}, 400),
    ("list: limit too big", "GET", "/admin/users", {"params": {"limit": 101}}, 400),
    ("get: unknown user", "GET", "/admin/users/usr_nope", {}, 404),
    ("audit: bad since", "GET", "/admin/audit", {"params": {"since": "yesterday"}}, 400),
    ("audit: limit 0", "GET", "/admin/audit", {"params": {"limit": 0}}, 400),
    ("audit: unknown cursor", "GET", "/admin/audit", {"params": {"cursor": "aud_nope"}}, 400),
    ("audit: long filter", "GET", "/admin/audit", {"params": {"action": "a" * 201}}, 400),
]


@pytest.fixture(scope="module")
def victim(deployment: Deployment) -> Account:
    return deployment.user("1")


@pytest.mark.parametrize(
    ("case", "method", "path", "kwargs", "status"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT]
)
def test_bad_input_is_a_4xx_and_writes_nothing(
    deployment: Deployment,
    victim: Account,
    case: str,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    with deployment.http(ADMIN_KEY) as http:
        user_before = http.get(f"/admin/users/{victim.user_id}").json()
        before = deployment.counts()
        response = http.request(method, path.format(user=victim.user_id), **kwargs)
        error = assert_envelope(response, status)
        assert error["type"] == "invalid_request_error"
        assert deployment.counts() == before
        assert http.get(f"/admin/users/{victim.user_id}").json() == user_before
